"""A fake fabric that models VLAN and tunnel headers: `FakeOFTable`s fed encoded flow mods.

The simulator's own fabric matches on MACs and ports only; segments need the
tags that frames carry between switches. `TaggedFabric.watch(sim)` takes the
place of a `SimCluster`'s fabric (with the flows its controllers installed so far).
"""

from __future__ import annotations

from collections.abc import Iterable

from tests.fakes.oftable import FakeOFTable
from vportd.core.flow import ADD, VID_PRESENT, Flow, FlowMod, SetField
from vportd.core.topology import Topology
from vportd.southbound.openflow import flowcodec, wire
from vportd_lab.sim.cluster import SimCluster
from vportd_lab.sim.fabric import Fabric

Delivery = tuple[str, int, int]  # switch, edge port, the frame's vlan_vid as it left
MAX_HOPS = 64


class TaggedFabric(Fabric):
    def __init__(self, topology: Topology) -> None:
        super().__init__(topology)
        self.tables = {s: FakeOFTable() for s in topology.switches}

    @classmethod
    def watch(cls, sim: SimCluster) -> TaggedFabric:
        fabric = cls(sim.topology)
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
        stack = [(switch, in_port, vlan_vid, 0)]
        seen: set[tuple[str, int, int]] = set()
        while stack:
            here, port, vid, hops = stack.pop()
            if (here, port, vid) in seen or hops > MAX_HOPS:
                continue
            seen.add((here, port, vid))
            trace = self.tables[here].trace(port, eth_src, eth_dst, vlan_vid=vid)
            links = self.topology.link_ports(here)
            for sent, headers in zip(trace.outputs, trace.headers, strict=True):
                if not isinstance(sent, int):
                    continue
                tag = dict(headers)["vlan_vid"]
                end = links.get(sent)
                if end is None:
                    out.add((here, sent, tag))
                else:
                    stack.append((end.switch, end.port, tag, hops + 1))
        return out


def mentions(flow: Flow, tag: int) -> bool:
    """Whether a flow matches or sets segment `tag`'s VLAN tag."""
    vid = VID_PRESENT | tag
    return flow.match.vlan_vid == vid or SetField("vlan_vid", vid) in flow.actions
