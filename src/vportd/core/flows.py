"""The flow compiler: desired OpenFlow 1.3 flows from the vPort table and topology.

Pipeline on every switch (proactive L2, no learning, no NORMAL):

* table 0, classifier. Priority 200 on the destination switch of a migration
  that has not activated yet: frames *from* the VM's MAC are copied to the
  controller (its RARP/GARP is the activation signal) and go on to table 1.
  Priority 0: go to table 1.
* table 1, forwarding by destination MAC. Priority 100: a local VM's MAC to its
  port; a remote VM's MAC to the link towards its switch, only where that link
  is not the switch's default port (see topology). Priority 50, one flow per
  flood member (local VM port or spanning-tree link): broadcast and multicast
  from that port go to table 2. Priority 10: other unicast goes to the default
  port. No match: dropped, so a frame that enters on a non-tree link or on a
  port without a VM is never flooded (no loop, no flood from a stray port).
* table 1, hand-over (make-before-break in the data plane). While a migrating
  VM's destination port exists (phase ARRIVED) and the VM still runs at the
  source, every switch of one shortest path from the source to the
  destination sends frames for the VM both ways along that path: they end at
  the VM's port at the source *and* at its new port. The VM is thus reached
  wherever it runs, the instant it runs there, with no controller in the
  path; the flows go once the VM activates there (or the migration rolls
  back). The copies cost inter-switch bandwidth during the pre-copy only, and
  the new port is down until the switchover. A hand-over flow takes the place
  of the VM's forwarding flow on that switch (priority 100, same match, its
  own cookie): one flow mod makes it, and the flow mod that re-points or
  deletes the forwarding flow on activation (or restores it on rollback)
  ends it, where a flow of its own would cost an add and a delete more.
* table 2, flooding. Priority 50: broadcast and multicast to every member. The
  input port is among them, and OpenFlow never outputs a frame to its input
  port (OFPP_IN_PORT would be needed), so this is "every member but the
  input" in one flow per switch: a VM coming or going changes its own table-1
  gate and this one flow, not a flow per member.

The compiler remembers what it has installed on each switch it masters and
returns only the difference as `FlowMod`s (add replaces a flow with the same
table, priority and match). Cookies tell the flows of each VM apart, so that
reconciliation and "delete this VM's flows" (claims 2 and 3) are exact.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any

from vportd.core.model import Location, Phase, VPortRecord, mac_to_int
from vportd.core.topology import Topology

_ACTIVATED = Phase.ACTIVATED  # (an enum member looked up by name costs more than the comparison)
_ARRIVED = Phase.ARRIVED

CLASSIFY_TABLE = 0
FORWARD_TABLE = 1
FLOOD_TABLE = 2

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
COOKIE_HANDOVER = 0x06 << 56  # (0x05: the runtime's LLDP punt)
COOKIE_KIND_MASK = 0xFF << 56


_MatchArgs = tuple[int | None, str | None, str | None, str | None]


@dataclass(frozen=True, slots=True, init=False)
class Match:
    in_port: int | None
    eth_dst: str | None
    eth_dst_mask: str | None
    eth_src: str | None
    _hash: int = field(init=False, repr=False, compare=False)

    def __init__(
        self,
        in_port: int | None = None,
        eth_dst: str | None = None,
        eth_dst_mask: str | None = None,
        eth_src: str | None = None,
    ) -> None:
        _MATCH_IN_PORT(self, in_port)  # as in Flow.__init__
        _MATCH_ETH_DST(self, eth_dst)
        _MATCH_ETH_DST_MASK(self, eth_dst_mask)
        _MATCH_ETH_SRC(self, eth_src)
        # Part of every flow key: hashed at each look-up in an installed table.
        _MATCH_HASH(self, hash((in_port, eth_dst, eth_dst_mask, eth_src)))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(
        self,
    ) -> tuple[type[Match], tuple[int | None, str | None, str | None, str | None]]:
        # Rebuilt, not restored: a string's hash differs from one process to the next.
        return (Match, (self.in_port, self.eth_dst, self.eth_dst_mask, self.eth_src))


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


_ADD = FlowCommand.ADD  # (an enum member looked up by name costs more than a global)
_DELETE = FlowCommand.DELETE


def _slot_setters(cls: type, *names: str) -> tuple[Callable[[object, Any], None], ...]:
    return tuple(cls.__dict__[name].__set__ for name in names)


_MATCH_IN_PORT, _MATCH_ETH_DST, _MATCH_ETH_DST_MASK, _MATCH_ETH_SRC, _MATCH_HASH = _slot_setters(
    Match, "in_port", "eth_dst", "eth_dst_mask", "eth_src", "_hash"
)
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


# Interned building blocks: a switch holds many flows that share them.
@lru_cache(maxsize=65536)
def _output(port: int) -> Output:
    return Output(port)


@lru_cache(maxsize=65536)
def _to_port(port: int) -> tuple[Action, ...]:
    return (_output(port),)


@lru_cache(maxsize=65536)
def _flood_match(in_port: int) -> Match:
    return Match(in_port=in_port, eth_dst=MULTICAST_BIT, eth_dst_mask=MULTICAST_BIT)


_TO_TABLE_1: tuple[Action, ...] = (GotoTable(FORWARD_TABLE),)
_TO_FLOOD: tuple[Action, ...] = (GotoTable(FLOOD_TABLE),)
_ARRIVAL_ACTIONS: tuple[Action, ...] = (ToController(), GotoTable(FORWARD_TABLE))
_FLOOD_MATCH = Match(eth_dst=MULTICAST_BIT, eth_dst_mask=MULTICAST_BIT)
_FLOOD_KEY: FlowKey = (FLOOD_TABLE, PRIO_FLOOD, _FLOOD_MATCH)


@lru_cache(maxsize=65536)
def _gate(in_port: int) -> Flow:
    """Broadcast and multicast from a flood member go on to the flood table.

    The same for every switch: one object, shared by all of them.
    """
    return Flow(FORWARD_TABLE, PRIO_FLOOD, _flood_match(in_port), _TO_FLOOD, COOKIE_FLOOD | in_port)


@lru_cache(maxsize=65536)
def _gate_key(in_port: int) -> FlowKey:
    return _gate(in_port).key


def _flood(members: tuple[int, ...]) -> Flow:
    """To every member; OpenFlow drops the copy for the input port itself."""
    outputs = tuple(map(_output, members))  # (no generator: one per VM joining or leaving)
    return Flow(FLOOD_TABLE, PRIO_FLOOD, _FLOOD_MATCH, outputs, COOKIE_FLOOD)


# A VM's flows are made and deleted in bursts (a move, a migration's phases):
# the VMs of the last few thousand updates suffice.
@lru_cache(maxsize=4096)
def vm_cookie(mac: str) -> int:
    return COOKIE_VM | mac_to_int(mac)


@lru_cache(maxsize=4096)
def _vm_match(mac: str) -> Match:
    """The match of a VM's forwarding flow (`eth_dst` = its MAC), as `vm_cookie`."""
    return Match(eth_dst=mac)


def arrival_cookie(mac: str) -> int:
    return COOKIE_ARRIVAL | mac_to_int(mac)


def handover_cookie(mac: str) -> int:
    return COOKIE_HANDOVER | mac_to_int(mac)


# What a VM's forwarding flow on one switch outputs to: the one port towards
# the VM (held as a bare int: nearly every flow), or, during a hand-over, the
# two ways along the path, (back, on).
Out = int | tuple[int, int]


@lru_cache(maxsize=65536)
def _to_ports(out: tuple[int, int]) -> tuple[Action, ...]:
    return (_output(out[0]), _output(out[1]))


def _actions(out: Out) -> tuple[Action, ...]:
    return _to_port(out) if out.__class__ is int else _to_ports(out)


def _cookie(mac: str, out: Out) -> int:
    return vm_cookie(mac) if out.__class__ is int else handover_cookie(mac)


def handing_over(rec: VPortRecord) -> bool:
    """Whether `rec` needs hand-over flows: its new port exists, it runs at the source."""
    mig, loc = rec.mig, rec.loc
    return (
        mig is not None
        and mig.phase == _ARRIVED
        and mig.dest_port is not None
        and loc.ovs == mig.source
        and loc.port is not None
    )


def _handover_target(rec: VPortRecord) -> tuple[str, int] | None:
    """What the VM's hand-over flows depend on beyond its place: where they lead."""
    if not handing_over(rec):
        return None
    mig = rec.mig
    assert mig is not None and mig.dest_port is not None
    return (mig.destination, mig.dest_port)


def handover_outs(
    topology: Topology, rec: VPortRecord, switches: Container[str] | None = None
) -> list[tuple[str, tuple[int, int]]]:
    """Where a migrating VM's hand-over flows output, per switch (module doc, table 1).

    One path from source to destination; each switch on it sends the VM's
    frames both ways along it: back by the port the path enters it by (at the
    source: the VM's port), on by the port it leaves by (at the destination:
    the VM's new port). OpenFlow never outputs a frame to its input port, so a
    frame travelling along the path keeps its direction and ends at one of the
    VM's ports; one that joins the path is split both ways. No loop.
    """
    if not handing_over(rec):
        return []
    mig, loc = rec.mig, rec.loc
    assert mig is not None and mig.dest_port is not None and loc.port is not None
    path = topology.path(mig.source, mig.destination)
    if len(path) < 2:  # noqa: PLR2004 (no path, or source = destination)
        return []
    return [
        (switch, (entered or loc.port, leaves or mig.dest_port))
        for switch, entered, leaves in path
        if switches is None or switch in switches
    ]


def forwarding_flow(mac: str, out: Out, match: Match | None = None) -> Flow:
    """The VM's forwarding flow that outputs to `out` (`match`: its `eth_dst` match, if made)."""
    if match is None:
        match = Match(eth_dst=mac)
    return Flow(FORWARD_TABLE, PRIO_VM, match, _actions(out), _cookie(mac, out))


def vm_flow(mac: str, port: int) -> Flow:
    """The VM's forwarding flow to its port (`forwarding_flow` of a port)."""
    return forwarding_flow(mac, port)


def arrival_flow(mac: str) -> Flow:
    match = Match(eth_src=mac)
    return Flow(CLASSIFY_TABLE, PRIO_ARRIVAL, match, _ARRIVAL_ACTIONS, arrival_cookie(mac))


def _arrival_key(mac: str) -> FlowKey:
    return (CLASSIFY_TABLE, PRIO_ARRIVAL, Match(eth_src=mac))


def base_flows(topology: Topology, switch: str) -> list[Flow]:
    """Flows that depend on the topology only: table miss and default route."""
    flows = [Flow(CLASSIFY_TABLE, PRIO_MISS, Match(), _TO_TABLE_1, COOKIE_BASE)]
    default = topology.default_port(switch)
    if default is not None:
        unicast = Match(eth_dst="00:00:00:00:00:00", eth_dst_mask=MULTICAST_BIT)
        flows.append(Flow(FORWARD_TABLE, PRIO_DEFAULT, unicast, _to_port(default), COOKIE_BASE))
    return flows


def flood_members(topology: Topology, switch: str, local_ports: Iterable[int]) -> tuple[int, ...]:
    """The ports a broadcast may enter by and leaves through: local VMs and tree links."""
    return tuple(sorted(set(local_ports) | topology.tree_ports(switch)))


def flood_flows(topology: Topology, switch: str, local_ports: Iterable[int]) -> list[Flow]:
    """One gate per member (table 1), then the switch's one flood flow (table 2)."""
    members = flood_members(topology, switch, local_ports)
    if not members:
        return []
    return [*(_gate(p) for p in members), _flood(members)]


def forwarding_outs(
    topology: Topology, rec: VPortRecord, switches: Container[str]
) -> dict[str, Out]:
    """Per switch of `switches` that needs the VM's forwarding flow, where it outputs."""
    loc = rec.loc
    here = loc.ovs
    if here is None:  # not present
        return {}
    outs: dict[str, Out] = {s: p for s, p in topology.exceptions(here).items() if s in switches}
    if here in switches and loc.port is not None:
        outs[here] = loc.port
    outs.update(handover_outs(topology, rec, switches))  # (in place of the forwarding flow)
    return outs


def vm_flows(
    topology: Topology, rec: VPortRecord, switches: Container[str]
) -> Iterator[tuple[str, Flow]]:
    """Every flow `rec` needs, as (switch, flow), on those of `switches` that need one."""
    outs = forwarding_outs(topology, rec, switches)
    if outs:
        match = Match(eth_dst=rec.vm)  # shared by the VM's flows
        for switch, out in outs.items():
            yield switch, forwarding_flow(rec.vm, out, match)
    mig = rec.mig
    if mig is not None and mig.phase < _ACTIVATED and mig.destination in switches:
        yield mig.destination, arrival_flow(rec.vm)


def _forwarding_changed(was: VPortRecord, rec: VPortRecord) -> bool:
    """Whether two entries of a VM need different forwarding (or hand-over) flows."""
    a, b = was.loc, rec.loc
    if a.ovs != b.ovs or a.port != b.port:
        return True
    return was.mig is not rec.mig and _handover_target(was) != _handover_target(rec)


def _arrival_at(rec: VPortRecord) -> str | None:
    mig = rec.mig
    return mig.destination if mig is not None and mig.phase < _ACTIVATED else None


def _vm_key_mac(key: FlowKey) -> str | None:
    """The MAC of a VM forwarding flow's key (table 1, priority 100, `eth_dst` only)."""
    m = key[2]
    if (
        key[1] == PRIO_VM
        and key[0] == FORWARD_TABLE
        and m.in_port is None
        and m.eth_dst_mask is None
        and m.eth_src is None
    ):
        return m.eth_dst
    return None


def _forwarding_out(mac: str, flow: Flow) -> Out | None:
    """Where `flow`, found under `mac`'s VM key, outputs, if it is exactly
    `forwarding_flow(mac, out)` for some `out`."""
    actions = flow.actions
    if not all(isinstance(a, Output) for a in actions):
        return None
    ports = [a.port for a in actions if isinstance(a, Output)]
    if len(ports) == 1 and flow.cookie == vm_cookie(mac):
        return ports[0]
    if len(ports) == 2 and flow.cookie == handover_cookie(mac):  # noqa: PLR2004 (back, on)
        return (ports[0], ports[1])
    return None


class SwitchFlows(MutableMapping[FlowKey, Flow]):
    """The flows one switch holds, by OpenFlow identity (table, priority, match).

    A VM's forwarding flow, `forwarding_flow(mac, out)`, is by far the most
    common (the root of a fabric holds one for every VM): it is kept as MAC ->
    out, some 40 bytes instead of a flow, its match, key and cookie (some 250),
    and made a `Flow` again when read. Any other flow is kept as it is.
    """

    __slots__ = ("_odd", "_other", "_vm")

    def __init__(self, flows: Iterable[Flow] = ()) -> None:
        self._vm: dict[str, Out] = {}
        self._other: dict[FlowKey, Flow] = {}
        self._odd = 0  # of `_other`: flows under a VM key that are not its `forwarding_flow`
        for flow in flows:
            self[flow.key] = flow

    # -- the compiler's fast paths ----------------------------------------
    def vm_port(self, mac: str) -> Out | None:
        """Where `mac`'s `forwarding_flow` here outputs, if the switch holds exactly that."""
        return self._vm.get(mac)

    def set_vm(self, mac: str, out: Out) -> None:
        """Hold `forwarding_flow(mac, out)`."""
        if self._odd:
            self._drop_odd(mac)
        self._vm[mac] = out

    def pop_vm(self, mac: str) -> Flow | None:
        """Remove whatever flow is under `mac`'s VM key; the flow removed."""
        out = self._vm.pop(mac, None)
        if out is not None:
            return forwarding_flow(mac, out)
        return self._drop_odd(mac) if self._odd else None

    def other(self, key: FlowKey) -> Flow | None:
        """`get(key)` for a key that is not a VM forwarding flow's (gates, floods, arrivals)."""
        return self._other.get(key)

    def put_other(self, key: FlowKey, flow: Flow) -> None:
        """`self[key] = flow` for such a key."""
        self._other[key] = flow

    def pop_other(self, key: FlowKey) -> Flow | None:
        """`pop(key, None)` for such a key."""
        return self._other.pop(key, None)

    def _drop_odd(self, mac: str) -> Flow | None:
        flow = self._other.pop((FORWARD_TABLE, PRIO_VM, Match(eth_dst=mac)), None)
        if flow is not None:
            self._odd -= 1
        return flow

    # -- the mapping -------------------------------------------------------
    def get(self, key: FlowKey, default: Flow | None = None) -> Flow | None:  # type: ignore[override]
        # Mapping.get goes through __getitem__ and KeyError: this is the compiler's hot read.
        mac = _vm_key_mac(key)
        if mac is not None:
            out = self._vm.get(mac)
            if out is not None:
                return forwarding_flow(mac, out, key[2])
        return self._other.get(key, default)

    def __getitem__(self, key: FlowKey) -> Flow:
        mac = _vm_key_mac(key)
        if mac is not None:
            out = self._vm.get(mac)
            if out is not None:
                return forwarding_flow(mac, out, key[2])
        return self._other[key]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple) or len(key) != 3 or not isinstance(key[2], Match):  # noqa: PLR2004
            return False
        mac = _vm_key_mac(key)
        return (mac is not None and mac in self._vm) or key in self._other

    def __setitem__(self, key: FlowKey, flow: Flow) -> None:
        mac = _vm_key_mac(key)
        if mac is None:
            self._other[key] = flow
            return
        out = _forwarding_out(mac, flow)
        if out is not None:
            self.set_vm(mac, out)
            return
        self._vm.pop(mac, None)
        if key not in self._other:
            self._odd += 1
        self._other[key] = flow

    def __delitem__(self, key: FlowKey) -> None:
        mac = _vm_key_mac(key)
        if mac is not None:
            if self._vm.pop(mac, None) is not None:
                return
            if key in self._other:
                self._odd -= 1
        del self._other[key]

    def __iter__(self) -> Iterator[FlowKey]:
        for mac in list(self._vm):
            yield (FORWARD_TABLE, PRIO_VM, Match(eth_dst=mac))
        yield from list(self._other)

    def __len__(self) -> int:
        return len(self._vm) + len(self._other)

    def __repr__(self) -> str:
        return f"SwitchFlows({list(self.values())!r})"


class _VmFlows:
    """Where one VM's flows are, on the switches a compiler masters.

    `rec` is the entry they were compiled from (then the latest entry with the
    same place) and `epoch` the compiler's epoch then: while neither the VM's
    place nor the epoch changed, the flows are still the desired ones and need
    no recompiling. `switches` are where its forwarding flows are (its
    hand-over flows among them), `arrival` where its arrival flow is.
    """

    __slots__ = ("arrival", "epoch", "rec", "switches")

    def __init__(
        self,
        rec: VPortRecord,
        epoch: int,
        switches: tuple[str, ...] = (),
        arrival: str | None = None,
    ) -> None:
        self.rec = rec
        self.epoch = epoch
        self.switches = switches
        self.arrival = arrival

    @property
    def empty(self) -> bool:
        return not self.switches and self.arrival is None


class FlowCompiler:
    """Desired flows for the switches one controller masters, as diffs.

    `installed` is what this compiler believes each switch holds; the OpenFlow
    adapter replaces it with what the switch reports on (re)connect, and the
    next `sync_switch` corrects only the difference.

    Compiling is incremental: while a VM's place (switch, port, pending
    arrival) and the compiler's epoch stay the same, its flows are in place
    (only its own updates touch its keys; whatever else changes `installed`
    bumps the epoch); a VM with no flows here is skipped at once.
    """

    def __init__(self, topology: Topology, switches: Iterable[str] = ()) -> None:
        self.topology = topology
        self.switches: set[str] = set(switches)
        self.installed: dict[str, SwitchFlows] = {s: SwitchFlows() for s in self.switches}
        # Per VM with flows here: where they are, for exact deletes and to skip
        # recompiling an entry whose place did not change.
        self._vm_flows: dict[str, _VmFlows] = {}
        # Per mastered switch: its VMs' ports, and the flood members its floods were made for.
        self._local: dict[str, dict[str, int]] = {s: {} for s in self.switches}
        self._members: dict[str, tuple[int, ...]] = {}
        # Per VM on a mastered switch: where `_local` placed it (the entry's own location).
        self._placed: dict[str, Location] = {}
        # Bumped whatever changes which flows an unchanged entry needs here, or
        # changes `installed` behind the VMs' backs. (Of direct changes to
        # `switches`, only those that change its size are seen: use master and release.)
        self._epoch = 0
        self._seen = (topology, topology.version, len(self.switches))
        # Per switch a VM may be on: the (switch, port) of its forwarding flows on
        # the switches we master other than its own, for this epoch.
        self._reach: dict[str, tuple[tuple[str, int], ...]] = {}
        # One tuple object for each set of switches VMs have their flows on (few).
        self._tuples: dict[tuple[str, ...], tuple[str, ...]] = {}

    # -- switches --------------------------------------------------------
    def master(self, switch: str) -> None:
        self.switches.add(switch)
        self.installed.setdefault(switch, SwitchFlows())
        self._local.setdefault(switch, {})
        self._bump()

    def release(self, switch: str) -> None:
        """Stop managing a switch (another controller became its master)."""
        self.switches.discard(switch)
        self.installed.pop(switch, None)
        self._members.pop(switch, None)
        for vm in self._local.pop(switch, {}):
            self._placed.pop(vm, None)
        self._without(switch)
        self._bump()

    def _without(self, switch: str) -> None:
        """Forget every VM's flows on `switch`."""
        for entry in self._vm_flows.values():
            if switch in entry.switches:
                entry.switches = self._interned(tuple(s for s in entry.switches if s != switch))
            if entry.arrival == switch:
                entry.arrival = None

    def set_installed(self, switch: str, flows: Iterable[Flow]) -> None:
        """What the switch really holds, as read back from it."""
        self.installed[switch] = SwitchFlows(flows)
        self._members.pop(switch, None)
        self._bump()  # the VMs' flows there may be gone: recompile them

    # -- compiling -------------------------------------------------------
    def _interned(self, switches: tuple[str, ...]) -> tuple[str, ...]:
        return self._tuples.setdefault(switches, switches)

    def _bump(self) -> None:
        self._epoch += 1
        self._reach.clear()

    def update_vm(self, rec: VPortRecord) -> list[FlowMod]:
        """The flow mods that bring every mastered switch in line with `rec`."""
        topology = self.topology
        seen = self._seen
        if topology is not seen[0] or topology.version != seen[1] or len(self.switches) != seen[2]:
            self._seen = (topology, topology.version, len(self.switches))
            self._bump()
        entry = self._vm_flows.get(rec.vm)
        if entry is None:
            mods = self._compile(rec, None) if self._wants_flows(rec) else []
        else:
            was = entry.rec
            # `vm_flows` depends on the VM's place, its hand-over and its arrival flow here only.
            if entry.epoch != self._epoch or (was is not rec and _forwarding_changed(was, rec)):
                mods = self._compile(rec, entry)
            else:
                entry.rec = rec  # hold the table's entry, not an old one
                if was.mig is rec.mig or self._no_extras(entry, rec):
                    mods = []
                else:
                    mods = self._compile_arrival(rec, entry, entry)
        # The flood members: only a VM placed on, or leaving, a switch of ours counts.
        loc = rec.loc
        before = self._placed.get(rec.vm)
        if before is not loc and (before is not None or loc.ovs in self.switches):
            local = self._move_local(rec, before)
            if local:
                mods += local
        return mods

    def _exceptions_here(self, here: str) -> tuple[tuple[str, int], ...]:
        """Where, of our switches, a VM on `here` needs a forwarding flow other than on `here`."""
        reach = self._reach.get(here)
        if reach is None:
            switches = self.switches
            reach = tuple(
                (s, p) for s, p in self.topology.exceptions(here).items() if s in switches
            )
            self._reach[here] = reach
        return reach

    def _wants_flows(self, rec: VPortRecord) -> bool:
        """Whether `rec` needs any flow here (without making them)."""
        loc = rec.loc
        here = loc.ovs
        if here is None:
            return False
        if (loc.port is not None and here in self.switches) or self._exceptions_here(here):
            return True
        arrival = _arrival_at(rec)
        return (arrival is not None and arrival in self.switches) or self._handover_here(rec)

    def _no_extras(self, entry: _VmFlows, rec: VPortRecord) -> bool:
        """No arrival flow here, before or now."""
        if entry.arrival is not None:
            return False
        mig = rec.mig
        return mig is None or mig.destination not in self.switches

    def _handover_here(self, rec: VPortRecord) -> bool:
        if not handing_over(rec):
            return False  # (the common case, without a path's cost)
        mig = rec.mig
        assert mig is not None
        switches = self.switches
        return any(h[0] in switches for h in self.topology.path(mig.source, mig.destination))

    def _compile(self, rec: VPortRecord, entry: _VmFlows | None) -> list[FlowMod]:
        """Bring the VM's flows in line with `rec`; forget the VM if it needs none."""
        vm = rec.vm
        handover = handing_over(rec)
        desired = self._desired_ports(rec, handover)
        mods = self._place_vm(vm, () if entry is None else entry.switches, desired)
        switches = tuple(desired)
        if not handover:
            # One object per set of switches; not a hand-over's (a path: many, and brief).
            switches = self._interned(switches)
        if entry is None:
            placed = _VmFlows(rec, self._epoch, switches)
        else:  # updated in place: one allocation less on a hot path
            placed = entry
            placed.rec, placed.epoch, placed.switches = rec, self._epoch, switches
            if self._no_extras(entry, rec):
                if not switches:
                    del self._vm_flows[vm]
                return mods
        arrival = self._compile_arrival(rec, placed, entry)
        return mods + arrival if arrival else mods

    def _compile_arrival(
        self, rec: VPortRecord, placed: _VmFlows, entry: _VmFlows | None = None
    ) -> list[FlowMod]:
        """Bring the VM's arrival flow in line with `rec`; keep `placed` as the VM's
        entry (in place of `entry`), or forget the VM if it needs no flow here."""
        vm = rec.vm
        arrival = _arrival_at(rec)
        if arrival not in self.switches:
            arrival = None
        mods: list[FlowMod] = []
        if placed.arrival != arrival:
            if placed.arrival is not None:
                mods += self._uninstall(placed.arrival, _arrival_key(vm))
            placed.arrival = arrival
            if arrival is not None:
                flow = arrival_flow(vm)
                mods += self._install(arrival, flow.key, flow)
        if not placed.empty:
            if placed is not entry:
                self._vm_flows[vm] = placed
        elif vm in self._vm_flows:
            del self._vm_flows[vm]
        return mods

    def _desired_ports(self, rec: VPortRecord, handover: bool) -> dict[str, Out]:
        """Per mastered switch that needs the VM's forwarding flow, where it outputs
        (`handover`: `handing_over(rec)`)."""
        loc = rec.loc
        here = loc.ovs
        if here is None:
            return {}
        desired: dict[str, Out] = dict(self._exceptions_here(here))
        if loc.port is not None and here in self.switches:
            desired[here] = loc.port
        if handover:  # in place of the forwarding flow, on our switches of the path
            desired.update(handover_outs(self.topology, rec, self.switches))
        return desired

    def _place_vm(self, vm: str, held: tuple[str, ...], desired: dict[str, Out]) -> list[FlowMod]:
        """Delete the VM's forwarding flows on `held` switches that are not `desired`,
        add those `desired` the switches do not hold as they are. Hot (every move)."""
        mods: list[FlowMod] = []
        installed = self.installed
        match: Match | None = None  # shared by the flows of the mods, made on first need
        cookie = 0
        for switch in held:
            if switch not in desired:
                table = installed[switch]
                out = table._vm.pop(vm, None)  # (`pop_vm` without the call)
                if out is None:
                    gone = table.pop_vm(vm)  # one a switch reported otherwise, if any
                    if gone is not None:
                        mods.append(FlowMod(switch, FlowCommand.DELETE, gone))
                    continue
                if match is None:
                    match, cookie = _vm_match(vm), vm_cookie(vm)
                flow = self._forwarding(match, cookie, out)
                mods.append(FlowMod(switch, _DELETE, flow))
        for switch, out in desired.items():
            table = installed[switch]
            if table._vm.get(vm) != out:  # (`vm_port` without the call)
                if match is None:
                    match, cookie = _vm_match(vm), vm_cookie(vm)
                if table._odd:  # (`set_vm` without the call)
                    table._drop_odd(vm)
                table._vm[vm] = out
                if out.__class__ is int:  # (`_forwarding` without the call: nearly every flow)
                    flow = Flow(FORWARD_TABLE, PRIO_VM, match, _to_port(out), cookie)
                else:
                    flow = self._forwarding(match, cookie, out)
                mods.append(FlowMod(switch, _ADD, flow))
        return mods

    @staticmethod
    def _forwarding(match: Match, cookie: int, out: Out) -> Flow:
        """`forwarding_flow(mac, out)` from the VM's match and `vm_cookie`, made once per call."""
        if out.__class__ is int:
            return Flow(FORWARD_TABLE, PRIO_VM, match, _to_port(out), cookie)
        cookie = cookie & ~COOKIE_KIND_MASK | COOKIE_HANDOVER
        return Flow(FORWARD_TABLE, PRIO_VM, match, _to_ports(out), cookie)

    def _install(self, switch: str, key: FlowKey, flow: Flow) -> list[FlowMod]:
        """Add `flow` (a gate, flood or arrival flow: no VM key) unless held as it is."""
        table = self.installed[switch]
        if _unchanged(table.other(key), flow):
            return []
        table.put_other(key, flow)
        return [FlowMod(switch, FlowCommand.ADD, flow)]

    def _uninstall(self, switch: str, key: FlowKey) -> list[FlowMod]:
        """Delete the flow under `key` (no VM key), if held."""
        held = self.installed[switch].pop_other(key)
        return [] if held is None else [FlowMod(switch, FlowCommand.DELETE, held)]

    def _move_local(self, rec: VPortRecord, before: Location | None) -> list[FlowMod]:
        """Keep the per-switch ports of local VMs, and their floods, current.

        `before` is where `_placed` has the VM (on a switch of ours), if anywhere.
        """
        loc = rec.loc
        here = loc.ovs
        port = loc.port
        ours = port is not None and here in self.switches
        if before is not None and ours and before.ovs == here and before.port == port:
            self._placed[rec.vm] = loc  # hold the table's location, not an old one
            return []
        mods: list[FlowMod] = []
        if before is not None:
            assert before.ovs is not None and before.port is not None
            local = self._local.get(before.ovs)
            if local is not None and local.pop(rec.vm, None) is not None:
                mods += self._left(before.ovs, before.port)
        if ours:
            assert here is not None and port is not None
            self._local[here][rec.vm] = port
            self._placed[rec.vm] = loc
            mods += self._joined(here, port)
        elif before is not None:
            del self._placed[rec.vm]
        return mods

    def _joined(self, switch: str, port: int) -> list[FlowMod]:
        """A VM's port on `switch` now: a flood member, if it was not one."""
        before = self._members.get(switch)
        if before is None:
            return self._diff_floods(switch)
        if port in before:
            return []  # another VM's port, or a link
        members = tuple(sorted((*before, port)))
        self._members[switch] = members
        gate = _gate(port)
        return [
            *self._install(switch, _gate_key(port), gate),
            *self._install(switch, _FLOOD_KEY, _flood(members)),
        ]

    def _left(self, switch: str, port: int) -> list[FlowMod]:
        """A VM left `port` of `switch`: no flood member any more, unless still used."""
        before = self._members.get(switch)
        if before is None:
            return self._diff_floods(switch)
        if (
            port not in before
            or port in self._local[switch].values()
            or port in self.topology.tree_ports(switch)
        ):
            return []
        members = tuple(p for p in before if p != port)
        if not members:
            return self._set_members(switch, before, members)
        self._members[switch] = members
        mods = self._install(switch, _FLOOD_KEY, _flood(members))
        mods += self._uninstall(switch, _gate_key(port))
        return mods

    def _diff_floods(self, switch: str) -> list[FlowMod]:
        """Bring the switch's gates and flood flow in line with its members, from scratch."""
        members = flood_members(self.topology, switch, self._local[switch].values())
        return self._set_members(switch, self._members.get(switch, ()), members)

    def _set_members(
        self, switch: str, before: tuple[int, ...], members: tuple[int, ...]
    ) -> list[FlowMod]:
        """A member that joins gets its gate, one that leaves loses it; the flood flow
        is rewritten once: one flow floods for every member."""
        if members == before:
            return []
        mods: list[FlowMod] = []
        for port in set(before).difference(members):
            mods += self._uninstall(switch, _gate_key(port))
        for port in set(members).difference(before):
            mods += self._install(switch, _gate_key(port), _gate(port))
        if members:
            mods += self._install(switch, _FLOOD_KEY, _flood(members))
        else:
            mods += self._uninstall(switch, _FLOOD_KEY)
        self._members[switch] = members
        return mods

    def sync_switch(self, switch: str, records: Iterable[VPortRecord]) -> list[FlowMod]:
        """Bring one switch fully in line: used on (re)connect and topology change."""
        if switch not in self.switches:
            return []
        only = {switch}
        desired: dict[FlowKey, Flow] = {f.key: f for f in base_flows(self.topology, switch)}
        local: dict[str, int] = {}
        placed: dict[str, Location] = {}
        self._bump()
        self._without(switch)
        for rec in records:
            for _, flow in vm_flows(self.topology, rec, only):
                desired[flow.key] = flow
                self._held_here(rec, switch, flow)
            loc = rec.loc
            if loc.ovs == switch and loc.port is not None:
                local[rec.vm] = loc.port
                placed[rec.vm] = loc
        members = flood_members(self.topology, switch, local.values())
        for flow in flood_flows(self.topology, switch, local.values()):
            desired[flow.key] = flow
        self._local[switch] = local
        self._members[switch] = members
        self._placed.update(placed)
        return self._replace(switch, desired)

    def _held_here(self, rec: VPortRecord, switch: str, flow: Flow) -> None:
        """Note that `flow`, one of the VM's flows, is (to be) on `switch`."""
        entry = self._vm_flows.get(rec.vm)
        if entry is None:  # stale (-1): flows it may need on other switches are not here
            entry = self._vm_flows[rec.vm] = _VmFlows(rec, -1)
        if flow.table == CLASSIFY_TABLE:
            entry.arrival = switch
        else:
            entry.switches = self._interned((*entry.switches, switch))

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
