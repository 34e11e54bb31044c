"""Hand-over flows: make-before-break in the data plane (flows.py, table 1).

From the moment a migrating VM's destination port exists until the VM
activates there, every switch's frames for the VM reach both its port at the
source and its new port, wherever the frame enters, without a loop; the
flows go when the migration activates or rolls back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from tests.core.support import TIMEOUTS, add, link, ready_migration
from vportd.core.flow import COOKIE_HANDOVER, COOKIE_KIND_MASK, FORWARD_TABLE, FlowMod
from vportd.core.topology import Topology
from vportd_lab.sim.cluster import SimCluster

VM = "02:00:00:00:0f:01"
FINISHED = ("completed", "aborted", "failed")
PEER_PORT = 9  # an edge port on every switch where "other VMs" send from


def line(n: int = 4) -> Topology:
    """s0 - s1 - ... - s{n-1}; port 1 of s{i} leads to s{i+1}, port 2 to s{i-1}."""
    topo = Topology()
    for i in range(n):
        topo.add_switch(f"s{i}", i + 1)
    for i in range(n - 1):
        topo.add_link(f"s{i}", 1, f"s{i + 1}", 2)
    return topo


def migrating(src: str, dst: str) -> SimCluster:
    """The VM runs on `src` port 5; a migration to `dst` is ready and its port 6 exists."""
    sim = SimCluster.build(line(), 3, timeouts=TIMEOUTS)
    sim.port_event(add(src, 5, VM))
    sim.port_event(link(src, 5, VM, up=True))
    sim.deliver_all()
    ready_migration(sim, VM, src, dst)
    sim.port_event(add(dst, 6, VM))  # the destination tap: down, the VM runs at the source
    sim.deliver_all()
    return sim


def migration_of(sim: SimCluster) -> str:
    """The id of the one migration the leader runs."""
    (view,) = [m for m in sim.leader.migrations() if m.state not in FINISHED]
    return view.id


def reached(sim: SimCluster) -> dict[str, set[tuple[str, int]]]:
    assert sim.fabric is not None
    return {s: sim.fabric.deliveries(s, PEER_PORT, VM) for s in sim.topology.switches}


def handover_flows_left(sim: SimCluster) -> list[str]:
    assert sim.fabric is not None
    return [
        name
        for name, switch in sim.fabric.switches.items()
        for flow in switch.flows.values()
        if flow.cookie & COOKIE_KIND_MASK == COOKIE_HANDOVER
    ]


def test_during_the_hand_over_every_switch_reaches_both_ports() -> None:
    for src, dst in (("s0", "s3"), ("s3", "s0"), ("s1", "s2"), ("s2", "s0")):
        sim = migrating(src, dst)
        both = {(src, 5), (dst, 6)}
        assert all(got == both for got in reached(sim).values()), (src, dst, reached(sim))
        # Frames entering the source from the path, and the destination from its far side.
        assert sim.fabric is not None
        for switch in (src, dst):
            for port in sim.topology.link_ports(switch):
                assert sim.fabric.deliveries(switch, port, VM) <= both


def test_activation_removes_the_hand_over_flows_and_points_everything_at_the_new_port() -> None:
    sim = migrating("s0", "s3")
    sim.port_event(link("s3", 6, VM, up=True))  # the VM resumes at the destination
    sim.deliver_all()
    assert all(got == {("s3", 6)} for got in reached(sim).values()), reached(sim)
    assert handover_flows_left(sim) == []


def test_an_abort_removes_the_hand_over_flows_and_the_vm_stays_at_the_source() -> None:
    sim = migrating("s0", "s3")
    assert handover_flows_left(sim)
    sim.abort(migration_of(sim))
    sim.deliver_all()
    assert all(got == {("s0", 5)} for got in reached(sim).values()), reached(sim)
    assert handover_flows_left(sim) == []


def test_a_reconnect_keeps_the_hand_over_flows_exactly() -> None:
    sim = migrating("s0", "s3")
    for ctl in sim.controllers.values():
        for switch in [s.name for s in ctl.switches() if ctl.mastered(s.name)]:
            held = ctl.installed(switch)
            assert held, switch
            ctl.switch_gone(switch)  # the switch reconnects: what it holds is read back
            assert ctl.flows_read(switch, held).flow_mods == [], switch  # nothing to correct


def test_a_hand_over_flow_takes_the_place_of_the_forwarding_flow() -> None:
    """One flow per switch for the VM's frames: the activation re-points or deletes it
    with one flow mod, no add and delete of a hand-over flow of its own."""
    sim = migrating("s0", "s3")
    assert sim.fabric is not None
    for name, switch in sim.fabric.switches.items():
        held = [f for f in switch.flows.values() if f.match.eth_dst == VM]
        assert len(held) == 1, (name, held)
        assert held[0].cookie & COOKIE_KIND_MASK == COOKIE_HANDOVER, (name, held)
    mods: list[FlowMod] = []
    apply = sim.fabric.apply

    def record(batch: Iterable[FlowMod]) -> None:
        batch = list(batch)
        mods.extend(batch)
        apply(batch)

    sim.fabric.apply = record  # type: ignore[method-assign,assignment]
    sim.port_event(link("s3", 6, VM, up=True))
    sim.deliver_all()
    per_switch = Counter(
        m.switch for m in mods if m.flow.table == FORWARD_TABLE and m.flow.match.eth_dst == VM
    )
    assert per_switch and max(per_switch.values()) == 1, per_switch
    assert all(got == {("s3", 6)} for got in reached(sim).values()), reached(sim)
