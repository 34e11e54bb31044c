"""What every OpenFlow 1.3 message shares: the header, the version, errors, serialising.

os-ken (its message classes and parsers only: never its app manager,
controller or eventlet) builds and parses most messages; its encoder and
decoder read nothing of a datapath but `ofproto` and `ofproto_parser`, so
`DATAPATH` stands in for os-ken's `Datapath`. A message packed here with
`struct` is a `Packed`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NamedTuple

from os_ken.ofproto import ofproto_parser
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofpp

OFP_VERSION: int = ofp.OFP_VERSION
HEADER_SIZE: int = ofp.OFP_HEADER_SIZE
OFPT_HELLO: int = ofp.OFPT_HELLO
OFPP_CONTROLLER: int = ofp.OFPP_CONTROLLER
OFPP_MAX: int = ofp.OFPP_MAX

_U32 = struct.Struct("!I")


class _Datapath:
    """What os-ken's encoder and decoder read from a datapath: the protocol modules."""

    ofproto = ofp
    ofproto_parser = ofpp
    id: int | None = None


DATAPATH = _Datapath()


class CodecError(ValueError):
    """A flow or a message that cannot be translated."""


class Role(IntEnum):
    """Controller roles (OFPCR_ROLE_*)."""

    NOCHANGE = ofp.OFPCR_ROLE_NOCHANGE
    EQUAL = ofp.OFPCR_ROLE_EQUAL
    MASTER = ofp.OFPCR_ROLE_MASTER
    SLAVE = ofp.OFPCR_ROLE_SLAVE


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


TYPE_NAMES: dict[int, str] = {
    getattr(ofp, n): n.removeprefix("OFPT_") for n in dir(ofp) if n.startswith("OFPT_")
}


def type_name(msg_type: int) -> str:
    return TYPE_NAMES.get(msg_type, f"type {msg_type}")


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
