"""The OpenFlow 1.3 messages a switch sends, decoded into small typed records.

`decode_message` parses the types the endpoint acts on and leaves the others
`Unhandled` without parsing their body. HELLO, port descriptions and port
status are unpacked here with `struct`; the rest by os-ken, whose objects stay
in this module. A flow stats reply has its nested lengths checked before
os-ken sees it: os-ken's parsers advance by those lengths, and a zero would
make them loop forever.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Literal

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofpp

from vportd.core.flow import Flow
from vportd.southbound.openflow.flowcodec import ForeignFlow, ForeignFlowError, decode_flow_stats
from vportd.southbound.openflow.wire import (
    DATAPATH,
    HEADER_SIZE,
    OFP_VERSION,
    OFPP_MAX,
    OFPT_HELLO,
    TYPE_NAMES,
    CodecError,
    Header,
    Role,
    type_name,
)

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_HELLO_ELEM = struct.Struct("!HH")
_MIN_MATCH = 4  # an ofp_match header


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
    """The ofp_port at `offset` (unpacked here: os-ken's MAC goes through netaddr, which
    costs more than the rest, once per port and per change)."""
    if len(buf) < offset + ofp.OFP_PORT_SIZE:
        raise CodecError(f"truncated port description ({len(buf) - offset} bytes)")
    port_no, hw_addr, name, config, state = _PORT.unpack_from(buf, offset)
    text = name.split(b"\0", 1)[0].decode("utf-8", "replace")
    down = state & ofp.OFPPS_LINK_DOWN or config & ofp.OFPPC_PORT_DOWN
    return PortInfo(port_no, text, hw_addr.hex(":"), not down)


# -- records ---------------------------------------------------------------------
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

    @property
    def is_slave(self) -> bool:
        """The switch refused a request because it takes us for a slave."""
        return (self.type, self.code) == (ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_IS_SLAVE)

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


# -- hello -----------------------------------------------------------------------
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


# -- multipart replies -------------------------------------------------------------
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


# -- other messages ------------------------------------------------------------------
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
    if header.msg_type not in TYPE_NAMES:
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
