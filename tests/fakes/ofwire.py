"""The switch's side of OpenFlow 1.3 on the wire: what a fake switch sends and reads.

os-ken parses what a switch *sends* (the controller's view), not most of what
it receives, and encodes requests, not replies: the fixed parts are packed
here with `struct` and os-ken's format strings, matches, instructions and
actions with os-ken's own `serialize` / `parser`. Multipart replies are split
as ovs-vswitchd splits them, before a part would exceed `max_part` bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofpp

from tests.fakes.oftable import FlowEntry, Match, Selection, SwitchError, canonical_match
from tests.southbound.support import message

MAX_PART = 0xFFFF  # a message's length field is 16 bits
_U16 = struct.Struct("!H")


@dataclass(frozen=True)
class Port:
    """A switch port as PORT_DESC and PORT_STATUS describe it."""

    no: int
    name: str
    mac: str
    up: bool = True
    admin_up: bool = True

    def wire(self) -> bytes:
        """ofp_port (OpenFlow 1.3, 7.2.1)."""
        config = 0 if self.admin_up else ofp.OFPPC_PORT_DOWN
        state = ofp.OFPPS_LIVE if self.up else ofp.OFPPS_LINK_DOWN
        mac = bytes.fromhex(self.mac.replace(":", ""))
        return struct.pack(
            ofp.OFP_PORT_PACK_STR, self.no, mac, self.name.encode()[:15], config, state,
            0, 0, 0, 0, 0, 0,
        )  # fmt: skip


def hello(versions: Iterable[int]) -> bytes:
    """HELLO with a version bitmap, as ovs-vswitchd sends it."""
    bitmap = sum(1 << v for v in versions)
    elem = struct.pack("!HHI", ofp.OFPHET_VERSIONBITMAP, 8, bitmap)
    return message(ofp.OFPT_HELLO, elem, version=max(versions))


def error(type_: int, code: int, offending: bytes, xid: int) -> bytes:
    """OFPT_ERROR carrying the first 64 bytes of what it refuses (OpenFlow 1.3, 7.4.4)."""
    return message(ofp.OFPT_ERROR, struct.pack("!HH", type_, code) + offending[:64], xid)


def refusal(exc: SwitchError, offending: bytes, xid: int) -> bytes:
    return error(exc.type, exc.code, offending, xid)


def features_reply(dpid: int, n_tables: int, xid: int) -> bytes:
    # what ovs-vswitchd reports
    capabilities = (
        ofp.OFPC_FLOW_STATS | ofp.OFPC_TABLE_STATS | ofp.OFPC_PORT_STATS
        | ofp.OFPC_GROUP_STATS | ofp.OFPC_QUEUE_STATS
    )  # fmt: skip
    body = struct.pack(ofp.OFP_SWITCH_FEATURES_PACK_STR, dpid, 0, n_tables, 0, capabilities, 0)
    return message(ofp.OFPT_FEATURES_REPLY, body, xid)


def multipart_replies(
    mp_type: int, entries: Iterable[bytes], xid: int, max_part: int = MAX_PART
) -> list[bytes]:
    """The parts of one multipart reply: OFPMPF_REPLY_MORE on all but the last."""
    room = max_part - ofp.OFP_MULTIPART_REPLY_SIZE
    parts: list[list[bytes]] = [[]]
    size = 0
    for entry in entries:
        if len(entry) > room:
            raise ValueError(f"a multipart entry of {len(entry)} bytes exceeds {max_part}")
        if size + len(entry) > room:
            parts.append([])
            size = 0
        parts[-1].append(entry)
        size += len(entry)
    return [
        message(
            ofp.OFPT_MULTIPART_REPLY,
            struct.pack("!HH4x", mp_type, ofp.OFPMPF_REPLY_MORE if n < len(parts) - 1 else 0)
            + b"".join(part),
            xid,
        )
        for n, part in enumerate(parts)
    ]


def desc_entry() -> bytes:
    fields = (b"vportd tests", b"FakeSwitch", b"0", b"None", b"None")
    return struct.pack(ofp.OFP_DESC_PACK_STR, *fields)


def flow_stats_entry(entry: FlowEntry) -> bytes:
    """ofp_flow_stats for one flow: the fixed part packed, match and instructions by os-ken."""
    stats = entry.stats()
    buf = bytearray(ofp.OFP_FLOW_STATS_0_SIZE)
    offset = ofp.OFP_FLOW_STATS_0_SIZE
    offset += stats.match.serialize(buf, offset)
    for inst in stats.instructions:
        inst.serialize(buf, offset)
        offset += inst.len
    struct.pack_into(
        ofp.OFP_FLOW_STATS_0_PACK_STR, buf, 0, offset, entry.table, 0, 0, entry.priority,
        entry.idle_timeout, entry.hard_timeout, entry.flags, entry.cookie, 0, 0,
    )  # fmt: skip
    return bytes(buf)


def packet_in(in_port: int, data: bytes, reason: int, table: int, cookie: int) -> bytes:
    """OFPT_PACKET_IN of a whole frame (no buffer), its match holding the in_port."""
    fixed = struct.pack(ofp.OFP_PACKET_IN_PACK_STR, ofp.OFP_NO_BUFFER, len(data), reason, table,
                        cookie)  # fmt: skip
    match = bytearray()
    ofpp.OFPMatch(in_port=in_port).serialize(match, 0)
    return message(ofp.OFPT_PACKET_IN, fixed + bytes(match) + bytes(2) + data)  # 2: pad


def port_status(reason: int, port: Port) -> bytes:
    return message(ofp.OFPT_PORT_STATUS, struct.pack("!B7x", reason) + port.wire())


def role_reply(role: int, generation_id: int, xid: int) -> bytes:
    return message(ofp.OFPT_ROLE_REPLY, struct.pack("!I4xQ", role, generation_id), xid)


def async_reply(masks: tuple[int, ...], xid: int) -> bytes:
    return message(ofp.OFPT_GET_ASYNC_REPLY, struct.pack("!6I", *masks), xid)


def config_reply(xid: int) -> bytes:
    return message(ofp.OFPT_GET_CONFIG_REPLY, struct.pack("!HH", 0, 0), xid)  # as OVS answers


# -- what the switch reads -------------------------------------------------------------------
def _truncated(what: str, data: bytes) -> SwitchError:
    return SwitchError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_LEN, f"{what} of {len(data)} bytes")


def unpack_role_request(data: bytes) -> tuple[int, int]:
    """(role, generation_id) of an OFPT_ROLE_REQUEST."""
    if len(data) != ofp.OFP_ROLE_REQUEST_SIZE:
        raise _truncated("role request", data)
    role, generation = struct.unpack_from("!I4xQ", data, ofp.OFP_HEADER_SIZE)
    return int(role), int(generation)


def unpack_set_async(data: bytes) -> tuple[int, ...]:
    """The six masks of an OFPT_SET_ASYNC: packet-in, port status, flow removed; [master, slave]."""
    if len(data) != ofp.OFP_ASYNC_CONFIG_SIZE:
        raise _truncated("set async", data)
    return struct.unpack_from("!6I", data, ofp.OFP_HEADER_SIZE)


def multipart_type(data: bytes) -> int:
    if len(data) < ofp.OFP_MULTIPART_REQUEST_SIZE:
        raise _truncated("multipart request", data)
    return int(_U16.unpack_from(data, ofp.OFP_HEADER_SIZE)[0])


def unpack_flow_stats_request(data: bytes) -> Selection:
    """Which flows an OFPMP_FLOW request asks for (non-strict, as OpenFlow has it)."""
    at = ofp.OFP_MULTIPART_REQUEST_SIZE
    if len(data) < at + ofp.OFP_FLOW_STATS_REQUEST_0_SIZE + 4:  # and a match header
        raise _truncated("flow stats request", data)
    table, out_port, out_group, cookie, mask = struct.unpack_from(
        ofp.OFP_FLOW_STATS_REQUEST_0_PACK_STR, data, at
    )
    try:
        raw = ofpp.OFPMatch.parser(data, at + ofp.OFP_FLOW_STATS_REQUEST_0_SIZE)
    except Exception as exc:  # os-ken raises whatever struct raises
        raise _truncated(f"flow stats request ({exc!r})", data) from exc
    match: Match = canonical_match(raw)
    return Selection(table, match, None, cookie, mask, out_port, out_group)


@dataclass(frozen=True)
class PacketOutRequest:
    in_port: int
    actions: tuple[Any, ...]  # os-ken actions
    data: bytes


def unpack_packet_out(data: bytes) -> PacketOutRequest:
    head = ofp.OFP_PACKET_OUT_SIZE
    if len(data) < head:
        raise _truncated("packet out", data)
    buffer_id, in_port, actions_len = struct.unpack_from(
        ofp.OFP_PACKET_OUT_PACK_STR, data, ofp.OFP_HEADER_SIZE
    )
    if buffer_id != ofp.OFP_NO_BUFFER:
        raise SwitchError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BUFFER_UNKNOWN, f"buffer {buffer_id}")
    if head + actions_len > len(data):
        raise _truncated("packet out actions", data)
    actions: list[Any] = []
    offset = head
    try:
        while offset < head + actions_len:
            action = ofpp.OFPAction.parser(data, offset)
            actions.append(action)
            offset += action.len
    except Exception as exc:  # os-ken raises whatever struct raises
        raise _truncated(f"packet out action ({exc!r})", data) from exc
    return PacketOutRequest(int(in_port), tuple(actions), data[head + actions_len :])
