"""`FakeOFTable`: OpenFlow 1.3 flow tables that apply encoded flow mods and trace frames.

It takes the bytes of an OFPT_FLOW_MOD as a switch reads them (decoded with
os-ken's `OFPFlowMod.parser`) and applies them with OpenFlow 1.3's semantics
(spec 6.4): an ADD with the same table, priority and match replaces the flow
(CHECK_OVERLAP refuses an overlapping one); MODIFY and DELETE select by
cookie and cookie mask, DELETE also by out_port / out_group (ANY: no filter);
the strict forms need the same priority and match, the others take every flow
whose match is the request's or more specific; DELETE takes OFPTT_ALL. What it
cannot apply raises `SwitchError` with the type and code a switch answers.

A match is held canonical, as OVS holds it: a mask of all ones is an exact
match, a zero mask no match on that field, bits outside the mask zero.

`lookup(in_port, eth_src, eth_dst)` walks table 0 -> goto_table -> ...: the
highest priority flow that matches (at equal priority the older), its
apply-actions in order, then the action set (write/clear-actions) when the
walk ends; a miss drops. An output to the input port is not delivered (as
OpenFlow: OFPP_IN_PORT would be needed), an output to the controller is
"controller", to another reserved port its name ("normal", "flood", ...). An
action other than output, push_vlan, pop_vlan and set_field of vlan_vid,
tunnel_id or tun_ipv4_dst raises `Unmodelled`: the fake does not guess what
another rewritten frame would do. `trace` reports each output's VLAN and
tunnel headers as the frame left. Flows never expire (there
is no clock) and keep no counters.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofpp

from vportd.core.flow import VID_PRESENT, Flow
from vportd.southbound.openflow import flowcodec, incoming, wire

Out = int | str  # a port number, or "controller" / a reserved port's name
N_TABLES = 254  # what ovs-vswitchd reports
_NOT_MASKABLE = frozenset({"in_port", "in_phy_port", "eth_type", "ip_proto"})
_RESERVED: dict[int, str] = {
    ofp.OFPP_IN_PORT: "in_port", ofp.OFPP_NORMAL: "normal", ofp.OFPP_FLOOD: "flood",
    ofp.OFPP_ALL: "all", ofp.OFPP_CONTROLLER: "controller", ofp.OFPP_LOCAL: "local",
}  # fmt: skip


class SwitchError(Exception):
    """A message the switch refuses: the OFPT_ERROR type and code it answers with."""

    def __init__(self, type_: int, code: int, text: str) -> None:
        super().__init__(text)
        self.type, self.code = type_, code

    def describe(self) -> str:
        return incoming.ErrorMsg(self.type, self.code, b"").describe()


class Unmodelled(Exception):
    """A lookup reached an action or instruction the fake does not model."""


def _bad(type_name: str, code_name: str, text: str) -> SwitchError:
    return SwitchError(getattr(ofp, f"OFPET_{type_name}"), getattr(ofp, code_name), text)


# -- matches ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    """One match field, canonical: `mask` None is exact, bits outside a mask are zero."""

    name: str
    value: int
    mask: int | None
    num: int = field(compare=False)  # the OXM field number
    width: int = field(compare=False)  # bytes

    def user(self) -> Any:
        """The value as os-ken's OFPMatch takes it (a MAC as text, a tuple when masked)."""
        mask = None if self.mask is None else self.mask.to_bytes(self.width, "big")
        _, user = ofp.oxm_to_user(self.num, self.value.to_bytes(self.width, "big"), mask)
        return user

    def matches(self, packet: int) -> bool:
        return (packet if self.mask is None else packet & self.mask) == self.value

    def __str__(self) -> str:
        user = self.user()
        text = f"{user[0]}/{user[1]}" if isinstance(user, tuple) else str(user)
        return f"{self.name}={text}"


Match = tuple[Field, ...]  # sorted by name, each field once


def canonical_field(name: str, user: Any) -> Field | None:
    """The canonical form of one os-ken match item; None for a zero mask (no match)."""
    num, value, mask = ofp.oxm_from_user(name, user)
    width = len(value)
    number = int.from_bytes(value, "big")
    full = (1 << 8 * width) - 1
    bits = full if mask is None else int.from_bytes(mask, "big")
    if bits != full and name in _NOT_MASKABLE:
        raise _bad("BAD_MATCH", "OFPBMC_BAD_MASK", f"{name} cannot be masked")
    if bits == 0:
        return None
    return Field(name, number & bits, None if bits == full else bits, num, width)


def canonical_match(match: Any) -> Match:
    """An os-ken OFPMatch as a canonical `Match`."""
    fields: dict[str, Field] = {}
    for name, user in match.items():
        if name in fields:
            raise _bad("BAD_MATCH", "OFPBMC_DUP_FIELD", f"{name} twice in the match")
        canon = canonical_field(name, user)
        if canon is not None:
            fields[name] = canon
    return tuple(fields[name] for name in sorted(fields))


def os_ken_match(match: Match) -> Any:
    return ofpp.OFPMatch(**{f.name: f.user() for f in match})


def _subsumes(general: Match, specific: Match) -> bool:
    """Whether every frame `specific` matches is matched by `general` (non-strict select)."""
    mine = {f.name: f for f in specific}
    for want in general:
        have = mine.get(want.name)
        if have is None:
            return False
        full = (1 << 8 * want.width) - 1
        want_bits = full if want.mask is None else want.mask
        have_bits = full if have.mask is None else have.mask
        if have_bits & want_bits != want_bits or have.value & want_bits != want.value:
            return False
    return True


def _overlap(a: Match, b: Match) -> bool:
    """Whether some frame matches both (CHECK_OVERLAP)."""
    other = {f.name: f for f in b}
    for one in a:
        two = other.get(one.name)
        if two is None:
            continue
        full = (1 << 8 * one.width) - 1
        both = (full if one.mask is None else one.mask) & (full if two.mask is None else two.mask)
        if (one.value ^ two.value) & both:
            return False
    return True


# -- instructions ---------------------------------------------------------------------------
@dataclass(frozen=True)
class OutputAction:
    port: int
    max_len: int = ofp.OFPCML_NO_BUFFER

    def __str__(self) -> str:
        name = _RESERVED.get(self.port)
        return f"output:{self.port}" if name is None else name.upper()


@dataclass(frozen=True)
class PushVlanAction:
    def __str__(self) -> str:
        return "push_vlan:0x8100"


@dataclass(frozen=True)
class PopVlanAction:
    def __str__(self) -> str:
        return "pop_vlan"


@dataclass(frozen=True)
class SetFieldAction:
    """set_field of `vlan_vid`, `tunnel_id` or `tun_ipv4_dst` (held as an integer)."""

    name: str
    value: int

    def __str__(self) -> str:
        shown = (
            str(ipaddress.IPv4Address(self.value)) if self.name == "tun_ipv4_dst" else self.value
        )
        return f"set_field:{shown}->{self.name}"


@dataclass(frozen=True)
class OtherAction:
    """An action the fake keeps and reports but does not model (os-ken's text of it)."""

    text: str

    def __str__(self) -> str:
        return self.text


Action = OutputAction | PushVlanAction | PopVlanAction | SetFieldAction | OtherAction
_MODELLED_FIELDS = frozenset({"vlan_vid", "tunnel_id", "tun_ipv4_dst"})


@dataclass(frozen=True)
class ApplyActions:
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class WriteActions:
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class ClearActions:
    pass


@dataclass(frozen=True)
class Goto:
    table: int


@dataclass(frozen=True)
class OtherInstruction:
    text: str


Instruction = ApplyActions | WriteActions | ClearActions | Goto | OtherInstruction
# OpenFlow 1.3, 5.9: a flow's instructions run in this order, whatever their order on the wire.
_ORDER = {OtherInstruction: 0, ApplyActions: 1, ClearActions: 2, WriteActions: 3, Goto: 4}


def _action(action: Any) -> Action:
    if isinstance(action, ofpp.OFPActionOutput):
        port = int(action.port)
        if port in (0, ofp.OFPP_ANY) or (port > ofp.OFPP_MAX and port not in _RESERVED):
            raise _bad("BAD_ACTION", "OFPBAC_BAD_OUT_PORT", f"output to port {port:#x}")
        return OutputAction(port, int(action.max_len))
    if isinstance(action, ofpp.OFPActionPushVlan) and int(action.ethertype) == 0x8100:
        return PushVlanAction()
    if isinstance(action, ofpp.OFPActionPopVlan):
        return PopVlanAction()
    if isinstance(action, ofpp.OFPActionSetField) and action.key in _MODELLED_FIELDS:
        value = action.value
        if action.key == "tun_ipv4_dst":
            value = int(ipaddress.IPv4Address(value))
        return SetFieldAction(action.key, int(value))
    return OtherAction(str(action))


def _instruction(inst: Any, table: int, n_tables: int) -> Instruction:
    if isinstance(inst, ofpp.OFPInstructionGotoTable):
        target = int(inst.table_id)
        if not table < target < n_tables:
            raise _bad(
                "BAD_INSTRUCTION", "OFPBIC_BAD_TABLE_ID", f"goto table {target} from {table}"
            )
        return Goto(target)
    if isinstance(inst, ofpp.OFPInstructionActions):
        actions = tuple(_action(a) for a in inst.actions or ())
        if inst.type == ofp.OFPIT_APPLY_ACTIONS:
            return ApplyActions(actions)
        if inst.type == ofp.OFPIT_WRITE_ACTIONS:
            return WriteActions(actions)
        return ClearActions()
    return OtherInstruction(str(inst))


def _instructions(raw: Iterable[Any], table: int, n_tables: int) -> tuple[Instruction, ...]:
    made = [_instruction(inst, table, n_tables) for inst in raw]
    kinds = [type(inst) for inst in made if not isinstance(inst, OtherInstruction)]
    if len(kinds) != len(set(kinds)):
        raise _bad("BAD_INSTRUCTION", "OFPBIC_UNSUP_INST", "an instruction type twice")
    return tuple(made)


# -- flow entries ---------------------------------------------------------------------------
@dataclass(frozen=True)
class FlowEntry:
    """A flow as the table holds it; equal entries are the same flow."""

    table: int
    priority: int
    match: Match
    cookie: int
    instructions: tuple[Instruction, ...]
    idle_timeout: int = 0
    hard_timeout: int = 0
    flags: int = 0
    raw: tuple[Any, ...] = field(default=(), compare=False, repr=False)  # os-ken instructions

    @property
    def outputs(self) -> frozenset[int]:
        """Every port any of its actions outputs to (the out_port filter)."""
        return frozenset(
            a.port
            for inst in self.instructions
            if isinstance(inst, ApplyActions | WriteActions)
            for a in inst.actions
            if isinstance(a, OutputAction)
        )

    def stats(self) -> Any:
        """The os-ken OFPFlowStats a switch would report for it."""
        return ofpp.OFPFlowStats(
            table_id=self.table, duration_sec=0, duration_nsec=0, priority=self.priority,
            idle_timeout=self.idle_timeout, hard_timeout=self.hard_timeout, flags=self.flags,
            cookie=self.cookie, packet_count=0, byte_count=0, match=os_ken_match(self.match),
            instructions=list(self.raw),
        )  # fmt: skip

    def __str__(self) -> str:
        match = ",".join(map(str, self.match))
        return (
            f"table={self.table} priority={self.priority} cookie={self.cookie:#x}"
            f"{' ' + match if match else ''} actions={_actions_text(self.instructions)}"
        )


def _actions_text(instructions: tuple[Instruction, ...]) -> str:
    parts: list[str] = []
    for inst in sorted(instructions, key=lambda i: _ORDER[type(i)]):
        match inst:
            case ApplyActions(actions=actions):
                parts += map(str, actions)
            case WriteActions(actions=actions):
                parts.append(f"write_actions({','.join(map(str, actions))})")
            case ClearActions():
                parts.append("clear_actions")
            case Goto(table=table):
                parts.append(f"goto_table:{table}")
            case OtherInstruction(text=text):
                parts.append(text)
    return ",".join(parts) or "drop"


@dataclass(frozen=True)
class Punt:
    """A copy of the frame to the controller: what the packet-in says."""

    table: int
    cookie: int
    max_len: int


Headers = tuple[tuple[str, int], ...]  # vlan_vid, tunnel_id, tun_ipv4_dst as the frame left


@dataclass(frozen=True)
class Trace:
    outputs: tuple[Out, ...]  # in the order they happen
    hits: tuple[FlowEntry, ...]  # the flow of each table the frame went through
    punts: tuple[Punt, ...]
    headers: tuple[Headers, ...] = ()  # of each output, in the same order


@dataclass(frozen=True)
class Selection:
    """Which flows a MODIFY, DELETE or flow stats request is about."""

    table: int
    match: Match
    priority: int | None = None  # given: strict (same priority and match)
    cookie: int = 0
    cookie_mask: int = 0
    out_port: int = ofp.OFPP_ANY
    out_group: int = ofp.OFPG_ANY

    def takes(self, entry: FlowEntry) -> bool:
        if self.table not in (ofp.OFPTT_ALL, entry.table):
            return False
        if (entry.cookie ^ self.cookie) & self.cookie_mask:
            return False
        if self.out_port != ofp.OFPP_ANY and self.out_port not in entry.outputs:
            return False
        if self.out_group != ofp.OFPG_ANY:
            return False  # the fake has no groups: no flow outputs to one
        if self.priority is None:
            return _subsumes(self.match, entry.match)
        return entry.priority == self.priority and entry.match == self.match


_HEADER = struct.Struct("!BBHI")


def parse_flow_mod(data: bytes) -> Any:
    """os-ken's OFPFlowMod of one whole message; SwitchError if it is not one."""
    if len(data) < ofp.OFP_FLOW_MOD_SIZE:
        raise _bad("BAD_REQUEST", "OFPBRC_BAD_LEN", f"flow mod of {len(data)} bytes")
    version, msg_type, length, xid = _HEADER.unpack_from(data)
    if version != ofp.OFP_VERSION:
        raise _bad("BAD_REQUEST", "OFPBRC_BAD_VERSION", f"version {version}")
    if msg_type != ofp.OFPT_FLOW_MOD or length != len(data):
        raise _bad("BAD_REQUEST", "OFPBRC_BAD_TYPE", f"type {msg_type}, length {length}")
    try:
        return ofpp.OFPFlowMod.parser(wire.DATAPATH, version, msg_type, length, xid, data)
    except Exception as exc:  # os-ken raises whatever struct and its asserts raise
        raise _bad("BAD_REQUEST", "OFPBRC_BAD_LEN", f"unparsable flow mod: {exc!r}") from exc


class FakeOFTable:
    """The flow tables of one switch (module docstring)."""

    def __init__(self, n_tables: int = N_TABLES, max_flows: int | None = None) -> None:
        self.n_tables = n_tables
        self.max_flows = max_flows  # per table; more: OFPFMFC_TABLE_FULL
        self._tables: dict[int, dict[tuple[int, Match], FlowEntry]] = {}

    def __len__(self) -> int:
        return sum(len(t) for t in self._tables.values())

    def __iter__(self) -> Iterator[FlowEntry]:
        for number in sorted(self._tables):
            yield from self._tables[number].values()

    # -- reading -------------------------------------------------------
    def flows(self, table: int | None = None) -> list[FlowEntry]:
        """What the table holds, sorted (table, then highest priority first)."""
        held = [e for e in self if table is None or e.table == table]
        return sorted(held, key=lambda e: (e.table, -e.priority, str(e), e.cookie))

    def core_flows(self) -> set[Flow]:
        """The flows a core `Flow` stands for, decoded as the controller decodes a dump."""
        flows: set[Flow] = set()
        for entry in self:
            try:
                flows.add(flowcodec.decode_flow_stats(entry.stats()))
            except flowcodec.ForeignFlowError:
                continue
        return flows

    def select(self, selection: Selection) -> list[FlowEntry]:
        return [entry for entry in self if selection.takes(entry)]

    # -- flow mods -----------------------------------------------------
    def apply(self, data: bytes) -> None:
        """Apply one encoded OFPT_FLOW_MOD; SwitchError if a switch would refuse it."""
        msg = parse_flow_mod(data)
        command, table = int(msg.command), int(msg.table_id)
        match = canonical_match(msg.match)
        if command in (ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT):
            self._check_table(table, allow_all=True)
            strict = command == ofp.OFPFC_DELETE_STRICT
            self._delete(self._selection(msg, table, match, strict))
            return
        if command not in (ofp.OFPFC_ADD, ofp.OFPFC_MODIFY, ofp.OFPFC_MODIFY_STRICT):
            raise _bad("FLOW_MOD_FAILED", "OFPFMFC_BAD_COMMAND", f"command {command}")
        self._check_table(table, allow_all=False)
        if int(msg.buffer_id) != ofp.OFP_NO_BUFFER:
            raise _bad("BAD_REQUEST", "OFPBRC_BUFFER_UNKNOWN", f"buffer {msg.buffer_id}")
        raw = tuple(msg.instructions)
        instructions = _instructions(raw, table, self.n_tables)
        if command == ofp.OFPFC_ADD:
            self._add(msg, table, match, instructions, raw)
        else:
            strict = command == ofp.OFPFC_MODIFY_STRICT
            self._modify(self._selection(msg, table, match, strict), instructions, raw)

    def _check_table(self, table: int, *, allow_all: bool) -> None:
        if table < self.n_tables or (allow_all and table == ofp.OFPTT_ALL):
            return
        raise _bad("FLOW_MOD_FAILED", "OFPFMFC_BAD_TABLE_ID", f"table {table}")

    @staticmethod
    def _selection(msg: Any, table: int, match: Match, strict: bool) -> Selection:
        return Selection(
            table, match, int(msg.priority) if strict else None, int(msg.cookie),
            int(msg.cookie_mask), int(msg.out_port), int(msg.out_group),
        )  # fmt: skip

    def _add(
        self,
        msg: Any,
        table: int,
        match: Match,
        instructions: tuple[Instruction, ...],
        raw: tuple[Any, ...],
    ) -> None:
        priority, flags = int(msg.priority), int(msg.flags)
        flows = self._tables.setdefault(table, {})
        key = (priority, match)
        if flags & ofp.OFPFF_CHECK_OVERLAP and any(
            p == priority and m != match and _overlap(m, match) for p, m in flows
        ):
            raise _bad("FLOW_MOD_FAILED", "OFPFMFC_OVERLAP", f"overlaps at priority {priority}")
        if key not in flows and self.max_flows is not None and len(flows) >= self.max_flows:
            raise _bad("FLOW_MOD_FAILED", "OFPFMFC_TABLE_FULL", f"table {table} is full")
        flows.pop(key, None)  # a replaced flow counts as new: it goes last among equals
        flows[key] = FlowEntry(
            table, priority, match, int(msg.cookie), instructions,
            int(msg.idle_timeout), int(msg.hard_timeout), flags, raw,
        )  # fmt: skip

    def _modify(
        self, selection: Selection, instructions: tuple[Instruction, ...], raw: tuple[Any, ...]
    ) -> None:
        """New instructions for the selected flows (OpenFlow 1.3: no match, no change)."""
        for entry in self.select(selection):  # (all in the request's table: gotos checked)
            flows = self._tables[entry.table]
            new = FlowEntry(
                entry.table, entry.priority, entry.match, entry.cookie, instructions,
                entry.idle_timeout, entry.hard_timeout, entry.flags, raw,
            )  # fmt: skip
            flows[entry.priority, entry.match] = new

    def _delete(self, selection: Selection) -> None:
        for entry in self.select(selection):
            del self._tables[entry.table][entry.priority, entry.match]

    # -- the data plane ------------------------------------------------
    def lookup(
        self, in_port: int, eth_src: str, eth_dst: str, *, eth_type: int | None = None
    ) -> set[Out]:
        """Where a frame entering on `in_port` goes: ports, "controller", reserved port names."""
        return set(self.trace(in_port, eth_src, eth_dst, eth_type=eth_type).outputs)

    def trace(
        self,
        in_port: int,
        eth_src: str,
        eth_dst: str,
        *,
        eth_type: int | None = None,
        vlan_vid: int = 0,
        tunnel_id: int = 0,
    ) -> Trace:
        """A frame's walk: `vlan_vid` OFPVID_PRESENT | its VID if tagged (0: untagged),
        `tunnel_id` the VNI it came from a tunnel with (0: none)."""
        packet = {
            "in_port": in_port, "eth_src": _mac_int(eth_src), "eth_dst": _mac_int(eth_dst),
            "vlan_vid": vlan_vid, "tunnel_id": tunnel_id, "tun_ipv4_dst": 0,
        }  # fmt: skip
        if eth_type is not None:
            packet["eth_type"] = eth_type
        walk = _Walk(in_port, packet)
        table: int | None = 0
        while table is not None:
            entry = self._best(table, walk.packet)
            if entry is None:
                return walk.result(with_action_set=False)  # a miss drops, action set and all
            table = walk.run(entry)
        return walk.result(with_action_set=True)

    def _best(self, table: int, packet: dict[str, int]) -> FlowEntry | None:
        best: FlowEntry | None = None
        for entry in self._tables.get(table, {}).values():
            if (best is None or entry.priority > best.priority) and _matches(entry.match, packet):
                best = entry
        return best


def _matches(match: Match, packet: dict[str, int]) -> bool:
    for f in match:
        value = packet.get(f.name)
        if value is None or not f.matches(value):
            return False
    return True


def _mac_int(mac: str) -> int:
    raw = bytes.fromhex(mac.replace(":", ""))
    if len(raw) != 6:
        raise ValueError(f"{mac!r} is not a MAC address")
    return int.from_bytes(raw, "big")


class _Walk:
    """One frame's way through the tables."""

    def __init__(self, in_port: int, packet: dict[str, int]) -> None:
        self.in_port = in_port
        self.packet = packet
        self.vlans: list[int] = []  # the tags under the outer one (`packet["vlan_vid"]`)
        self.headers: list[Headers] = []
        self.outputs: list[Out] = []
        self.hits: list[FlowEntry] = []
        self.punts: list[Punt] = []
        self.action_set: OutputAction | None = None
        self.entry: FlowEntry | None = None

    def run(self, entry: FlowEntry) -> int | None:
        """Apply a flow's instructions; the next table, if any."""
        self.hits.append(entry)
        self.entry = entry
        goto = None
        for inst in sorted(entry.instructions, key=lambda i: _ORDER[type(i)]):
            match inst:
                case ApplyActions(actions=actions):
                    for action in actions:
                        self._apply(action)
                case ClearActions():
                    self.action_set = None
                case WriteActions(actions=actions):
                    for action in actions:
                        self.action_set = self._checked(action)
                case Goto(table=table):
                    goto = table
                case OtherInstruction(text=text):
                    raise Unmodelled(f"{entry}: instruction {text}")
        return goto

    def _apply(self, action: Action) -> None:
        """One apply-action: an output, or a change of the frame's headers."""
        packet = self.packet
        match action:
            case PushVlanAction():
                self.vlans.append(packet["vlan_vid"])
                packet["vlan_vid"] = VID_PRESENT | packet["vlan_vid"] & 0xFFF
            case PopVlanAction():
                if not packet["vlan_vid"] & VID_PRESENT:
                    raise Unmodelled(f"{self.entry}: pop_vlan of an untagged frame")
                packet["vlan_vid"] = self.vlans.pop() if self.vlans else 0
            case SetFieldAction(name=name, value=value):
                if name == "vlan_vid" and not packet["vlan_vid"] & VID_PRESENT:
                    raise Unmodelled(f"{self.entry}: set_field of the VID of an untagged frame")
                packet[name] = value
            case _:
                self._output(self._checked(action))

    def _checked(self, action: Action) -> OutputAction:
        if not isinstance(action, OutputAction):
            raise Unmodelled(f"{self.entry}: action {action}")
        return action

    def _output(self, action: OutputAction) -> None:
        port = action.port
        if port == self.in_port:
            return  # OpenFlow never sends a frame back where it came from (but by IN_PORT)
        self.headers.append(
            tuple((k, self.packet[k]) for k in ("vlan_vid", "tunnel_id", "tun_ipv4_dst"))
        )
        if port == ofp.OFPP_IN_PORT:
            self.outputs.append(self.in_port)
            return
        if port == ofp.OFPP_CONTROLLER:
            assert self.entry is not None
            self.punts.append(Punt(self.entry.table, self.entry.cookie, action.max_len))
        self.outputs.append(_RESERVED.get(port, port))

    def result(self, *, with_action_set: bool) -> Trace:
        if with_action_set and self.action_set is not None:
            self._output(self.action_set)
        return Trace(tuple(self.outputs), tuple(self.hits), tuple(self.punts), tuple(self.headers))
