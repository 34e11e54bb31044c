"""OpenFlow flows as the core sees them: tables, matches, actions, flow mods, cookies."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from vportd.core.model import slot_setters

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


ADD = FlowCommand.ADD  # (an enum member looked up by name costs more than a global)
DELETE = FlowCommand.DELETE


_MATCH_IN_PORT, _MATCH_ETH_DST, _MATCH_ETH_DST_MASK, _MATCH_ETH_SRC, _MATCH_HASH = slot_setters(
    Match, "in_port", "eth_dst", "eth_dst_mask", "eth_src", "_hash"
)
_FLOW_TABLE, _FLOW_PRIORITY, _FLOW_MATCH, _FLOW_ACTIONS, _FLOW_COOKIE = slot_setters(
    Flow, "table", "priority", "match", "actions", "cookie"
)
_MOD_SWITCH, _MOD_COMMAND, _MOD_FLOW = slot_setters(FlowMod, "switch", "command", "flow")


def unchanged(held: Flow | None, flow: Flow) -> bool:
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
