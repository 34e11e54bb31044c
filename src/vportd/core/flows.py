"""The flow compiler: desired OpenFlow 1.3 flows from the vPort table and topology.

Pipeline on every switch (proactive L2, no learning, no NORMAL):

* table 0, classifier. Priority 200 on the destination switch of a migration
  that has not activated yet: frames *from* the VM's MAC are copied to the
  controller (its RARP/GARP is the activation signal) and go on to table 1.
  Priority 0: go to table 1.
* table 1, forwarding by destination MAC. Priority 100: a local VM's MAC to its
  port; a remote VM's MAC to the link towards its switch, only where that link
  is not the switch's default port (see topology). Priority 50: broadcast and
  multicast flood along the spanning tree, one flow per input port, to every
  local VM port and tree link but the input. Priority 10: other unicast goes to
  the default port. No match: dropped.

The compiler remembers what it has installed on each switch it masters and
returns only the difference as `FlowMod`s (add replaces a flow with the same
table, priority and match). Cookies tell the flows of each VM apart, so that
reconciliation and "delete this VM's flows" (claims 2 and 3) are exact.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from vportd.core.model import Phase, VPortRecord, mac_to_int
from vportd.core.topology import Topology

CLASSIFY_TABLE = 0
FORWARD_TABLE = 1

PRIO_ARRIVAL = 200
PRIO_VM = 100
PRIO_FLOOD = 50
PRIO_DEFAULT = 10
PRIO_MISS = 0

MULTICAST_BIT = "01:00:00:00:00:00"

COOKIE_VM = 0x01 << 56
COOKIE_ARRIVAL = 0x02 << 56
COOKIE_FLOOD = 0x03 << 56
COOKIE_BASE = 0x04 << 56
COOKIE_KIND_MASK = 0xFF << 56


@dataclass(frozen=True, slots=True)
class Match:
    in_port: int | None = None
    eth_dst: str | None = None
    eth_dst_mask: str | None = None
    eth_src: str | None = None


@dataclass(frozen=True, slots=True)
class Output:
    port: int


@dataclass(frozen=True, slots=True)
class ToController:
    max_len: int = 128


@dataclass(frozen=True, slots=True)
class GotoTable:
    table: int


Action = Output | ToController | GotoTable


@dataclass(frozen=True, slots=True)
class Flow:
    table: int
    priority: int
    match: Match
    actions: tuple[Action, ...]
    cookie: int

    @property
    def key(self) -> tuple[int, int, Match]:
        """What identifies a flow in OpenFlow: table, priority and match."""
        return (self.table, self.priority, self.match)


class FlowCommand(StrEnum):
    ADD = "add"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class FlowMod:
    switch: str
    command: FlowCommand
    flow: Flow


FlowKey = tuple[int, int, Match]
SwitchFlows = dict[FlowKey, Flow]


@lru_cache(maxsize=65536)
def _to_port(port: int) -> tuple[Action, ...]:
    return (Output(port),)


@lru_cache(maxsize=65536)
def _vm_match(mac: str) -> Match:
    return Match(eth_dst=mac)


_TO_TABLE_1: tuple[Action, ...] = (GotoTable(FORWARD_TABLE),)
_ARRIVAL_ACTIONS: tuple[Action, ...] = (ToController(), GotoTable(FORWARD_TABLE))


def vm_cookie(mac: str) -> int:
    return COOKIE_VM | mac_to_int(mac)


def arrival_cookie(mac: str) -> int:
    return COOKIE_ARRIVAL | mac_to_int(mac)


def vm_flow(mac: str, port: int) -> Flow:
    return Flow(FORWARD_TABLE, PRIO_VM, _vm_match(mac), _to_port(port), vm_cookie(mac))


def arrival_flow(mac: str) -> Flow:
    match = Match(eth_src=mac)
    return Flow(CLASSIFY_TABLE, PRIO_ARRIVAL, match, _ARRIVAL_ACTIONS, arrival_cookie(mac))


def base_flows(topology: Topology, switch: str) -> list[Flow]:
    """Flows that depend on the topology only: table miss and default route."""
    flows = [Flow(CLASSIFY_TABLE, PRIO_MISS, Match(), _TO_TABLE_1, COOKIE_BASE)]
    default = topology.default_port(switch)
    if default is not None:
        unicast = Match(eth_dst="00:00:00:00:00:00", eth_dst_mask=MULTICAST_BIT)
        flows.append(Flow(FORWARD_TABLE, PRIO_DEFAULT, unicast, _to_port(default), COOKIE_BASE))
    return flows


def flood_flows(topology: Topology, switch: str, local_ports: Iterable[int]) -> list[Flow]:
    members = sorted(set(local_ports) | topology.tree_ports(switch))
    flows = []
    for in_port in members:
        outs = tuple(Output(p) for p in members if p != in_port)
        match = Match(in_port=in_port, eth_dst=MULTICAST_BIT, eth_dst_mask=MULTICAST_BIT)
        flows.append(Flow(FORWARD_TABLE, PRIO_FLOOD, match, outs, COOKIE_FLOOD | in_port))
    return flows


def vm_flows(
    topology: Topology, rec: VPortRecord, switches: Container[str]
) -> Iterator[tuple[str, Flow]]:
    """Every flow `rec` needs, as (switch, flow), on those of `switches` that need one."""
    if not rec.present:
        return
    here = rec.loc.ovs
    assert here is not None
    if here in switches and rec.loc.port is not None:
        yield here, vm_flow(rec.vm, rec.loc.port)
    for switch, port in topology.exceptions(here).items():
        if switch in switches:
            yield switch, vm_flow(rec.vm, port)
    mig = rec.mig
    if mig is not None and mig.phase < Phase.ACTIVATED and mig.destination in switches:
        yield mig.destination, arrival_flow(rec.vm)


class FlowCompiler:
    """Desired flows for the switches one controller masters, as diffs.

    `installed` is what this compiler believes each switch holds; the OpenFlow
    adapter replaces it with what the switch reports on (re)connect, and the
    next `sync_switch` corrects only the difference.
    """

    def __init__(self, topology: Topology, switches: Iterable[str] = ()) -> None:
        self.topology = topology
        self.switches: set[str] = set(switches)
        self.installed: dict[str, SwitchFlows] = {s: {} for s in self.switches}
        # Per VM: the keys of its flows on each switch, for exact deletes.
        self._vm_keys: dict[str, dict[str, list[FlowKey]]] = {}
        self._local: dict[str, dict[str, int]] = {s: {} for s in self.switches}
        self._placed: dict[str, tuple[str, int] | None] = {}

    # -- switches --------------------------------------------------------
    def master(self, switch: str) -> None:
        self.switches.add(switch)
        self.installed.setdefault(switch, {})
        self._local.setdefault(switch, {})

    def release(self, switch: str) -> None:
        """Stop managing a switch (another controller became its master)."""
        self.switches.discard(switch)
        self.installed.pop(switch, None)
        for keys in self._vm_keys.values():
            keys.pop(switch, None)

    def set_installed(self, switch: str, flows: Iterable[Flow]) -> None:
        """What the switch really holds, as read back from it."""
        self.installed[switch] = {f.key: f for f in flows}

    # -- compiling -------------------------------------------------------
    def update_vm(self, rec: VPortRecord) -> list[FlowMod]:
        """The flow mods that bring every mastered switch in line with `rec`."""
        desired: dict[str, dict[FlowKey, Flow]] = {}
        for switch, flow in vm_flows(self.topology, rec, self.switches):
            desired.setdefault(switch, {})[flow.key] = flow
        mods = self._diff_vm(rec.vm, desired)
        mods.extend(self._move_local(rec))
        return mods

    def _diff_vm(self, vm: str, desired: dict[str, dict[FlowKey, Flow]]) -> list[FlowMod]:
        mods: list[FlowMod] = []
        old = self._vm_keys.get(vm, {})
        for switch, keys in old.items():
            table = self.installed[switch]
            wanted = desired.get(switch, {})
            for key in keys:
                if key not in wanted and key in table:
                    mods.append(FlowMod(switch, FlowCommand.DELETE, table.pop(key)))
        for switch, flows in desired.items():
            table = self.installed[switch]
            for key, flow in flows.items():
                if table.get(key) != flow:
                    table[key] = flow
                    mods.append(FlowMod(switch, FlowCommand.ADD, flow))
        if desired:
            self._vm_keys[vm] = {s: list(f) for s, f in desired.items()}
        else:
            self._vm_keys.pop(vm, None)
        return mods

    def _move_local(self, rec: VPortRecord) -> list[FlowMod]:
        """Keep the per-switch set of local VM ports, and their floods, current."""
        loc = rec.loc
        now = (loc.ovs, loc.port) if rec.present and loc.port is not None else None
        before = self._placed.get(rec.vm)
        if now == before:
            return []
        mods: list[FlowMod] = []
        if before is not None and before[0] in self.switches:
            self._local[before[0]].pop(rec.vm, None)
            mods += self._diff_floods(before[0])
        if now is not None and now[0] in self.switches:
            assert now[0] is not None and now[1] is not None
            self._local[now[0]][rec.vm] = now[1]
            mods += self._diff_floods(now[0])
        if now is None:
            self._placed.pop(rec.vm, None)
        else:
            self._placed[rec.vm] = (now[0], now[1]) if now[0] is not None else None
        return mods

    def _diff_floods(self, switch: str) -> list[FlowMod]:
        desired = flood_flows(self.topology, switch, self._local[switch].values())
        return self._diff_kind(switch, COOKIE_FLOOD, desired)

    def _diff_kind(self, switch: str, kind: int, desired: list[Flow]) -> list[FlowMod]:
        table = self.installed[switch]
        wanted = {f.key: f for f in desired}
        mods = [
            FlowMod(switch, FlowCommand.DELETE, table.pop(key))
            for key, flow in list(table.items())
            if flow.cookie & COOKIE_KIND_MASK == kind and key not in wanted
        ]
        for key, flow in wanted.items():
            if table.get(key) != flow:
                table[key] = flow
                mods.append(FlowMod(switch, FlowCommand.ADD, flow))
        return mods

    def sync_switch(self, switch: str, records: Iterable[VPortRecord]) -> list[FlowMod]:
        """Bring one switch fully in line: used on (re)connect and topology change."""
        if switch not in self.switches:
            return []
        only = {switch}
        desired: dict[FlowKey, Flow] = {f.key: f for f in base_flows(self.topology, switch)}
        local: dict[str, int] = {}
        per_vm: dict[str, list[FlowKey]] = {}
        for rec in records:
            for _, flow in vm_flows(self.topology, rec, only):
                desired[flow.key] = flow
                per_vm.setdefault(rec.vm, []).append(flow.key)
            if rec.present and rec.loc.ovs == switch and rec.loc.port is not None:
                local[rec.vm] = rec.loc.port
        for flow in flood_flows(self.topology, switch, local.values()):
            desired[flow.key] = flow
        self._local[switch] = local
        for vm, port in local.items():
            self._placed[vm] = (switch, port)
        for vm_keys in self._vm_keys.values():
            vm_keys.pop(switch, None)
        for vm, keys in per_vm.items():
            self._vm_keys.setdefault(vm, {})[switch] = keys
        return self._replace(switch, desired)

    def _replace(self, switch: str, desired: dict[FlowKey, Flow]) -> list[FlowMod]:
        table = self.installed[switch]
        mods = [
            FlowMod(switch, FlowCommand.DELETE, table.pop(key))
            for key in list(table)
            if key not in desired
        ]
        for key, flow in desired.items():
            if table.get(key) != flow:
                table[key] = flow
                mods.append(FlowMod(switch, FlowCommand.ADD, flow))
        return mods
