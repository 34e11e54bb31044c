"""Translation between the core's flows and OpenFlow 1.3, with the os-ken codec.

Of os-ken 4.2.2 this uses the message classes and parsers of
`ofproto_v1_3_parser` and the header helper of `ofproto_parser`; never its app
manager, controller or eventlet. The two messages a boot storm is made of are
packed and unpacked here with `struct` instead: flow mods (`Packed`, tests hold
them byte for byte equal to os-ken's) and port descriptions; os-ken's objects,
and its MACs through netaddr, were most of their cost. Its encoder and decoder only read
`datapath.ofproto` and `datapath.ofproto_parser`, so a stand-in (`DATAPATH`)
takes the place of os-ken's `Datapath`. os-ken is untyped: its objects stay in
this module, and what leaves it is a core `Flow`, a `PortInfo`, bytes, or one of
the small typed records of `Incoming`.

Flows, both ways:

* `encode_flow_mod` turns an ADD into OFPFC_ADD (cookie, table, priority,
  match; `Output` and `ToController` become one apply-actions instruction, a
  final `GotoTable` a goto-table instruction) and a DELETE into
  OFPFC_DELETE_STRICT on the same table, priority and match (any cookie, out
  port and out group ANY), which removes exactly that flow.
* `decode_flow_stats` turns a flow stats entry back into an equal core `Flow`:
  `decode_flow_stats(stats of encode_flow_mod(add f)) == f` for every flow the
  compiler makes. A full eth_dst mask reads back as an exact match, as OVS
  reports it.
* A flow that no core `Flow` can stand for exactly (a match field, instruction
  or action the core never makes, an output to a reserved port such as NORMAL,
  an idle or hard timeout: someone else's flow)
  raises `ForeignFlowError`, a `CodecError` carrying a `ForeignFlow`. We raise
  rather than decode to a sentinel `Flow` because the core's `Match` cannot hold
  an unknown match field: a sentinel could not name the flow to delete. The
  `ForeignFlow` keeps the raw match, so `encode_delete_foreign` removes exactly
  that flow, and its `key` (the core key when only the actions or timeouts are
  foreign) lets a reconciler leave it to be overwritten by its own ADD instead.

Incoming messages: `decode_message` parses the types the endpoint acts on and
leaves the others `Unhandled` without parsing their body. A flow stats reply
has its nested lengths checked before os-ken sees it: os-ken's parsers advance
by those lengths, and a zero would make them loop forever.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Literal, NamedTuple

from os_ken.ofproto import ofproto_parser
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofpp

from vportd.core.flow import (
    Action,
    Flow,
    FlowCommand,
    FlowKey,
    FlowMod,
    GotoTable,
    Match,
    Output,
    ToController,
)

OFP_VERSION: int = ofp.OFP_VERSION
HEADER_SIZE: int = ofp.OFP_HEADER_SIZE
OFPT_HELLO: int = ofp.OFPT_HELLO
OFPP_CONTROLLER: int = ofp.OFPP_CONTROLLER
OFPP_MAX: int = ofp.OFPP_MAX

_EXACT_MAC = "ff:ff:ff:ff:ff:ff"
_MATCHABLE = frozenset({"in_port", "eth_dst", "eth_src"})
_U16 = struct.Struct("!H")
_HELLO_ELEM = struct.Struct("!HH")
_U32 = struct.Struct("!I")
_MAX_TABLE = 254
_MAX_PRIORITY = 0xFFFF
_MAX_COOKIE = 0xFFFF_FFFF_FFFF_FFFE  # all ones is reserved
_MAX_U32 = 0xFFFF_FFFF
_MAX_U16 = 0xFFFF
_MAX_U64 = 0xFFFF_FFFF_FFFF_FFFF
_MIN_MATCH = 4  # an ofp_match header


class _Datapath:
    """What os-ken's encoder and decoder read from a datapath: the protocol modules."""

    ofproto = ofp
    ofproto_parser = ofpp
    id: int | None = None


DATAPATH = _Datapath()


class CodecError(ValueError):
    """A flow or a message that cannot be translated."""


@dataclass(frozen=True)
class ForeignFlow:
    """A flow on a switch that no core `Flow` stands for (see the module docstring)."""

    table: int
    priority: int
    cookie: int
    reason: str
    key: FlowKey | None  # the core key, when the match alone is representable
    raw_match: Any = field(compare=False, repr=False)  # os-ken OFPMatch, for an exact delete


class ForeignFlowError(CodecError):
    def __init__(self, foreign: ForeignFlow) -> None:
        super().__init__(
            f"table {foreign.table} priority {foreign.priority} cookie {foreign.cookie:#x}: "
            f"{foreign.reason}"
        )
        self.foreign = foreign


class Role(IntEnum):
    """Controller roles (OFPCR_ROLE_*)."""

    NOCHANGE = ofp.OFPCR_ROLE_NOCHANGE
    EQUAL = ofp.OFPCR_ROLE_EQUAL
    MASTER = ofp.OFPCR_ROLE_MASTER
    SLAVE = ofp.OFPCR_ROLE_SLAVE


# -- headers and serialising --------------------------------------------------
class Header(NamedTuple):
    version: int
    msg_type: int
    length: int
    xid: int


def parse_header(buf: bytes) -> Header:
    if len(buf) < HEADER_SIZE:
        raise CodecError(f"an OpenFlow header is {HEADER_SIZE} bytes, got {len(buf)}")
    version, msg_type, length, xid = ofproto_parser.header(buf)
    return Header(int(version), int(msg_type), int(length), int(xid))


_PORT_NAMES: dict[int, str] = {
    getattr(ofp, n): n.removeprefix("OFPP_")
    for n in dir(ofp)
    if n.startswith("OFPP_") and isinstance(getattr(ofp, n), int) and getattr(ofp, n) > OFPP_MAX
}
_TYPE_NAMES: dict[int, str] = {
    getattr(ofp, n): n.removeprefix("OFPT_") for n in dir(ofp) if n.startswith("OFPT_")
}


def type_name(msg_type: int) -> str:
    return _TYPE_NAMES.get(msg_type, f"type {msg_type}")


@dataclass(frozen=True, slots=True)
class Packed:
    """A message encoded here, whole but for its xid (zero until it is sent)."""

    wire: bytes


def serialize(msg: Any, xid: int) -> bytes:
    """The wire form, with `xid`, of a `Packed` message or of an os-ken OpenFlow 1.3
    message (built on `DATAPATH`)."""
    if isinstance(msg, Packed):
        return msg.wire[:4] + _U32.pack(xid) + msg.wire[HEADER_SIZE:]
    if not isinstance(msg, ofproto_parser.MsgBase):
        raise TypeError(f"not an os-ken OpenFlow message: {type(msg).__name__}")
    msg.xid = xid
    try:
        msg.serialize()
    except (struct.error, AssertionError, TypeError, ValueError) as exc:
        raise CodecError(f"cannot encode {type(msg).__name__}: {exc}") from exc
    return bytes(msg.buf)


# -- messages we send -----------------------------------------------------------
def encode_hello(xid: int = 0) -> bytes:
    """HELLO with a version bitmap offering OpenFlow 1.3 only (os-ken cannot encode one)."""
    bitmap = struct.pack("!HHI", ofp.OFPHET_VERSIONBITMAP, 8, 1 << OFP_VERSION)
    return struct.pack("!BBHI", OFP_VERSION, OFPT_HELLO, HEADER_SIZE + len(bitmap), xid) + bitmap


def hello_failed(text: str) -> Any:
    return ofpp.OFPErrorMsg(
        DATAPATH, type_=ofp.OFPET_HELLO_FAILED, code=ofp.OFPHFC_INCOMPATIBLE, data=text.encode()
    )


def features_request() -> Any:
    return ofpp.OFPFeaturesRequest(DATAPATH)


def port_desc_request() -> Any:
    return ofpp.OFPPortDescStatsRequest(DATAPATH, 0)


def flow_stats_request() -> Any:
    """Every flow of every table."""
    return ofpp.OFPFlowStatsRequest(
        DATAPATH, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0, ofpp.OFPMatch()
    )


def barrier_request() -> Any:
    return ofpp.OFPBarrierRequest(DATAPATH)


def echo_request(data: bytes = b"") -> Any:
    return ofpp.OFPEchoRequest(DATAPATH, data)


def echo_reply(data: bytes) -> Any:
    return ofpp.OFPEchoReply(DATAPATH, data)


_ALL_PACKET_INS = 0b111  # no match, action, invalid TTL
_ALL_PORT_STATUS = 0b111  # add, delete, modify
_ALL_FLOW_REMOVED = 0b1111  # idle, hard, delete, group delete


def set_async() -> Any:
    """Asynchronous messages to a master (or equal) controller only.

    OpenFlow 1.3 sends port status to slaves too by default: in a boot storm
    each slave decoded every port's status of every switch it does not master,
    for nothing (a new master reads the ports with PORT_DESC). [master, slave].
    """
    return ofpp.OFPSetAsync(
        DATAPATH, [_ALL_PACKET_INS, 0], [_ALL_PORT_STATUS, 0], [_ALL_FLOW_REMOVED, 0]
    )


def role_request(role: Role, generation_id: int) -> Any:
    if not 0 <= generation_id <= _MAX_U64:
        raise CodecError(f"generation id {generation_id} is not a 64-bit unsigned integer")
    return ofpp.OFPRoleRequest(DATAPATH, int(role), generation_id)


def packet_out(port: int, data: bytes, in_port: int = OFPP_CONTROLLER) -> Any:
    _check(0 < port <= _MAX_U32, f"port {port} out of range")
    actions = [ofpp.OFPActionOutput(port, 0)]
    return ofpp.OFPPacketOut(
        DATAPATH, buffer_id=ofp.OFP_NO_BUFFER, in_port=in_port, actions=actions, data=data
    )


# -- flows, core -> OpenFlow ----------------------------------------------------
def _check(ok: bool, what: str) -> None:
    if not ok:
        raise CodecError(what)


_OXM_BASIC = ofp.OFPXMC_OPENFLOW_BASIC << 16


@functools.lru_cache(maxsize=1 << 16)
def _match_wire(match: Match) -> bytes:
    """The match packed with `struct`: os-ken converts each MAC from text through netaddr
    when it builds a match and again each time it serialises it (~70 us for a new VM's).
    A VM's match recurs on every switch its flows are on, in one burst."""
    return _oxm_match(match)


def _oxm_match(match: Match) -> bytes:
    """ofp_match with OXM fields in field order, padded to 8 bytes (OpenFlow 1.3, 7.2.2)."""
    tlvs = b""
    if match.in_port is not None:
        _check(0 < match.in_port <= _MAX_U32, f"in_port {match.in_port} out of range")
        tlvs += _oxm(ofp.OFPXMT_OFB_IN_PORT, struct.pack("!I", match.in_port))
    if match.eth_dst is not None:
        mask = match.eth_dst_mask
        value = _mac_bytes(match.eth_dst)
        if mask is None:
            tlvs += _oxm(ofp.OFPXMT_OFB_ETH_DST, value)
        else:
            tlvs += _oxm(ofp.OFPXMT_OFB_ETH_DST, value, _mac_bytes(mask))
    else:
        _check(match.eth_dst_mask is None, "an eth_dst mask without an eth_dst")
    if match.eth_src is not None:
        tlvs += _oxm(ofp.OFPXMT_OFB_ETH_SRC, _mac_bytes(match.eth_src))
    length = 4 + len(tlvs)
    return struct.pack("!HH", ofp.OFPMT_OXM, length) + tlvs + bytes(-length % 8)


def _oxm(field: int, value: bytes, mask: bytes | None = None) -> bytes:
    if mask is None:
        return _oxm_header(field, False, len(value)) + value
    # Bits outside the mask are sent as zero, as os-ken does (OpenFlow 1.3, 7.2.3.5).
    masked = bytes(v & m for v, m in zip(value, mask, strict=True))
    return _oxm_header(field, True, 2 * len(value)) + masked + mask


def _oxm_header(field: int, masked: bool, length: int) -> bytes:
    return struct.pack("!I", _OXM_BASIC | field << 9 | masked << 8 | length)


_MAC_TEXT = len("02:00:00:00:00:00")
_MAC_BYTES = 6


def _mac_bytes(mac: str) -> bytes:
    try:
        raw = bytes.fromhex(mac.replace(":", ""))
    except ValueError:
        raw = b""
    _check(len(raw) == _MAC_BYTES and len(mac) == _MAC_TEXT, f"{mac!r} is not a MAC address")
    return raw


class _Actions(NamedTuple):
    outputs: list[tuple[int, int]]  # (port, max_len) in order
    goto: int | None


def _checked_actions(actions: tuple[Action, ...]) -> _Actions:
    """Outputs (one apply-actions instruction), then the goto, which must come last."""
    outputs: list[tuple[int, int]] = []
    goto: int | None = None
    for action in actions:
        _check(goto is None, f"{action} after GotoTable: a goto is the last action")
        match action:
            case Output(port=port):
                _check(port != OFPP_CONTROLLER, "output to the controller is ToController")
                _check(0 < port <= OFPP_MAX, f"output to port {port:#x}: not a switch port")
                outputs.append((port, ofp.OFPCML_MAX))
            case ToController(max_len=max_len):
                _check(0 <= max_len <= _MAX_U16, f"max_len {max_len} out of range")
                outputs.append((OFPP_CONTROLLER, max_len))
            case GotoTable(table=table):
                _check(0 <= table <= _MAX_TABLE, f"goto table {table} out of range")
                goto = table
    return _Actions(outputs, goto)


_APPLY = struct.Struct("!HH4x")  # ofp_instruction_actions
_OUTPUT = struct.Struct("!HHIH6x")  # ofp_action_output
_GOTO = struct.Struct("!HHB3x")  # ofp_instruction_goto_table


@functools.lru_cache(maxsize=1 << 12)
def _instructions_wire(actions: tuple[Action, ...]) -> bytes:
    """The same instructions, packed (a flood flow's outputs recur on every rewrite)."""
    outputs, goto = _checked_actions(actions)
    wire = b""
    if outputs:
        packed = b"".join(_OUTPUT.pack(ofp.OFPAT_OUTPUT, _OUTPUT.size, *o) for o in outputs)
        wire += _APPLY.pack(ofp.OFPIT_APPLY_ACTIONS, _APPLY.size + len(packed)) + packed
    if goto is not None:
        wire += _GOTO.pack(ofp.OFPIT_GOTO_TABLE, _GOTO.size, goto)
    return wire


# ofp_header, then ofp_flow_mod up to its match (OpenFlow 1.3, 7.3.4.1)
_FLOW_MOD = struct.Struct("!BBHI" + ofp.OFP_FLOW_MOD_PACK_STR0.removeprefix("!"))


def encode_flow_mod(mod: FlowMod) -> Packed:
    """A core flow mod as a `Packed` OFPT_FLOW_MOD, byte for byte what os-ken would build
    (the tests hold it to os-ken's). Packed with `struct`: os-ken's objects were most of
    a flow mod's cost, and a boot storm sends tens of thousands."""
    flow = mod.flow
    _check(0 <= flow.table <= _MAX_TABLE, f"table {flow.table} out of range")
    _check(0 <= flow.priority <= _MAX_PRIORITY, f"priority {flow.priority} out of range")
    _check(0 <= flow.cookie <= _MAX_COOKIE, f"cookie {flow.cookie:#x} out of range")
    match = _match_wire(flow.match)
    if mod.command is FlowCommand.ADD:
        command, cookie, instructions = ofp.OFPFC_ADD, flow.cookie, _instructions_wire(flow.actions)
    else:
        command, cookie, instructions = ofp.OFPFC_DELETE_STRICT, 0, b""
    length = _FLOW_MOD.size + len(match) + len(instructions)
    head = _FLOW_MOD.pack(
        OFP_VERSION, ofp.OFPT_FLOW_MOD, length, 0, cookie, 0, flow.table, command, 0, 0,
        flow.priority, ofp.OFP_NO_BUFFER, ofp.OFPP_ANY, ofp.OFPG_ANY, 0,
    )  # fmt: skip
    return Packed(head + match + instructions)


def _delete_strict(table: int, priority: int, match: Any, parser: Any = ofpp) -> Any:
    return parser.OFPFlowMod(
        DATAPATH, table_id=table, command=ofp.OFPFC_DELETE_STRICT, priority=priority,
        buffer_id=ofp.OFP_NO_BUFFER, out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
        match=match, instructions=[],
    )  # fmt: skip


def encode_delete_foreign(foreign: ForeignFlow, parser: Any = ofpp) -> Any:
    """OFPFC_DELETE_STRICT for exactly that foreign flow (its raw match)."""
    return _delete_strict(foreign.table, foreign.priority, foreign.raw_match, parser)


# -- flows, OpenFlow -> core ----------------------------------------------------
def _mac(value: object, what: str) -> tuple[str, str | None]:
    if isinstance(value, tuple) and len(value) == 2:  # noqa: PLR2004
        mac, mask = str(value[0]).lower(), str(value[1]).lower()
        return (mac, None) if mask == _EXACT_MAC else (mac, mask)
    if isinstance(value, str):
        return value.lower(), None
    raise CodecError(f"unreadable {what} {value!r}")


def decode_match(match: Any) -> Match:
    """A core `Match`, or CodecError naming what it cannot hold."""
    fields = dict(match.items())
    unknown = sorted(set(fields) - _MATCHABLE)
    if unknown:
        raise CodecError(f"matches on {', '.join(unknown)}")
    eth_dst = dst_mask = eth_src = None
    if "eth_dst" in fields:
        eth_dst, dst_mask = _mac(fields["eth_dst"], "eth_dst")
    if "eth_src" in fields:
        eth_src, src_mask = _mac(fields["eth_src"], "eth_src")
        if src_mask is not None:
            raise CodecError("matches on a masked eth_src")
    in_port = fields.get("in_port")
    if in_port is not None and not isinstance(in_port, int):
        raise CodecError(f"unreadable in_port {in_port!r}")
    return Match(in_port=in_port, eth_dst=eth_dst, eth_dst_mask=dst_mask, eth_src=eth_src)


def _decode_action(action: Any) -> Action:
    if not isinstance(action, ofpp.OFPActionOutput):
        raise CodecError(f"has action {type(action).__name__}")
    port = int(action.port)
    if port == OFPP_CONTROLLER:
        return ToController(int(action.max_len))
    if port > OFPP_MAX:  # NORMAL, FLOOD, LOCAL...: the core outputs to switch ports only
        raise CodecError(f"outputs to reserved port {_PORT_NAMES.get(port, hex(port))}")
    return Output(port)


def decode_instructions(instructions: list[Any]) -> tuple[Action, ...]:
    actions: list[Action] = []
    goto: GotoTable | None = None
    for inst in instructions:
        if isinstance(inst, ofpp.OFPInstructionGotoTable) and goto is None:
            goto = GotoTable(int(inst.table_id))
        elif (
            isinstance(inst, ofpp.OFPInstructionActions)
            and inst.type == ofp.OFPIT_APPLY_ACTIONS
            and not actions
        ):
            actions.extend(_decode_action(a) for a in inst.actions)
        else:
            raise CodecError(f"has instruction {type(inst).__name__} (type {inst.type})")
    if goto is not None:
        actions.append(goto)
    return tuple(actions)


def decode_flow_stats(stats: Any) -> Flow:
    """The core `Flow` of one OFPFlowStats entry; ForeignFlowError if there is none."""
    table, priority, cookie = int(stats.table_id), int(stats.priority), int(stats.cookie)

    def foreign(reason: str, key: FlowKey | None) -> ForeignFlowError:
        return ForeignFlowError(ForeignFlow(table, priority, cookie, reason, key, stats.match))

    try:
        match = decode_match(stats.match)
    except CodecError as exc:
        raise foreign(str(exc), None) from None
    key = (table, priority, match)
    if stats.idle_timeout or stats.hard_timeout:
        timeouts = f"idle {stats.idle_timeout}s, hard {stats.hard_timeout}s"
        raise foreign(f"has timeouts ({timeouts})", key)
    try:
        actions = decode_instructions(stats.instructions)
    except CodecError as exc:
        raise foreign(str(exc), key) from None
    return Flow(table, priority, match, actions, cookie)


# -- ports ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PortInfo:
    port_no: int
    name: str
    hw_addr: str
    link_up: bool

    @property
    def reserved(self) -> bool:
        """A reserved port (the bridge's LOCAL port), not one a VM or a link can be on."""
        return self.port_no > OFPP_MAX


# ofp_port (OpenFlow 1.3, 7.2.1): port_no, pad, hw_addr, pad, name, config, state, ...
_PORT = struct.Struct("!I4x6s2x16sII")


def decode_port(buf: bytes, offset: int = 0) -> PortInfo:
    """The ofp_port at `offset`. Unpacked here, not by os-ken, whose MAC goes through
    netaddr: a port status per port and per change made that a boot storm's cost."""
    if len(buf) < offset + ofp.OFP_PORT_SIZE:
        raise CodecError(f"truncated port description ({len(buf) - offset} bytes)")
    port_no, hw_addr, name, config, state = _PORT.unpack_from(buf, offset)
    text = name.split(b"\0", 1)[0].decode("utf-8", "replace")
    down = state & ofp.OFPPS_LINK_DOWN or config & ofp.OFPPC_PORT_DOWN
    return PortInfo(port_no, text, hw_addr.hex(":"), not down)


# -- incoming messages ---------------------------------------------------------
_ERROR_CODE_PREFIX = {
    "HELLO_FAILED": "OFPHFC_", "BAD_REQUEST": "OFPBRC_", "BAD_ACTION": "OFPBAC_",
    "BAD_INSTRUCTION": "OFPBIC_", "BAD_MATCH": "OFPBMC_", "FLOW_MOD_FAILED": "OFPFMFC_",
    "GROUP_MOD_FAILED": "OFPGMFC_", "PORT_MOD_FAILED": "OFPPMFC_",
    "TABLE_MOD_FAILED": "OFPTMFC_", "QUEUE_OP_FAILED": "OFPQOFC_",
    "SWITCH_CONFIG_FAILED": "OFPSCFC_", "ROLE_REQUEST_FAILED": "OFPRRFC_",
    "METER_MOD_FAILED": "OFPMMFC_", "TABLE_FEATURES_FAILED": "OFPTFFC_",
}  # fmt: skip


def _error_names() -> dict[tuple[int, int | None], str]:
    names: dict[tuple[int, int | None], str] = {}
    for type_name_, prefix in _ERROR_CODE_PREFIX.items():
        etype = getattr(ofp, f"OFPET_{type_name_}")
        names[etype, None] = type_name_
        for attr in dir(ofp):
            if attr.startswith(prefix):
                names[etype, getattr(ofp, attr)] = attr.removeprefix(prefix)
    return names


_ERROR_NAMES = _error_names()


@dataclass(frozen=True, slots=True)
class Hello:
    versions: frozenset[int] | None  # from the version bitmap; None when there is none


@dataclass(frozen=True, slots=True)
class ErrorMsg:
    type: int
    code: int
    data: bytes

    def describe(self) -> str:
        kind = _ERROR_NAMES.get((self.type, None), f"type {self.type}")
        code = _ERROR_NAMES.get((self.type, self.code), f"code {self.code}")
        return f"{kind}/{code}"


@dataclass(frozen=True, slots=True)
class EchoRequest:
    data: bytes


@dataclass(frozen=True, slots=True)
class EchoReply:
    data: bytes


@dataclass(frozen=True, slots=True)
class FeaturesReply:
    dpid: int
    n_buffers: int
    n_tables: int
    capabilities: int


@dataclass(frozen=True, slots=True)
class PortDescReply:
    ports: tuple[PortInfo, ...]
    more: bool


@dataclass(frozen=True, slots=True)
class FlowStatsReply:
    flows: tuple[Flow, ...]
    foreign: tuple[ForeignFlow, ...]
    more: bool


@dataclass(frozen=True, slots=True)
class BarrierReply:
    pass


@dataclass(frozen=True, slots=True)
class RoleReply:
    role: Role
    generation_id: int


PortReason = Literal["add", "modify", "delete"]
_PORT_REASONS: dict[int, PortReason] = {
    ofp.OFPPR_ADD: "add", ofp.OFPPR_MODIFY: "modify", ofp.OFPPR_DELETE: "delete",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class PortStatus:
    reason: PortReason
    port: PortInfo


@dataclass(frozen=True, slots=True)
class PacketIn:
    in_port: int
    data: bytes
    reason: int
    table_id: int
    cookie: int


@dataclass(frozen=True, slots=True)
class Unhandled:
    msg_type: int


Incoming = (
    Hello | ErrorMsg | EchoRequest | EchoReply | FeaturesReply | PortDescReply
    | FlowStatsReply | BarrierReply | RoleReply | PortStatus | PacketIn | Unhandled
)  # fmt: skip


def decode_hello(buf: bytes) -> Hello:
    """The versions a HELLO offers (any version: the format is the same since 1.3.1)."""
    offset = HEADER_SIZE
    versions: set[int] | None = None
    while offset + _HELLO_ELEM.size <= len(buf):
        etype, elen = _HELLO_ELEM.unpack_from(buf, offset)
        if elen < _HELLO_ELEM.size or offset + elen > len(buf):
            raise CodecError(f"malformed hello element (length {elen})")
        if etype == ofp.OFPHET_VERSIONBITMAP:
            versions = set() if versions is None else versions
            for i in range((elen - _HELLO_ELEM.size) // 4):
                (bitmap,) = _U32.unpack_from(buf, offset + _HELLO_ELEM.size + 4 * i)
                versions.update(i * 32 + bit for bit in range(32) if bitmap >> bit & 1)
        offset += (elen + 7) // 8 * 8  # elements are padded to 8 bytes
    return Hello(None if versions is None else frozenset(versions))


def negotiate(peer_version: int, hello: Hello) -> bool:
    """Whether OpenFlow 1.3, the only version we speak, is common to both sides."""
    if hello.versions is not None:
        return OFP_VERSION in hello.versions
    return peer_version >= OFP_VERSION  # without a bitmap: min(ours, theirs)


def _check_tlvs(buf: bytes, start: int, end: int, what: str) -> list[tuple[int, int, int]]:
    """(type, offset, length) of 8-aligned type-length items filling buf[start:end]."""
    items = []
    offset = start
    while offset < end:
        if end - offset < 8:  # noqa: PLR2004
            raise CodecError(f"truncated {what}")
        (kind,) = _U16.unpack_from(buf, offset)
        (length,) = _U16.unpack_from(buf, offset + 2)
        if length < 8 or length % 8 or offset + length > end:  # noqa: PLR2004
            raise CodecError(f"{what} of bad length {length}")
        items.append((kind, offset, length))
        offset += length
    return items


def _check_flow_stats(buf: bytes) -> None:
    """Bounds of every nested length in a flow stats reply, before os-ken loops over them."""
    offset, end = ofp.OFP_MULTIPART_REPLY_SIZE, len(buf)
    match_at = ofp.OFP_FLOW_STATS_0_SIZE
    while offset < end:
        if end - offset < ofp.OFP_FLOW_STATS_SIZE:
            raise CodecError("truncated flow stats entry")
        (length,) = _U16.unpack_from(buf, offset)
        (match_len,) = _U16.unpack_from(buf, offset + match_at + 2)
        entry_end = offset + length
        inst_at = offset + match_at + (match_len + 7) // 8 * 8
        if length < ofp.OFP_FLOW_STATS_SIZE or entry_end > end or match_len < _MIN_MATCH:
            raise CodecError(f"flow stats entry of bad length {length} (match {match_len})")
        if inst_at > entry_end:
            raise CodecError(f"flow stats match of bad length {match_len}")
        for kind, at, ilen in _check_tlvs(buf, inst_at, entry_end, "instruction"):
            if kind in (ofp.OFPIT_APPLY_ACTIONS, ofp.OFPIT_WRITE_ACTIONS):
                _check_tlvs(buf, at + 8, at + ilen, "action")
        offset = entry_end


def _parse(header: Header, buf: bytes) -> Any:
    try:
        msg = ofpp.msg_parser(DATAPATH, header.version, header.msg_type, header.length,
                              header.xid, buf)  # fmt: skip
    except Exception as exc:  # os-ken raises whatever struct and its asserts raise
        raise CodecError(f"cannot parse {type_name(header.msg_type)}: {exc!r}") from exc
    if msg is None:
        raise CodecError(f"cannot parse {type_name(header.msg_type)}")
    return msg


def _flow_stats(body: list[Any], more: bool) -> FlowStatsReply:
    flows: list[Flow] = []
    foreign: list[ForeignFlow] = []
    for stats in body:
        try:
            flows.append(decode_flow_stats(stats))
        except ForeignFlowError as exc:
            foreign.append(exc.foreign)
    return FlowStatsReply(tuple(flows), tuple(foreign), more)


def _multipart(header: Header, buf: bytes) -> Incoming:
    if len(buf) < ofp.OFP_MULTIPART_REPLY_SIZE:
        raise CodecError(f"multipart reply of {len(buf)} bytes")
    (mp_type,) = _U16.unpack_from(buf, HEADER_SIZE)
    if mp_type == ofp.OFPMP_FLOW:
        _check_flow_stats(buf)
    elif mp_type == ofp.OFPMP_PORT_DESC:
        return _port_desc(buf)
    else:
        return Unhandled(header.msg_type)
    msg = _parse(header, buf)
    return _flow_stats(msg.body, bool(msg.flags & ofp.OFPMPF_REPLY_MORE))


def _port_desc(buf: bytes) -> PortDescReply:
    (flags,) = _U16.unpack_from(buf, HEADER_SIZE + 2)
    start, size = ofp.OFP_MULTIPART_REPLY_SIZE, ofp.OFP_PORT_SIZE
    if (len(buf) - start) % size:
        raise CodecError(f"port desc reply of {len(buf)} bytes: not whole ports")
    ports = tuple(decode_port(buf, at) for at in range(start, len(buf), size))
    return PortDescReply(ports, bool(flags & ofp.OFPMPF_REPLY_MORE))


def _port_status(buf: bytes) -> Incoming:
    if len(buf) < ofp.OFP_PORT_STATUS_SIZE:
        raise CodecError(f"port status of {len(buf)} bytes")
    code = buf[HEADER_SIZE]
    reason = _PORT_REASONS.get(code)
    if reason is None:
        raise CodecError(f"port status with unknown reason {code}")
    return PortStatus(reason, decode_port(buf, ofp.OFP_PORT_STATUS_DESC_OFFSET))


def _packet_in(msg: Any) -> Incoming:
    in_port = msg.match.get("in_port")
    if not isinstance(in_port, int):
        raise CodecError("packet-in without an in_port")
    return PacketIn(in_port, bytes(msg.data), int(msg.reason), int(msg.table_id), int(msg.cookie))


def _error(msg: Any) -> Incoming:
    code = msg.exp_type if msg.type == ofp.OFPET_EXPERIMENTER else msg.code
    return ErrorMsg(int(msg.type), int(code), bytes(msg.data or b""))


def _features(msg: Any) -> Incoming:
    return FeaturesReply(
        int(msg.datapath_id), int(msg.n_buffers), int(msg.n_tables), int(msg.capabilities)
    )


_DECODERS = {
    ofp.OFPT_ERROR: _error,
    ofp.OFPT_ECHO_REQUEST: lambda m: EchoRequest(bytes(m.data)),
    ofp.OFPT_ECHO_REPLY: lambda m: EchoReply(bytes(m.data)),
    ofp.OFPT_FEATURES_REPLY: _features,
    ofp.OFPT_BARRIER_REPLY: lambda m: BarrierReply(),
    ofp.OFPT_ROLE_REPLY: lambda m: RoleReply(Role(m.role), int(m.generation_id)),
    ofp.OFPT_PACKET_IN: _packet_in,
}


def decode_message(header: Header, buf: bytes) -> Incoming:
    """One whole message (`buf` holds `header.length` bytes) as a typed record.

    Raises CodecError for a body that does not parse or a type OpenFlow 1.3
    does not define.
    """
    if header.msg_type == OFPT_HELLO:
        return decode_hello(buf)
    if header.msg_type not in _TYPE_NAMES:
        raise CodecError(f"unknown message type {header.msg_type}")
    if header.msg_type == ofp.OFPT_MULTIPART_REPLY:
        return _multipart(header, buf)
    if header.msg_type == ofp.OFPT_PORT_STATUS:
        return _port_status(buf)
    decoder = _DECODERS.get(header.msg_type)
    if decoder is None:
        return Unhandled(header.msg_type)
    msg = _parse(header, buf)
    try:
        record: Incoming = decoder(msg)
    except (AttributeError, TypeError, ValueError) as exc:
        raise CodecError(f"bad {type_name(header.msg_type)}: {exc!r}") from exc
    return record
