"""OpenFlow flows as the core sees them: tables, matches, actions, flow mods, cookies."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

CLASSIFY_TABLE = 0
FORWARD_TABLE = 1
FLOOD_TABLE = 2
SEGMENT_TABLE = 3  # forwarding of the tagged segments (module `segflows`)
SEGMENT_FLOOD_TABLE = 4

PRIO_CLASSIFY = 100  # table 0: a tagged segment's VM port, its frames into the segment
PRIO_TUNNEL = 3  # table 0: a frame from the tunnel of no segment held here is dropped
PRIO_UNTAGGED = 2  # table 0: an untagged frame, into the default segment (table 1)
PRIO_TAGGED = 1  # table 0: a tagged frame from a link, into its segment (table 3)

PRIO_ARRIVAL = 200
PRIO_VM = 100
PRIO_FLOOD = 50
PRIO_DEFAULT = 10
PRIO_MISS = 0

MULTICAST_BIT = "01:00:00:00:00:00"

# OpenFlow 1.3 `vlan_vid`: OFPVID_PRESENT | the VID for a tagged frame, OFPVID_NONE untagged.
VID_PRESENT = 0x1000
VID_NONE = 0x0000

COOKIE_VM = 0x01 << 56
COOKIE_ARRIVAL = 0x02 << 56
COOKIE_FLOOD = 0x03 << 56
COOKIE_BASE = 0x04 << 56
COOKIE_HANDOVER = 0x06 << 56  # (0x05: the runtime's LLDP punt)
COOKIE_SEGMENT = 0x07 << 56  # a segment's classification and flood flows (| the tag)
COOKIE_KIND_MASK = 0xFF << 56


class Match(NamedTuple):
    """What a flow matches; None: any. A tuple, hashed and compared in C: it is part
    of every flow key, looked up at every change of an installed table."""

    in_port: int | None = None
    eth_dst: str | None = None
    eth_dst_mask: str | None = None
    eth_src: str | None = None
    vlan_vid: int | None = None  # VID_PRESENT | tag, or VID_NONE
    vlan_vid_mask: int | None = None
    tunnel_id: int | None = None


@dataclass(frozen=True, slots=True)
class Output:
    port: int


@dataclass(frozen=True, slots=True)
class ToController:
    max_len: int = 128


@dataclass(frozen=True, slots=True)
class GotoTable:
    table: int


@dataclass(frozen=True, slots=True)
class PushVlan:
    """Push an 802.1Q header (its VID is set by a `SetField` of `vlan_vid` next)."""

    ethertype: int = 0x8100


@dataclass(frozen=True, slots=True)
class PopVlan:
    pass


@dataclass(frozen=True, slots=True)
class SetField:
    """Set one header field: `vlan_vid`, `tunnel_id` or `tun_ipv4_dst` (an IPv4 as text)."""

    field: str
    value: int | str


Action = Output | ToController | GotoTable | PushVlan | PopVlan | SetField


class Flow(NamedTuple):
    """One flow (a tuple: the objects the compiler makes most are made in C)."""

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


class FlowMod(NamedTuple):
    """Add or delete one flow on one switch (a tuple, as `Flow`)."""

    switch: str
    command: FlowCommand
    flow: Flow


ADD = FlowCommand.ADD  # (an enum member looked up by name costs more than a global)
DELETE = FlowCommand.DELETE


def unchanged(held: Flow | None, flow: Flow) -> bool:
    return held is flow or held == flow


FlowKey = tuple[int, int, Match]
