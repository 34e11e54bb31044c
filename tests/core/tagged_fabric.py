"""A fake fabric that models VLAN and tunnel headers: `FakeOFTable`s fed encoded flow mods.

The simulator's own fabric matches on MACs and ports only; segments need the
tags that frames carry between switches. `TaggedFabric.watch(sim)` takes the
place of a `SimCluster`'s fabric (with the flows its controllers installed so far).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from tests.fakes.oftable import FakeOFTable
from vportd.core.flow import ADD, VID_PRESENT, Flow, FlowMod, SetField
from vportd.core.topology import Topology
from vportd.core.tunnels import TunnelEndpoint
from vportd.southbound.openflow import flowcodec, wire
from vportd_lab.sim.cluster import SimCluster
from vportd_lab.sim.fabric import Fabric

Delivery = tuple[str, int, int]  # switch, edge port, the frame's vlan_vid as it left
MAX_HOPS = 64


class TaggedFabric(Fabric):
    """Switches joined by the topology's links, and overlay hosts by their tunnel ports:
    a frame output to a tunnel port with `tun_ipv4_dst` D enters the host whose endpoint
    is D by its tunnel port, with the `tunnel_id` it was sent with."""

    def __init__(self, topology: Topology, tunnels: Iterable[TunnelEndpoint] = ()) -> None:
        super().__init__(topology)
        self.tables = {s: FakeOFTable() for s in topology.switches}
        self.tunnels = {e.host: e for e in tunnels}
        self.by_ip = {int(ipaddress.IPv4Address(e.ip)): e for e in self.tunnels.values()}
        self.sent_tagged: list[tuple[str, int]] = []  # tunnel outputs that kept a VLAN tag

    @classmethod
    def watch(cls, sim: SimCluster, tunnels: Iterable[TunnelEndpoint] = ()) -> TaggedFabric:
        fabric = cls(sim.topology, tunnels)
        for switch in sim.topology.switches:
            held = sim.master_of(switch).installed(switch)
            fabric.apply(FlowMod(switch, ADD, f) for f in held)
        sim.fabric = fabric
        return fabric

    def apply(self, mods: Iterable[FlowMod]) -> None:
        for mod in mods:
            self.tables[mod.switch].apply(wire.serialize(flowcodec.encode_flow_mod(mod), 1))

    def reach(
        self, switch: str, in_port: int, eth_dst: str, eth_src: str, vlan_vid: int = 0
    ) -> set[Delivery]:
        """Where a frame entering `switch` by `in_port` leaves the fabric, and how tagged."""
        out: set[Delivery] = set()
        stack = [(switch, in_port, vlan_vid, 0, 0)]
        seen: set[tuple[str, int, int, int]] = set()
        while stack:
            here, port, vid, vni, hops = stack.pop()
            if (here, port, vid, vni) in seen or hops > MAX_HOPS:
                continue
            seen.add((here, port, vid, vni))
            trace = self.tables[here].trace(port, eth_src, eth_dst, vlan_vid=vid, tunnel_id=vni)
            links = self.topology.link_ports(here)
            for sent, headers in zip(trace.outputs, trace.headers, strict=True):
                if not isinstance(sent, int):
                    continue
                fields = dict(headers)
                tag = fields["vlan_vid"]
                end = links.get(sent)
                far = self._through_tunnel(here, sent, fields)
                if far is not None:
                    stack.append((far.host, far.port or 0, 0, fields["tunnel_id"], hops + 1))
                elif end is None:
                    out.add((here, sent, tag))
                else:
                    stack.append((end.switch, end.port, tag, 0, hops + 1))
        return out

    def _through_tunnel(
        self, here: str, port: int, fields: dict[str, int]
    ) -> TunnelEndpoint | None:
        """The host a frame output to `here`'s tunnel port goes to (its `tun_ipv4_dst`)."""
        mine = self.tunnels.get(here)
        if mine is None or port != mine.port:
            return None
        if fields["vlan_vid"]:
            self.sent_tagged.append((here, fields["vlan_vid"]))
        far = self.by_ip.get(fields["tun_ipv4_dst"])
        assert far is not None, f"{here} tunnels a frame to no host ({fields})"
        return far


def mentions(flow: Flow, tag: int, vni: int | None = None) -> bool:
    """Whether a flow matches or sets segment `tag`'s VLAN tag (or VNI: `tag` by default)."""
    vid, vni = VID_PRESENT | tag, tag if vni is None else vni
    return (
        flow.match.vlan_vid == vid or SetField("vlan_vid", vid) in flow.actions
        or flow.match.tunnel_id == vni or SetField("tunnel_id", vni) in flow.actions
    )  # fmt: skip
