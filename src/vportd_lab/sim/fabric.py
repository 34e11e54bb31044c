"""Fake OpenFlow switches that apply flow mods and trace frames across links.

`Fabric.deliveries(switch, in_port, eth_dst)` answers "a frame for MAC M entering
switch S on port P: where does it go?" with the set of edge ports (switch,
port) it leaves through, following inter-switch links with OpenFlow 1.3
semantics: highest priority match wins, a miss drops, output to the input port
is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from vportd.core.flow import (
    FORWARD_TABLE,
    Flow,
    FlowCommand,
    FlowKey,
    FlowMod,
    GotoTable,
    Match,
    Output,
    ToController,
)
from vportd.core.topology import Topology

MAX_HOPS = 64


def _mac_int(mac: str) -> int:
    return int(mac.replace(":", ""), 16)


def matches(m: Match, in_port: int, eth_dst: str, eth_src: str) -> bool:
    if m.in_port is not None and m.in_port != in_port:
        return False
    if m.eth_src is not None and m.eth_src != eth_src:
        return False
    if m.eth_dst is None:
        return True
    if m.eth_dst_mask is None:
        return m.eth_dst == eth_dst
    mask = _mac_int(m.eth_dst_mask)
    return _mac_int(m.eth_dst) & mask == _mac_int(eth_dst) & mask


@dataclass
class FakeSwitch:
    name: str
    flows: dict[FlowKey, Flow] = field(default_factory=dict)

    def apply(self, mod: FlowMod) -> None:
        if mod.command is FlowCommand.ADD:
            self.flows[mod.flow.key] = mod.flow
        else:
            self.flows.pop(mod.flow.key, None)

    def lookup(self, table: int, in_port: int, eth_dst: str, eth_src: str) -> Flow | None:
        best: Flow | None = None
        for flow in self.flows.values():
            if flow.table != table or not matches(flow.match, in_port, eth_dst, eth_src):
                continue
            if best is None or flow.priority > best.priority:
                best = flow
        return best

    def process(self, in_port: int, eth_dst: str, eth_src: str) -> tuple[set[int], bool]:
        """Output ports and whether the controller gets a copy."""
        outs: set[int] = set()
        to_controller = False
        table: int | None = 0
        while table is not None:
            flow = self.lookup(table, in_port, eth_dst, eth_src)
            table = None
            if flow is None:
                break
            for action in flow.actions:
                if isinstance(action, Output):
                    outs.add(action.port)
                elif isinstance(action, ToController):
                    to_controller = True
                elif isinstance(action, GotoTable) and action.table > flow.table:
                    table = action.table
        outs.discard(in_port)
        return outs, to_controller


class Fabric:
    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.switches = {s: FakeSwitch(s) for s in topology.switches}

    def apply(self, mods: Iterable[FlowMod]) -> None:
        for mod in mods:
            self.switches[mod.switch].apply(mod)

    def deliveries(
        self, switch: str, in_port: int, eth_dst: str, eth_src: str = "02:00:00:00:ff:fe"
    ) -> set[tuple[str, int]]:
        """The edge ports a frame leaves through (empty: dropped somewhere)."""
        edge, _ = self.trace(switch, in_port, eth_dst, eth_src)
        return edge

    def trace(
        self, switch: str, in_port: int, eth_dst: str, eth_src: str
    ) -> tuple[set[tuple[str, int]], set[str]]:
        """Edge ports reached and switches that sent a copy to their controller."""
        edge: set[tuple[str, int]] = set()
        punted: set[str] = set()
        seen: set[tuple[str, int]] = set()
        stack = [(switch, in_port, 0)]
        while stack:
            here, port, hops = stack.pop()
            if (here, port) in seen or hops > MAX_HOPS:
                continue
            seen.add((here, port))
            outs, punt = self.switches[here].process(port, eth_dst, eth_src)
            if punt:
                punted.add(here)
            links = self.topology.link_ports(here)
            for out in outs:
                end = links.get(out)
                if end is None:
                    edge.add((here, out))
                else:
                    stack.append((end.switch, end.port, hops + 1))
        return edge, punted

    def flows_to(self, switch: str, port: int) -> list[Flow]:
        """Flows on `switch` that output to `port` other than floods."""
        return [
            f
            for f in self.switches[switch].flows.values()
            if f.table == FORWARD_TABLE and f.match.in_port is None
            and any(isinstance(a, Output) and a.port == port for a in f.actions)
        ]  # fmt: skip
