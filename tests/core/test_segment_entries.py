"""Tenant segments in the vPort entry: a VM's segment is its port's VLAN tag, it keeps
it across a migration, and a destination port in another segment fails the migration."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.core.support import VM_A, add, cluster, delete, link, ready_migration
from vportd.core.errors import InvalidRequest
from vportd.core.messages import PortEvent
from vportd.core.segments import Segment, SegmentMap
from vportd_lab.sim.cluster import SimCluster


def tagged(ev: PortEvent, tag: int) -> PortEvent:
    return replace(ev, segment=tag)


def boot_tagged(sim: SimCluster, ovs: str, port: int, tag: int) -> None:
    sim.port_event(tagged(add(ovs, port, VM_A), tag))
    sim.port_event(tagged(link(ovs, port, VM_A, up=True), tag))
    sim.deliver_all()


def segments(sim: SimCluster) -> set[tuple[str | None, int]]:
    return {(c.vport(VM_A).loc.ovs, c.vport(VM_A).loc.segment) for c in sim.controllers.values()}


def test_every_controller_holds_the_vms_segment() -> None:
    sim = cluster()
    boot_tagged(sim, "hv0", 1, 10)
    assert segments(sim) == {("hv0", 10)}
    assert sim.store[VM_A].loc.segment == 10


def test_a_tag_change_changes_the_segment() -> None:
    sim = cluster()
    boot_tagged(sim, "hv0", 1, 10)
    sim.port_event(tagged(link("hv0", 1, VM_A, up=True), 20))
    sim.deliver_all()
    assert segments(sim) == {("hv0", 20)}


def test_a_migration_keeps_the_segment() -> None:
    sim = cluster()
    boot_tagged(sim, "hv0", 1, 10)
    mid = ready_migration(sim, VM_A, "hv0", "hv1")
    sim.port_event(tagged(add("hv1", 4, VM_A), 10))
    sim.port_event(tagged(link("hv1", 4, VM_A, up=True), 10))
    sim.port_event(tagged(delete("hv0", 1, VM_A), 10))
    sim.deliver_all()
    assert segments(sim) == {("hv1", 10)}
    assert sim.leader.migration(mid).state == "completed"


def test_a_destination_port_with_another_tag_fails_the_migration() -> None:
    sim = cluster()
    boot_tagged(sim, "hv0", 1, 10)
    mid = ready_migration(sim, VM_A, "hv0", "hv1")
    sim.port_event(tagged(add("hv1", 4, VM_A), 20))
    sim.port_event(tagged(link("hv1", 4, VM_A, up=True), 20))  # never activates there
    sim.deliver_all()
    view = sim.leader.migration(mid)
    assert view.state == "failed"
    assert view.reason is not None and "tag 20" in view.reason and "segment 10" in view.reason
    # The VM runs on at the source, in its segment, on every controller.
    assert segments(sim) == {("hv0", 10)}
    assert all(not c.vport(VM_A).migrating for c in sim.controllers.values())


def test_segment_map_defaults_and_refusals() -> None:
    seg = SegmentMap([Segment(10, 5010, "web"), Segment(0, 4999)])
    assert (seg.vni(10), seg.vni(11), seg.vni(0)) == (5010, 11, 4999)
    assert (seg.tag(5010), seg.tag(11), seg.tag(10), seg.tag(4999)) == (10, 11, None, 0)
    assert seg.name(10) == "web"
    with pytest.raises(InvalidRequest, match="same VNI"):
        SegmentMap([Segment(10, 7000), Segment(11, 7000)])
    with pytest.raises(InvalidRequest, match="default VNI of tag 12"):
        SegmentMap([Segment(10, 12)])
    with pytest.raises(InvalidRequest, match="twice"):
        SegmentMap([Segment(10, 7000), Segment(10, 7001)])
