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

from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

from vportd.core.model import Location, Phase, VPortRecord, mac_to_int
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


@dataclass(frozen=True, slots=True, init=False)
class Flow:
    table: int
    priority: int
    match: Match
    actions: tuple[Action, ...]
    cookie: int

    def __init__(
        self, table: int, priority: int, match: Match, actions: tuple[Action, ...], cookie: int
    ) -> None:
        # Frozen: the generated __init__ writes each field through
        # object.__setattr__; writing the slots directly halves the cost of the
        # objects the compiler makes most.
        _FLOW_TABLE(self, table)
        _FLOW_PRIORITY(self, priority)
        _FLOW_MATCH(self, match)
        _FLOW_ACTIONS(self, actions)
        _FLOW_COOKIE(self, cookie)

    @property
    def key(self) -> tuple[int, int, Match]:
        """What identifies a flow in OpenFlow: table, priority and match."""
        return (self.table, self.priority, self.match)


class FlowCommand(StrEnum):
    ADD = "add"
    DELETE = "delete"


@dataclass(frozen=True, slots=True, init=False)
class FlowMod:
    switch: str
    command: FlowCommand
    flow: Flow

    def __init__(self, switch: str, command: FlowCommand, flow: Flow) -> None:
        _MOD_SWITCH(self, switch)  # as in Flow.__init__
        _MOD_COMMAND(self, command)
        _MOD_FLOW(self, flow)


def _slot_setters(cls: type, *names: str) -> tuple[Callable[[object, Any], None], ...]:
    return tuple(cls.__dict__[name].__set__ for name in names)


_FLOW_TABLE, _FLOW_PRIORITY, _FLOW_MATCH, _FLOW_ACTIONS, _FLOW_COOKIE = _slot_setters(
    Flow, "table", "priority", "match", "actions", "cookie"
)
_MOD_SWITCH, _MOD_COMMAND, _MOD_FLOW = _slot_setters(FlowMod, "switch", "command", "flow")


def _unchanged(held: Flow | None, flow: Flow) -> bool:
    """`held == flow`, field by field without the generated __eq__'s tuples."""
    return held is flow or (
        held is not None
        and held.__class__ is flow.__class__
        and held.actions == flow.actions
        and held.cookie == flow.cookie
        and (held.match is flow.match or held.match == flow.match)
        and held.table == flow.table
        and held.priority == flow.priority
    )


FlowKey = tuple[int, int, Match]
SwitchFlows = dict[FlowKey, Flow]


# Interned building blocks: a switch holds many flows that share them (the
# flood flows of a switch with n local ports hold n * n outputs).
@lru_cache(maxsize=65536)
def _output(port: int) -> Output:
    return Output(port)


@lru_cache(maxsize=65536)
def _to_port(port: int) -> tuple[Action, ...]:
    return (_output(port),)


@lru_cache(maxsize=65536)
def _flood_match(in_port: int) -> Match:
    return Match(in_port=in_port, eth_dst=MULTICAST_BIT, eth_dst_mask=MULTICAST_BIT)


@lru_cache(maxsize=65536)
def _flood_key(in_port: int) -> tuple[int, int, Match]:
    return (FORWARD_TABLE, PRIO_FLOOD, _flood_match(in_port))


_TO_TABLE_1: tuple[Action, ...] = (GotoTable(FORWARD_TABLE),)
_ARRIVAL_ACTIONS: tuple[Action, ...] = (ToController(), GotoTable(FORWARD_TABLE))


def vm_cookie(mac: str) -> int:
    return COOKIE_VM | mac_to_int(mac)


def arrival_cookie(mac: str) -> int:
    return COOKIE_ARRIVAL | mac_to_int(mac)


def vm_flow(mac: str, port: int) -> Flow:
    return Flow(FORWARD_TABLE, PRIO_VM, Match(eth_dst=mac), _to_port(port), vm_cookie(mac))


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
    outputs = [_output(p) for p in members]
    flows = []
    for i, in_port in enumerate(members):
        outs = tuple(outputs[:i] + outputs[i + 1 :])  # every member but the input
        flows.append(
            Flow(FORWARD_TABLE, PRIO_FLOOD, _flood_match(in_port), outs, COOKIE_FLOOD | in_port)
        )
    return flows


def vm_flows(
    topology: Topology, rec: VPortRecord, switches: Container[str]
) -> Iterator[tuple[str, Flow]]:
    """Every flow `rec` needs, as (switch, flow), on those of `switches` that need one."""
    loc = rec.loc
    here = loc.ovs
    if here is None:  # not present
        return
    match: Match | None = None  # shared by the VM's flows, made on first need
    cookie = 0
    if here in switches and loc.port is not None:
        match, cookie = Match(eth_dst=rec.vm), vm_cookie(rec.vm)
        yield here, Flow(FORWARD_TABLE, PRIO_VM, match, _to_port(loc.port), cookie)
    for switch, port in topology.exceptions(here).items():
        if switch in switches:
            if match is None:
                match, cookie = Match(eth_dst=rec.vm), vm_cookie(rec.vm)
            yield switch, Flow(FORWARD_TABLE, PRIO_VM, match, _to_port(port), cookie)
    mig = rec.mig
    if mig is not None and mig.phase < Phase.ACTIVATED and mig.destination in switches:
        yield mig.destination, arrival_flow(rec.vm)


def _wants_flows(topology: Topology, rec: VPortRecord, switches: set[str]) -> bool:
    """Whether `vm_flows(topology, rec, switches)` yields anything (without making it)."""
    loc = rec.loc
    here = loc.ovs
    if here is None:
        return False
    if here in switches and loc.port is not None:
        return True
    if not switches.isdisjoint(topology.exceptions(here)):
        return True
    mig = rec.mig
    return mig is not None and mig.phase < Phase.ACTIVATED and mig.destination in switches


def _is_flood_key(key: FlowKey, members: set[int]) -> bool:
    """`key` is the key of the flood flow of one of `members`."""
    match = key[2]
    return (
        isinstance(match, Match)
        and match.in_port in members
        and key[0] == FORWARD_TABLE
        and key[1] == PRIO_FLOOD
        and match == _flood_match(match.in_port)
    )


def _arrival_at(rec: VPortRecord) -> str | None:
    mig = rec.mig
    return mig.destination if mig is not None and mig.phase < Phase.ACTIVATED else None


class _VmFlows:
    """One VM's flows on the switches a compiler masters, grouped by switch.

    `rec` is the entry they were compiled from (then the latest entry with the
    same place) and `epoch` the compiler's epoch then: while neither the VM's
    place nor the epoch changed, the flows are still the desired ones and need
    no recompiling.
    """

    __slots__ = ("epoch", "flows", "rec")

    def __init__(
        self, rec: VPortRecord, epoch: int, flows: tuple[tuple[str, FlowKey, Flow], ...]
    ) -> None:
        self.rec = rec
        self.epoch = epoch
        self.flows = flows


class FlowCompiler:
    """Desired flows for the switches one controller masters, as diffs.

    `installed` is what this compiler believes each switch holds; the OpenFlow
    adapter replaces it with what the switch reports on (re)connect, and the
    next `sync_switch` corrects only the difference.

    Compiling is incremental: while a VM's place (switch, port, pending
    arrival) stays the same, its compiled flows are kept and only checked
    against `installed`; a VM with no flows here is skipped at once.
    """

    def __init__(self, topology: Topology, switches: Iterable[str] = ()) -> None:
        self.topology = topology
        self.switches: set[str] = set(switches)
        self.installed: dict[str, SwitchFlows] = {s: {} for s in self.switches}
        # Per VM with flows here: those flows, for exact deletes and to skip
        # recompiling an entry whose place did not change.
        self._vm_flows: dict[str, _VmFlows] = {}
        self._local: dict[str, dict[str, int]] = {s: {} for s in self.switches}
        # Per VM: where `_local` last placed it (the entry's own location).
        self._placed: dict[str, Location] = {}
        # Bumped whatever changes which flows an unchanged entry needs here.
        # (Of direct changes to `switches`, only those that change its size are
        # seen: use master and release.)
        self._epoch = 0
        self._seen = (topology, topology.version, len(self.switches))

    # -- switches --------------------------------------------------------
    def master(self, switch: str) -> None:
        self.switches.add(switch)
        self.installed.setdefault(switch, {})
        self._local.setdefault(switch, {})
        self._epoch += 1

    def release(self, switch: str) -> None:
        """Stop managing a switch (another controller became its master)."""
        self.switches.discard(switch)
        self.installed.pop(switch, None)
        self._without(switch)
        self._epoch += 1

    def _without(self, switch: str) -> None:
        """Forget every VM's flows on `switch`."""
        for entry in self._vm_flows.values():
            if any(s == switch for s, _, _ in entry.flows):
                entry.flows = tuple(t for t in entry.flows if t[0] != switch)

    def set_installed(self, switch: str, flows: Iterable[Flow]) -> None:
        """What the switch really holds, as read back from it."""
        self.installed[switch] = {f.key: f for f in flows}

    # -- compiling -------------------------------------------------------
    def update_vm(self, rec: VPortRecord) -> list[FlowMod]:
        """The flow mods that bring every mastered switch in line with `rec`."""
        topology = self.topology
        seen = self._seen
        if topology is not seen[0] or topology.version != seen[1] or len(self.switches) != seen[2]:
            self._seen = (topology, topology.version, len(self.switches))
            self._epoch += 1
        entry = self._vm_flows.get(rec.vm)
        if (
            entry is not None
            and entry.epoch == self._epoch
            # `vm_flows` depends on the VM's place and on its arrival flow only.
            and entry.rec.loc.ovs == rec.loc.ovs
            and entry.rec.loc.port == rec.loc.port
            and _arrival_at(entry.rec) == _arrival_at(rec)
        ):
            mods = self._reinstall(entry.flows)
            if entry.rec is not rec:  # hold the table's entry, not an old one
                entry.rec = rec
        elif entry is None and not _wants_flows(topology, rec, self.switches):
            mods = []  # no flows here before or now: most entries, on most controllers
        else:
            desired: dict[str, dict[FlowKey, Flow]] = {}
            for switch, flow in vm_flows(topology, rec, self.switches):
                desired.setdefault(switch, {})[flow.key] = flow
            mods = self._diff_vm(rec, desired, entry)
        mods.extend(self._move_local(rec))
        return mods

    def _reinstall(self, flows: tuple[tuple[str, FlowKey, Flow], ...]) -> list[FlowMod]:
        """Add those of `flows` that the switches do not hold as they are."""
        mods: list[FlowMod] = []
        installed = self.installed
        for switch, key, flow in flows:
            table = installed[switch]
            held = table.get(key)
            if not _unchanged(held, flow):
                table[key] = flow
                mods.append(FlowMod(switch, FlowCommand.ADD, flow))
        return mods

    def _diff_vm(
        self, rec: VPortRecord, desired: dict[str, dict[FlowKey, Flow]], entry: _VmFlows | None
    ) -> list[FlowMod]:
        mods: list[FlowMod] = []
        if entry is not None:
            for switch, key, _ in entry.flows:
                table = self.installed[switch]
                wanted = desired.get(switch)
                if (wanted is None or key not in wanted) and key in table:
                    mods.append(FlowMod(switch, FlowCommand.DELETE, table.pop(key)))
        for switch, flows in desired.items():
            table = self.installed[switch]
            for key, flow in flows.items():
                held = table.get(key)
                if not _unchanged(held, flow):
                    table[key] = flow
                    mods.append(FlowMod(switch, FlowCommand.ADD, flow))
        if desired:
            placed = tuple((s, k, f) for s, flows in desired.items() for k, f in flows.items())
            self._vm_flows[rec.vm] = _VmFlows(rec, self._epoch, placed)
        elif entry is not None:
            del self._vm_flows[rec.vm]
        return mods

    def _move_local(self, rec: VPortRecord) -> list[FlowMod]:
        """Keep the per-switch set of local VM ports, and their floods, current."""
        loc = rec.loc
        here = loc.ovs
        port = loc.port
        placed = here is not None and port is not None
        before = self._placed.get(rec.vm)
        if before is None:
            if not placed:
                return []
        elif placed and before.ovs == here and before.port == port:
            if before is not loc:  # hold the table's location, not an old one
                self._placed[rec.vm] = loc
            return []
        mods: list[FlowMod] = []
        if before is not None and before.ovs in self.switches:
            assert before.ovs is not None
            self._local[before.ovs].pop(rec.vm, None)
            mods += self._diff_floods(before.ovs)
        if placed and here in self.switches:
            assert here is not None and port is not None
            self._local[here][rec.vm] = port
            mods += self._diff_floods(here)
        if placed:
            self._placed[rec.vm] = loc
        else:
            self._placed.pop(rec.vm, None)
        return mods

    def _diff_floods(self, switch: str) -> list[FlowMod]:
        """Bring the switch's flood flows in line with `flood_flows` of its local ports.

        Deletes the flows with a flood cookie that are not wanted, then adds the
        wanted ones it does not hold as they are. Hot: every move of a VM to or
        from a switch rewrites all of its flood flows.
        """
        members = sorted(set(self._local[switch].values()) | self.topology.tree_ports(switch))
        wanted = set(members)
        table = self.installed[switch]
        mods = [
            FlowMod(switch, FlowCommand.DELETE, table.pop(key))
            for key, flow in list(table.items())
            if flow.cookie & COOKIE_KIND_MASK == COOKIE_FLOOD and not _is_flood_key(key, wanted)
        ]
        outputs = [_output(p) for p in members]
        for i, in_port in enumerate(members):
            key = _flood_key(in_port)
            outs = tuple(outputs[:i] + outputs[i + 1 :])
            flow = Flow(FORWARD_TABLE, PRIO_FLOOD, key[2], outs, COOKIE_FLOOD | in_port)
            held = table.get(key)
            if not _unchanged(held, flow):
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
        placed: dict[str, Location] = {}
        per_vm: dict[str, tuple[VPortRecord, list[tuple[str, FlowKey, Flow]]]] = {}
        for rec in records:
            for _, flow in vm_flows(self.topology, rec, only):
                desired[flow.key] = flow
                per_vm.setdefault(rec.vm, (rec, []))[1].append((switch, flow.key, flow))
            loc = rec.loc
            if loc.ovs == switch and loc.port is not None:
                local[rec.vm] = loc.port
                placed[rec.vm] = loc
        for flow in flood_flows(self.topology, switch, local.values()):
            desired[flow.key] = flow
        self._local[switch] = local
        self._placed.update(placed)
        self._epoch += 1
        self._without(switch)
        for vm, (rec, flows) in per_vm.items():
            entry = self._vm_flows.get(vm)
            if entry is None:  # stale (-1): flows it may need on other switches are not here
                self._vm_flows[vm] = _VmFlows(rec, -1, tuple(flows))
            else:
                entry.flows += tuple(flows)
        return self._replace(switch, desired)

    def _replace(self, switch: str, desired: dict[FlowKey, Flow]) -> list[FlowMod]:
        table = self.installed[switch]
        mods = [
            FlowMod(switch, FlowCommand.DELETE, table.pop(key))
            for key in list(table)
            if key not in desired
        ]
        for key, flow in desired.items():
            held = table.get(key)
            if not _unchanged(held, flow):
                table[key] = flow
                mods.append(FlowMod(switch, FlowCommand.ADD, flow))
        return mods
