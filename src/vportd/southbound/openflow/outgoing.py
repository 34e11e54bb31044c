"""The OpenFlow 1.3 messages the endpoint sends, but for flow mods (`flowcodec`).

All but HELLO are os-ken messages built on `wire.DATAPATH`; `wire.serialize`
gives them an xid and their bytes when they are queued.
"""

from __future__ import annotations

import struct
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofpp

from vportd.southbound.openflow.wire import (
    DATAPATH,
    HEADER_SIZE,
    OFP_VERSION,
    OFPP_CONTROLLER,
    OFPT_HELLO,
    CodecError,
    Role,
)

_MAX_U32 = 0xFFFF_FFFF
_MAX_U64 = 0xFFFF_FFFF_FFFF_FFFF
_ALL_PACKET_INS = 0b111  # no match, action, invalid TTL
_ALL_PORT_STATUS = 0b111  # add, delete, modify
_ALL_FLOW_REMOVED = 0b1111  # idle, hard, delete, group delete


def encode_hello() -> bytes:
    """HELLO with a version bitmap offering OpenFlow 1.3 only (os-ken cannot encode one)."""
    bitmap = struct.pack("!HHI", ofp.OFPHET_VERSIONBITMAP, 8, 1 << OFP_VERSION)
    return struct.pack("!BBHI", OFP_VERSION, OFPT_HELLO, HEADER_SIZE + len(bitmap), 0) + bitmap


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


def set_async() -> Any:
    """Asynchronous messages to a master (or equal) controller only. [master, slave].

    OpenFlow 1.3 sends port status to slaves too by default; a slave has no
    use for them (a new master reads the ports with PORT_DESC), and each
    would cost it a decode of every port change of every switch.
    """
    return ofpp.OFPSetAsync(
        DATAPATH, [_ALL_PACKET_INS, 0], [_ALL_PORT_STATUS, 0], [_ALL_FLOW_REMOVED, 0]
    )


def role_request(role: Role, generation_id: int) -> Any:
    if not 0 <= generation_id <= _MAX_U64:
        raise CodecError(f"generation id {generation_id} is not a 64-bit unsigned integer")
    return ofpp.OFPRoleRequest(DATAPATH, int(role), generation_id)


def packet_out(port: int, data: bytes, in_port: int = OFPP_CONTROLLER) -> Any:
    if not 0 < port <= _MAX_U32:
        raise CodecError(f"port {port} out of range")
    actions = [ofpp.OFPActionOutput(port, 0)]
    return ofpp.OFPPacketOut(
        DATAPATH, buffer_id=ofp.OFP_NO_BUFFER, in_port=in_port, actions=actions, data=data
    )
