"""What happens to a switch while nobody masters it is read when a controller gains it.

The source's master dies during a migration; the source port is deleted (or the VM
switches over) before another controller masters the switch. The new master reads
the switch's ports from OVSDB: a migration whose source port is gone is completed
there and then (claim 2: the delete with reason vm-migration), not at its timeout.
"""

from __future__ import annotations

from tests.core.support import VM_A, add, link, ready_migration
from vportd.core.messages import EventKind, PortEvent, Reason
from vportd.core.model import MigrationState, PortState
from vportd_lab.sim.cluster import SimCluster

SOURCE, DESTINATION = ("hv1", 1), ("hv2", 7)


def lose_master(sim: SimCluster, switch: str) -> None:
    """The switch's master dies: every controller sees it unmastered."""
    for ctl in sim.controllers.values():
        ctl.master_is(switch, None)


def gain(sim: SimCluster, cid: str, switch: str, ports: list[PortEvent]) -> None:
    """`cid` masters `switch` now and reads its ports from OVSDB."""
    for other, ctl in sim.controllers.items():
        if other != cid:
            ctl.master_is(switch, cid)
    sim.run(sim.controllers[cid].gain_switch(switch, ports, sim.now))
    sim.deliver_all()


def test_a_source_deleted_after_the_switchover_while_unmastered_completes_on_gain(
    sim: SimCluster,
) -> None:
    mid = ready_migration(sim, VM_A, "hv1", "hv2")
    sim.port_event(add(*DESTINATION, VM_A))
    sim.port_event(link(*DESTINATION, VM_A, up=True))  # activated at the destination
    sim.deliver_all()
    lose_master(sim, "hv1")  # c1 dies; then the source port is deleted: nobody sees it
    gain(sim, "c0", "hv1", [])

    assert sim.leader.migration(mid).state == "completed"
    writes = [w for w in sim.writes if w.record.vm == VM_A and w.reason is Reason.VM_MIGRATION]
    assert writes and writes[-1].kind is EventKind.DELETE
    for ctl in sim.controllers.values():
        rec = ctl.vport(VM_A)
        assert (rec.loc.ovs, rec.loc.port) == DESTINATION
        assert (rec.migration_state, rec.port_state) == (MigrationState.NOT_MIGRATING, PortState.UP)


def test_a_switchover_and_source_delete_unseen_by_the_source_complete_on_gain(
    sim: SimCluster,
) -> None:
    mid = ready_migration(sim, VM_A, "hv1", "hv2")
    sim.port_event(add(*DESTINATION, VM_A))  # the pre-copy
    sim.deliver_all()
    lose_master(sim, "hv1")  # c1 dies in the pre-copy
    sim.port_event(link(*DESTINATION, VM_A, up=True))  # the switchover, seen at hv2 only
    sim.deliver_all()
    gain(sim, "c0", "hv1", [])  # the source port is gone by now

    assert sim.leader.migration(mid).state == "completed"
    assert {(c.vport(VM_A).loc.ovs, c.vport(VM_A).migrating) for c in sim.controllers.values()} == {
        ("hv2", False)
    }


def test_a_source_port_still_there_on_gain_keeps_the_migration_going(sim: SimCluster) -> None:
    mid = ready_migration(sim, VM_A, "hv1", "hv2")
    sim.port_event(add(*DESTINATION, VM_A))
    sim.deliver_all()
    lose_master(sim, "hv1")
    source = [
        PortEvent(EventKind.ADD, *SOURCE, VM_A, "tap1"),
        PortEvent(EventKind.MODIFY, *SOURCE, VM_A, "tap1", link_up=True),
    ]
    gain(sim, "c0", "hv1", source)  # the VM still runs at the source

    assert sim.leader.migration(mid).state == "ready"
    for ctl in sim.controllers.values():
        rec = ctl.vport(VM_A)
        assert (rec.loc.ovs, rec.migration_state) == ("hv1", MigrationState.MIGRATING)


def test_a_source_gone_before_the_destination_is_heard_waits_for_the_destination(
    sim: SimCluster,
) -> None:
    """etcd stopped in the pre-copy: both masters lost their switches before the
    destination's port was written, and the VM switched over meanwhile. The source's
    new master, first back, finds no port: the destination may yet report, so the
    migration is not failed; the destination's new master then completes it."""
    mid = ready_migration(sim, VM_A, "hv1", "hv2")
    lose_master(sim, "hv1")
    lose_master(sim, "hv2")  # the destination's add and the switchover go unheard
    gain(sim, "c0", "hv1", [])  # the source port is gone by now

    assert sim.leader.migration(mid).state == "ready"
    gain(sim, "c1", "hv2", [add(*DESTINATION, VM_A), link(*DESTINATION, VM_A, up=True)])

    assert sim.leader.migration(mid).state in ("activated", "completed")
    for ctl in sim.controllers.values():
        rec = ctl.vport(VM_A)
        assert (rec.loc.ovs, rec.loc.port, rec.loc.link_up) == (*DESTINATION, True)
