"""OpenFlow flows as the core sees them: tables, matches, actions, flow mods, cookies."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

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


class Match(NamedTuple):
    """What a flow matches; None: any. A tuple, hashed and compared in C: it is part
    of every flow key, looked up at every change of an installed table."""

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
