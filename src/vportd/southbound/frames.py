"""The few Ethernet frames the controller reads or writes: LLDP, ARP and RARP.

LLDP (IEEE 802.1AB) discovers inter-switch links: the controller sends a frame
out of each infrastructure port with the switch's datapath id as chassis id
and the port number as port id; the switch at the other end punts it back.
ARP and RARP from a VM's MAC on a migration's destination announce the VM.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

ETH_LLDP = 0x88CC
ETH_ARP = 0x0806
ETH_RARP = 0x8035
LLDP_MULTICAST = bytes.fromhex("0180c200000e")

_TLV_END, _TLV_CHASSIS, _TLV_PORT, _TLV_TTL = 0, 1, 2, 3
_SUBTYPE_LOCAL = 7
_HEADER = 14


@dataclass(frozen=True, slots=True)
class Ethernet:
    dst: str
    src: str
    ethertype: int
    payload: bytes


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def parse_ethernet(frame: bytes) -> Ethernet | None:
    if len(frame) < _HEADER:
        return None
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    return Ethernet(_mac(frame[0:6]), _mac(frame[6:12]), ethertype, frame[_HEADER:])


def _tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!H", kind << 9 | len(value)) + value


def build_lldp(dpid: int, port: int, src_mac: bytes = bytes(6)) -> bytes:
    body = (
        _tlv(_TLV_CHASSIS, bytes([_SUBTYPE_LOCAL]) + f"dpid:{dpid:016x}".encode())
        + _tlv(_TLV_PORT, bytes([_SUBTYPE_LOCAL]) + str(port).encode())
        + _tlv(_TLV_TTL, struct.pack("!H", 120))
        + _tlv(_TLV_END, b"")
    )
    return LLDP_MULTICAST + src_mac + struct.pack("!H", ETH_LLDP) + body


def parse_lldp(payload: bytes) -> tuple[int, int] | None:
    """(datapath id, port) from one of our LLDP frames, else None."""
    chassis = port = None
    at = 0
    while at + 2 <= len(payload):
        (head,) = struct.unpack_from("!H", payload, at)
        kind, size = head >> 9, head & 0x1FF
        value = payload[at + 2 : at + 2 + size]
        at += 2 + size
        if kind == _TLV_END:
            break
        if kind in (_TLV_CHASSIS, _TLV_PORT) and value[:1] == bytes([_SUBTYPE_LOCAL]):
            text = value[1:].decode("ascii", "replace")
            if kind == _TLV_CHASSIS:
                chassis = text
            else:
                port = text
    if chassis is None or port is None or not chassis.startswith("dpid:"):
        return None
    try:
        return int(chassis[5:], 16), int(port)
    except ValueError:
        return None


def announces(eth: Ethernet) -> bool:
    """A VM's announcement after a move: a RARP, or an ARP (gratuitous or not)."""
    return eth.ethertype in (ETH_RARP, ETH_ARP)
