"""F-d: a MAC claimed by two ports outside a migration is a conflict, not a move.

A VM's MAC comes up on a second port (another VM's mistyped or cloned
`attached-mac`) while the VM's own port is up: the entry keeps its owner,
the second port's master reports the conflict naming both ports, and it is
resolved when one of the two goes. A MAC that comes up elsewhere after its
port went down or away is still a move without a notify.
"""

from __future__ import annotations

from tests.core.support import TIMEOUTS, VM_A, add, boot, delete, link, mesh, reach
from vportd.core.model import PortState
from vportd_lab.sim.cluster import SimCluster

OWNER, CLAIMANT, BESIDE = ("hv1", 1), ("hv2", 7), ("hv1", 8)


def up(sim: SimCluster, where: tuple[str, int]) -> None:
    """A port with VM_A's MAC is added on `where` and its link comes up."""
    sim.port_event(add(*where, VM_A))
    sim.port_event(link(*where, VM_A, up=True))
    sim.deliver_all()


def placed(sim: SimCluster) -> set[tuple[str | None, int | None, PortState]]:
    """Where each controller's entry places VM_A (one element when they agree)."""
    return {
        (c.vport(VM_A).loc.ovs, c.vport(VM_A).loc.port, c.vport(VM_A).port_state)
        for c in sim.controllers.values()
    }


def conflicts(sim: SimCluster) -> dict[str, list[tuple[str, object, object]]]:
    """Each controller's reported conflicts as (vm, owner port, claimant port)."""
    return {
        cid: [
            (c.vm, (c.owner.ovs, c.owner.port), (c.claimant.ovs, c.claimant.port))
            for c in ctl.conflicts()
        ]
        for cid, ctl in sim.controllers.items()
    }


def test_a_second_port_up_keeps_the_owner_and_reports_both_ports(sim: SimCluster) -> None:
    up(sim, CLAIMANT)

    assert placed(sim) == {(*OWNER, PortState.UP)}
    assert reach(sim, VM_A) == {frozenset({OWNER})}
    assert conflicts(sim) == {"c0": [], "c1": [], "c2": [(VM_A, OWNER, CLAIMANT)]}


def test_a_second_port_on_the_owners_switch_is_a_conflict_too(sim: SimCluster) -> None:
    up(sim, BESIDE)

    assert placed(sim) == {(*OWNER, PortState.UP)}
    assert conflicts(sim)["c1"] == [(VM_A, OWNER, BESIDE)]


def test_the_claimant_going_away_ends_the_conflict(sim: SimCluster) -> None:
    up(sim, CLAIMANT)
    sim.port_event(delete(*CLAIMANT, VM_A))
    sim.deliver_all()

    assert placed(sim) == {(*OWNER, PortState.UP)}
    assert all(not found for found in conflicts(sim).values())


def test_the_owner_going_away_hands_the_mac_to_the_claimant(sim: SimCluster) -> None:
    up(sim, CLAIMANT)
    sim.port_event(delete(*OWNER, VM_A))
    sim.deliver_all()

    assert placed(sim) == {(*CLAIMANT, PortState.UP)}
    assert reach(sim, VM_A) == {frozenset({CLAIMANT})}
    assert all(not found for found in conflicts(sim).values())


def test_the_owners_link_going_down_hands_the_mac_to_the_claimant(sim: SimCluster) -> None:
    up(sim, BESIDE)
    sim.port_event(link(*OWNER, VM_A, up=False))
    sim.deliver_all()

    assert placed(sim) == {(*BESIDE, PortState.UP)}
    assert all(not found for found in conflicts(sim).values())


def test_a_move_without_a_notify_still_moves(sim: SimCluster) -> None:
    sim.port_event(link(*OWNER, VM_A, up=False))
    sim.deliver_all()
    up(sim, CLAIMANT)

    assert placed(sim) == {(*CLAIMANT, PortState.UP)}
    assert all(not found for found in conflicts(sim).values())


def test_a_move_that_beats_the_owners_link_down_to_the_claimants_master_moves(
    sim: SimCluster,
) -> None:
    sim.port_event(link(*OWNER, VM_A, up=False))  # written, not yet delivered to c2
    sim.port_event(add(*CLAIMANT, VM_A))
    sim.port_event(link(*CLAIMANT, VM_A, up=True))
    sim.deliver_all()

    assert placed(sim) == {(*CLAIMANT, PortState.UP)}
    assert all(not found for found in conflicts(sim).values())


def test_without_migration_awareness_the_last_port_up_wins() -> None:
    sim = SimCluster.build(mesh(3), 3, timeouts=TIMEOUTS, aware=False)
    boot(sim, VM_A, *OWNER)
    up(sim, CLAIMANT)

    assert placed(sim) == {(*CLAIMANT, PortState.UP)}


def test_a_conflict_ends_when_its_switch_gets_another_master(sim: SimCluster) -> None:
    up(sim, CLAIMANT)
    sim.controllers["c2"].master_is("hv2", "c0")

    assert conflicts(sim)["c2"] == []


def test_a_vm_restarted_elsewhere_takes_its_mac_once_its_dead_hypervisor_counts_as_down(
    sim: SimCluster,
) -> None:
    up(sim, CLAIMANT)  # hv1 died unseen; its VM is restarted on hv2: a conflict for now
    sim.run(sim.controllers["c1"].switch_down("hv1", sim.now))  # c1: hv1 unreachable for long
    sim.deliver_all()

    assert placed(sim) == {(*CLAIMANT, PortState.UP)}
    assert reach(sim, VM_A) == {frozenset({CLAIMANT})}
    assert all(not found for found in conflicts(sim).values())


def test_an_unreachable_hypervisors_vms_count_as_down_until_it_is_back(sim: SimCluster) -> None:
    c1 = sim.controllers["c1"]
    sim.run(c1.switch_down("hv1", sim.now))
    sim.deliver_all()
    assert placed(sim) == {(*OWNER, PortState.DOWN)}

    sim.run(c1.switch_back("hv1", [add(*OWNER, VM_A), link(*OWNER, VM_A, up=True)], sim.now))
    sim.deliver_all()

    assert placed(sim) == {(*OWNER, PortState.UP)}


def test_a_port_deleted_while_its_hypervisor_was_unreachable_is_removed_when_it_is_back(
    sim: SimCluster,
) -> None:
    c1 = sim.controllers["c1"]
    sim.run(c1.switch_down("hv1", sim.now))
    sim.run(c1.switch_back("hv1", [], sim.now))  # back without A's port
    sim.deliver_all()

    assert all(c.entry(VM_A) is None for c in sim.controllers.values())
