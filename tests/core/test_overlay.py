"""The overlay: hypervisors joined by flow-based tunnels only (no links). A frame to a VM on
another host leaves with tun_dst = that host's endpoint and tun_id = the segment's VNI and
is delivered there to that VM's port only; broadcast is replicated to the segment's hosts
only; a host without a VM of a segment holds no flow of it; migrations hand over across
the tunnels."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from tests.core.support import (
    TIMEOUTS,
    add,
    delete,
    first,
    link,
    ready_migration,
    start_migration,
)
from tests.core.tagged_fabric import TaggedFabric, mentions
from vportd.core.compiler import FlowCompiler
from vportd.core.flow import FlowMod, Output, SetField
from vportd.core.messages import SyncComplete, VPortSync
from vportd.core.model import Location, VPortRecord
from vportd.core.segments import Segment, SegmentMap
from vportd.core.topology import Topology
from vportd.core.tunnels import TunnelEndpoint, Tunnels
from vportd_lab.sim.cluster import SimCluster, Stored

BCAST = "ff:ff:ff:ff:ff:ff"
A, B, C, D, E = (f"02:00:00:00:00:b{i}" for i in range(5))
TUN = 9  # every host's tunnel port
HOSTS = ("hv0", "hv1", "hv2", "hv3")
ENDS = [TunnelEndpoint(h, f"192.0.2.{i + 1}", TUN) for i, h in enumerate(HOSTS)]


LAB_MASTERS = {"hv0": "c1", "hv1": "c2", "hv2": "c0", "hv3": "c1"}  # as the lab had them


def overlay(masters: dict[str, str] | None = None) -> tuple[SimCluster, TaggedFabric]:
    topo = Topology()
    for i, host in enumerate(HOSTS):
        topo.add_switch(host, i + 1)
    masters = masters or {"hv0": "c0", "hv1": "c1", "hv2": "c2", "hv3": "c1"}  # (leader c0: hv0)
    sim = SimCluster.build(topo, 3, timeouts=TIMEOUTS, masters=masters)
    for ctl in sim.controllers.values():
        sim.run(ctl.tunnels_are(ENDS))
    return sim, TaggedFabric.watch(sim, ENDS)


def boot(sim: SimCluster, mac: str, ovs: str, port: int, tag: int) -> None:
    sim.port_event(replace(add(ovs, port, mac), segment=tag))
    sim.port_event(replace(link(ovs, port, mac, up=True), segment=tag))
    sim.deliver_all()


def tenants(masters: dict[str, str] | None = None) -> tuple[SimCluster, TaggedFabric]:
    """Segment 10: A hv0:1, B hv1:2, C hv2:3. Segment 20: D hv0:4, E hv1:5. hv3: none."""
    sim, fabric = overlay(masters)
    for mac, host, port, tag in [
        (A, "hv0", 1, 10), (B, "hv1", 2, 10), (C, "hv2", 3, 10), (D, "hv0", 4, 20),
        (E, "hv1", 5, 20),
    ]:  # fmt: skip
        boot(sim, mac, host, port, tag)
    return sim, fabric


def holding(sim: SimCluster, tag: int) -> set[str]:
    return {h for h in HOSTS if any(mentions(f, tag) for f in sim.master_of(h).installed(h))}


def test_unicast_crosses_the_tunnel_to_the_vms_port_only() -> None:
    sim, fabric = tenants()
    assert fabric.reach("hv0", 1, B, A) == {("hv1", 2, 0)}
    assert fabric.reach("hv0", 4, E, D) == {("hv1", 5, 0)}
    for host, port, dst in [("hv0", 1, E), ("hv0", 4, B), ("hv1", 5, A), ("hv2", 3, D)]:
        assert fabric.reach(host, port, dst, C) == set(), (host, port, dst)
    assert fabric.sent_tagged == []  # the VNI carries the segment, not a VLAN tag
    # The flow: tun_dst = hv1's endpoint, tun_id = the VNI, out of the tunnel port.
    (flow,) = [f for f in sim.master_of("hv0").installed("hv0") if f.match.eth_dst == B]
    assert flow.actions[1:] == (
        SetField("tunnel_id", 10), SetField("tun_ipv4_dst", "192.0.2.2"), Output(TUN),
    )  # fmt: skip


def test_broadcast_goes_to_the_segments_hosts_only() -> None:
    _, fabric = tenants()
    assert fabric.reach("hv0", 1, BCAST, A) == {("hv1", 2, 0), ("hv2", 3, 0)}
    assert fabric.reach("hv1", 5, BCAST, E) == {("hv0", 4, 0)}
    assert fabric.reach("hv2", 3, "02:00:00:00:99:99", C) == set()  # unknown unicast


def test_a_frame_from_the_tunnel_is_never_sent_back_into_it() -> None:
    _, fabric = tenants()
    # A frame for C that arrives at hv1 (not C's host) from the tunnel goes nowhere.
    assert fabric.tables["hv1"].lookup(TUN, A, C) == set()
    trace = fabric.tables["hv1"].trace(TUN, A, BCAST, tunnel_id=10)
    assert set(trace.outputs) == {2}  # the local port only, no copy back into the tunnel
    # A VNI the host holds no segment for is dropped.
    assert fabric.tables["hv1"].lookup(TUN, A, B) == set()  # (tunnel_id 0)


def test_a_host_without_a_segments_vms_holds_no_flow_of_it() -> None:
    sim, fabric = tenants()
    assert (holding(sim, 10), holding(sim, 20)) == ({"hv0", "hv1", "hv2"}, {"hv0", "hv1"})
    boot(sim, "02:00:00:00:00:c1", "hv3", 6, 20)
    assert holding(sim, 20) == {"hv0", "hv1", "hv3"}
    assert fabric.reach("hv3", 6, BCAST, "02:00:00:00:00:c1") == {("hv0", 4, 0), ("hv1", 5, 0)}
    sim.port_event(replace(delete("hv3", 6, "02:00:00:00:00:c1"), segment=20))
    sim.deliver_all()
    assert holding(sim, 20) == {"hv0", "hv1"}
    assert "hv2" not in holding(sim, 20) and "hv3" not in holding(sim, 10)
    for host, table in fabric.tables.items():
        assert table.core_flows() == set(sim.master_of(host).installed(host))


def test_a_migration_across_hosts_hands_over_through_the_tunnels() -> None:
    sim, fabric = tenants()
    assert "hv3" not in holding(sim, 10)
    mid = ready_migration(sim, A, "hv0", "hv3")
    assert "hv3" in holding(sim, 10)  # before sync complete was answered
    sim.port_event(replace(add("hv3", 7, A), segment=10))
    sim.deliver_all()
    both = {("hv0", 1, 0), ("hv3", 7, 0)}
    assert fabric.reach("hv1", 2, A, B) == both  # from another host: a copy to each
    assert fabric.reach("hv0", 4, A, D) == set()  # not from another segment
    sim.port_event(replace(link("hv3", 7, A, up=True), segment=10))
    sim.port_event(replace(delete("hv0", 1, A), segment=10))
    sim.deliver_all()
    assert sim.leader.migration(mid).state == "completed"
    assert fabric.reach("hv1", 2, A, B) == {("hv3", 7, 0)}
    assert fabric.reach("hv3", 7, BCAST, A) == {("hv1", 2, 0), ("hv2", 3, 0)}
    assert holding(sim, 10) == {"hv1", "hv2", "hv3"}


def test_sync_complete_covers_the_segments_flows_at_the_destination() -> None:
    """The vPort sync's own output holds the segment's flows on the destination even when
    the migration's record reached its controller through the store first."""
    sim, _ = tenants()
    start_migration(sim, A, "hv0", "hv3")
    dest = sim.master_of("hv3")
    stored = first(sim, lambda i: i.to == dest.me and isinstance(i.message, Stored))
    sim.deliver(stored)  # the record first: the flows go out with this output
    sync = first(sim, lambda i: i.to == dest.me and isinstance(i.message, VPortSync))
    message = sim.queue.pop(sync).message
    assert isinstance(message, VPortSync)
    out = dest.vport_sync(message, sim.now)
    assert isinstance(out.reply, SyncComplete)
    promised = {m.flow for m in out.flow_mods if m.switch == "hv3"}
    assert {f for f in dest.installed("hv3") if mentions(f, 10)} <= promised
    assert any(f.match.tunnel_id == 10 for f in promised)  # it takes segment 10 in


def test_a_moved_endpoint_repoints_the_tunnel_flows() -> None:
    sim, fabric = tenants()
    moved = [replace(e, ip="198.51.100.2") if e.host == "hv1" else e for e in ENDS]
    for ctl in sim.controllers.values():
        sim.run(ctl.tunnels_are(moved))
    fabric.tunnels = {e.host: e for e in moved}
    fabric.by_ip = {int(ipaddress.IPv4Address(e.ip)): e for e in moved}
    assert fabric.reach("hv0", 1, B, A) == {("hv1", 2, 0)}
    held = sim.master_of("hv0").installed("hv0")
    assert (
        SetField("tun_ipv4_dst", "198.51.100.2")
        in next(f for f in held if f.match.eth_dst == B).actions
    )
    assert not any(SetField("tun_ipv4_dst", "192.0.2.2") in f.actions for f in held)


def test_a_tag_change_moves_the_vm_to_the_other_segment() -> None:
    sim, fabric = tenants()
    sim.port_event(replace(link("hv2", 3, C, up=True), segment=20))  # C: segment 10 -> 20
    sim.deliver_all()
    assert fabric.reach("hv0", 4, C, D) == {("hv2", 3, 0)}
    assert fabric.reach("hv0", 1, C, A) == set()
    assert holding(sim, 10) == {"hv0", "hv1"} and holding(sim, 20) == {"hv0", "hv1", "hv2"}


def test_a_segments_vni_is_what_the_configuration_maps_it_to() -> None:
    topo = Topology()
    for i, host in enumerate(HOSTS[:2]):
        topo.add_switch(host, i + 1)
    tunnels = Tunnels()
    tunnels.set(ENDS[:2])
    flows = FlowCompiler(topo, ["hv0"], tunnels=tunnels, segments=SegmentMap([Segment(10, 5010)]))
    mods: list[FlowMod] = []
    for mac, host, port in [(A, "hv0", 1), (B, "hv1", 2)]:
        loc = Location(host, port, None, True, 0, 0, "c1", segment=10)
        mods += flows.update_vm(VPortRecord(mac, loc))
    made = {m.flow for m in mods}
    assert any(f.match.tunnel_id == 5010 for f in made)  # from the tunnel: VNI 5010 is 10
    to_b = next(f for f in made if f.match.eth_dst == B)
    assert SetField("tunnel_id", 5010) in to_b.actions
    assert not any(f.match.tunnel_id == 10 or SetField("tunnel_id", 10) in f.actions for f in made)


@pytest.mark.parametrize("masters", [None, LAB_MASTERS])
def test_a_host_whose_last_vm_of_a_segment_migrates_away_drops_the_segment(
    masters: dict[str, str] | None,
) -> None:
    sim, fabric = tenants(masters)
    boot(sim, "02:00:00:00:00:c2", "hv2", 9, 20)  # segment 20 on hv0, hv1 and hv2
    assert holding(sim, 20) == {"hv0", "hv1", "hv2"}
    mid = ready_migration(sim, D, "hv0", "hv1")
    sim.port_event(replace(add("hv1", 8, D), segment=20))
    sim.deliver_all()
    sim.port_event(replace(link("hv1", 8, D, up=True), segment=20))
    sim.port_event(replace(delete("hv0", 4, D), segment=20))
    sim.deliver_all()
    assert sim.leader.migration(mid).state == "completed"
    assert holding(sim, 20) == {"hv1", "hv2"}
    for host, table in fabric.tables.items():
        assert table.core_flows() == set(sim.master_of(host).installed(host))


F, G = "02:00:00:00:00:f1", "02:00:00:00:00:f2"  # untagged: the default segment


def test_the_default_segment_crosses_the_tunnels_as_its_vni() -> None:
    sim, fabric = tenants()
    boot(sim, F, "hv0", 11, 0)
    boot(sim, G, "hv2", 12, 0)
    assert fabric.reach("hv0", 11, G, F) == {("hv2", 12, 0)}
    assert fabric.reach("hv2", 12, F, G) == {("hv0", 11, 0)}
    assert fabric.reach("hv0", 11, BCAST, F) == {("hv2", 12, 0)}  # not to A or D on hv0
    for host, port, dst, src in [("hv0", 11, A, F), ("hv0", 1, F, A), ("hv2", 3, G, C),
                                 ("hv2", 12, C, G), ("hv1", 5, F, E)]:  # fmt: skip
        assert fabric.reach(host, port, dst, src) == set(), (host, port, dst)
    assert fabric.sent_tagged == []
    (flow,) = [f for f in sim.master_of("hv0").installed("hv0") if f.match.eth_dst == G]
    assert flow.actions[1:] == (
        SetField("tunnel_id", 0), SetField("tun_ipv4_dst", "192.0.2.3"), Output(TUN),
    )  # fmt: skip
    assert holding(sim, 0) == {"hv0", "hv2"}  # hv1 and hv3 host none of it


def test_an_untagged_vm_migrates_across_hosts_and_its_old_host_drops_the_segment() -> None:
    sim, fabric = tenants()
    boot(sim, F, "hv0", 11, 0)
    boot(sim, G, "hv2", 12, 0)
    mid = ready_migration(sim, G, "hv2", "hv3")
    assert holding(sim, 0) == {"hv0", "hv2", "hv3"}
    sim.port_event(add("hv3", 13, G))
    sim.deliver_all()
    assert fabric.reach("hv0", 11, G, F) == {("hv2", 12, 0), ("hv3", 13, 0)}  # hand-over
    sim.port_event(link("hv3", 13, G, up=True))
    sim.port_event(delete("hv2", 12, G))
    sim.deliver_all()
    assert sim.leader.migration(mid).state == "completed"
    assert fabric.reach("hv0", 11, G, F) == {("hv3", 13, 0)}
    assert holding(sim, 0) == {"hv0", "hv3"}
    for host, table in fabric.tables.items():
        assert table.core_flows() == set(sim.master_of(host).installed(host))
