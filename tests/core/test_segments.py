"""Tenant segments in the data plane (pipeline tables 0, 3 and 4): where a frame of a
segment goes, that it never reaches another segment, and which switches hold a segment's
flows. Frames are traced through `FakeOFTable`s fed the encoded flow mods."""

from __future__ import annotations

from dataclasses import replace

from tests.core.support import TIMEOUTS, add, delete, link, mesh, ready_migration
from tests.core.tagged_fabric import TaggedFabric, mentions
from vportd.core.flow import Output
from vportd.core.topology import Topology
from vportd_lab.sim.cluster import SimCluster

BCAST = "ff:ff:ff:ff:ff:ff"
UNKNOWN = "02:00:00:00:99:99"
A, B, C, D, E = (f"02:00:00:00:00:a{i}" for i in range(5))


def boot(sim: SimCluster, mac: str, ovs: str, port: int, tag: int) -> None:
    sim.port_event(replace(add(ovs, port, mac), segment=tag))
    sim.port_event(replace(link(ovs, port, mac, up=True), segment=tag))
    sim.deliver_all()


def gone(sim: SimCluster, mac: str, ovs: str, port: int, tag: int) -> None:
    sim.port_event(replace(delete(ovs, port, mac), segment=tag))
    sim.deliver_all()


def tenants() -> tuple[SimCluster, TaggedFabric]:
    """On a mesh of three: segment 10 (A hv0:1, B hv1:2), 20 (C hv1:3, E hv0:5), 0 (D hv2:4)."""
    sim = SimCluster.build(mesh(3), 3, timeouts=TIMEOUTS)
    fabric = TaggedFabric.watch(sim)
    for mac, ovs, port, tag in [
        (A, "hv0", 1, 10), (B, "hv1", 2, 10), (C, "hv1", 3, 20), (D, "hv2", 4, 0),
        (E, "hv0", 5, 20),
    ]:  # fmt: skip
        boot(sim, mac, ovs, port, tag)
    return sim, fabric


def test_unicast_reaches_its_own_segment_only() -> None:
    _, fabric = tenants()
    assert fabric.reach("hv0", 1, B, A) == {("hv1", 2, 0)}  # A -> B, untagged on delivery
    assert fabric.reach("hv1", 3, E, C) == {("hv0", 5, 0)}  # C -> E
    assert fabric.reach("hv1", 2, A, B) == {("hv0", 1, 0)}
    for src, port, dst in [("hv0", 1, C), ("hv0", 1, D), ("hv0", 1, E), ("hv2", 4, A),
                           ("hv2", 4, C), ("hv1", 3, A), ("hv1", 3, B)]:  # fmt: skip
        assert fabric.reach(src, port, dst, UNKNOWN) == set(), (src, port, dst)


def test_unknown_unicast_and_broadcast_stay_in_the_segment() -> None:
    _, fabric = tenants()
    assert fabric.reach("hv0", 1, UNKNOWN, A) == set()
    assert fabric.reach("hv0", 1, BCAST, A) == {("hv1", 2, 0)}
    assert fabric.reach("hv1", 3, BCAST, C) == {("hv0", 5, 0)}
    assert fabric.reach("hv2", 4, BCAST, D) == set()  # no other VM in segment 0


def test_a_vms_own_tag_on_an_untagged_port_goes_nowhere() -> None:
    _, fabric = tenants()
    for dst in (A, B, BCAST):
        assert fabric.reach("hv2", 4, dst, D, vlan_vid=0x1000 | 10) == set()


def test_a_switch_holds_a_segments_flows_only_while_it_has_its_vms() -> None:
    sim, fabric = tenants()

    def holding(tag: int) -> set[str]:
        return {
            s for s in sim.topology.switches
            if any(mentions(f, tag) for f in sim.master_of(s).installed(s))
        }  # fmt: skip

    assert (holding(10), holding(20)) == ({"hv0", "hv1"}, {"hv0", "hv1"})
    boot(sim, "02:00:00:00:00:c1", "hv2", 7, 20)
    assert holding(20) == {"hv0", "hv1", "hv2"}
    assert fabric.reach("hv2", 7, BCAST, "02:00:00:00:00:c1") == {("hv1", 3, 0), ("hv0", 5, 0)}
    assert fabric.reach("hv0", 5, "02:00:00:00:00:c1", E) == {("hv2", 7, 0)}
    gone(sim, "02:00:00:00:00:c1", "hv2", 7, 20)
    assert holding(20) == {"hv0", "hv1"}
    assert holding(10) == {"hv0", "hv1"}
    for switch, table in fabric.tables.items():  # what the switches hold is what was meant
        assert table.core_flows() == set(sim.master_of(switch).installed(switch))


def line(n: int = 3) -> Topology:
    """s0 - s1 - s2; port 1 of s{i} leads to s{i+1}, port 2 to s{i-1}."""
    topo = Topology()
    for i in range(n):
        topo.add_switch(f"s{i}", i + 1)
    for i in range(n - 1):
        topo.add_link(f"s{i}", 1, f"s{i + 1}", 2)
    return topo


def test_a_segment_crosses_a_switch_without_its_vms_tagged() -> None:
    sim = SimCluster.build(line(), 3, timeouts=TIMEOUTS)
    fabric = TaggedFabric.watch(sim)
    boot(sim, A, "s0", 5, 10)
    boot(sim, B, "s2", 5, 10)
    boot(sim, D, "s1", 5, 0)
    assert fabric.reach("s0", 5, B, A) == {("s2", 5, 0)}
    assert fabric.reach("s0", 5, BCAST, A) == {("s2", 5, 0)}  # not to D on s1
    assert fabric.reach("s1", 5, BCAST, D) == set()
    assert fabric.reach("s1", 5, A, D) == set()
    # What crosses s1 (the root: it holds every VM's unicast flow) stays tagged: its
    # segment-10 flows output to links only, and never pop the tag.
    held = [f for f in sim.master_of("s1").installed("s1") if mentions(f, 10)]
    assert {f.table for f in held} == {3, 4}
    assert all(a in (Output(1), Output(2)) for f in held for a in f.actions)


def test_a_migration_keeps_the_segment_and_hands_over_within_it() -> None:
    sim = SimCluster.build(mesh(3), 3, timeouts=TIMEOUTS)  # hv0 is the flood tree's root
    fabric = TaggedFabric.watch(sim)
    boot(sim, A, "hv1", 1, 10)
    boot(sim, B, "hv0", 2, 10)
    boot(sim, D, "hv2", 4, 0)
    assert not any(mentions(f, 10) for f in sim.master_of("hv2").installed("hv2"))
    ready_migration(sim, A, "hv1", "hv2")
    # Sync complete: the destination holds segment 10's flows already (arrival, floods).
    assert any(mentions(f, 10) for f in sim.master_of("hv2").installed("hv2"))
    sim.port_event(replace(add("hv2", 6, A), segment=10))
    sim.deliver_all()
    assert fabric.reach("hv0", 2, A, B) == {("hv1", 1, 0), ("hv2", 6, 0)}  # both, untagged
    assert fabric.reach("hv2", 4, A, D) == set()
    sim.port_event(replace(link("hv2", 6, A, up=True), segment=10))
    gone(sim, A, "hv1", 1, 10)
    assert sim.leader.vport(A).loc.segment == 10
    assert fabric.reach("hv0", 2, A, B) == {("hv2", 6, 0)}
    assert fabric.reach("hv2", 6, BCAST, A) == {("hv0", 2, 0)}
    assert not any(mentions(f, 10) for f in sim.master_of("hv1").installed("hv1"))


def test_a_destination_port_in_another_segment_never_gets_the_vms_frames() -> None:
    sim = SimCluster.build(mesh(3), 3, timeouts=TIMEOUTS)
    fabric = TaggedFabric.watch(sim)
    boot(sim, A, "hv1", 1, 10)
    boot(sim, B, "hv0", 2, 10)
    mid = ready_migration(sim, A, "hv1", "hv2")
    sim.port_event(replace(add("hv2", 6, A), segment=20))
    sim.port_event(replace(link("hv2", 6, A, up=True), segment=20))
    sim.deliver_all()
    assert sim.leader.migration(mid).state == "failed"
    assert fabric.reach("hv0", 2, A, B) == {("hv1", 1, 0)}
    assert fabric.reach("hv2", 6, B, A) == set()  # the port of segment 20 reaches no one
