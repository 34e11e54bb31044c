"""What crosses the core's boundary: inputs in, one `Output` out per call.

Inputs are port events from a controller's own OVS, records from the store of
record, the leader's vPort syncs and their answers, and the VMM's requests.
An `Output` says what the adapters must do, in this order: write its records
to the store of record, then send its messages (persist before send); send its
flow mods and have a barrier confirm them; only then release its answers and
its reply, whose promise ("sync complete", "notify complete") covers those
flows (the readiness barrier).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

from vportd.core.errors import CoreError
from vportd.core.flaps import MoveTimes
from vportd.core.flow import FlowMod
from vportd.core.model import VPortRecord, slot_setters


class EventKind(StrEnum):
    ADD = "add"
    MODIFY = "modify"
    DELETE = "delete"


class Reason(StrEnum):
    """Why a record is written; `vm-migration` is the patent's reason option."""

    PORT = "port"
    VM_MIGRATION = "vm-migration"
    VM_GONE = "vm-gone"
    VM_ACTIVATED = "vm-activated"
    VM_MOVED = "vm-moved"
    MIGRATION = "migration"  # the leader's: a sync, rollback or forced completion


@dataclass(frozen=True, slots=True, init=False)
class PortEvent:
    """A port add, modify or delete seen on one of this controller's OVS."""

    kind: EventKind
    ovs: str
    port: int
    mac: str
    port_name: str | None
    link_up: bool
    ips: tuple[str, ...]
    iface_id: str | None
    vm_id: str | None
    segment: int  # the port's VLAN tag (0: untagged)

    def __init__(  # noqa: PLR0917 (positional like the generated __init__ it replaces)
        self,
        kind: EventKind,
        ovs: str,
        port: int,
        mac: str,
        port_name: str | None = None,
        link_up: bool = False,
        ips: tuple[str, ...] = (),
        iface_id: str | None = None,
        vm_id: str | None = None,
        segment: int = 0,
    ) -> None:
        # Every port event makes one: the slots written directly (see `slot_setters`).
        _EV_KIND(self, kind)
        _EV_OVS(self, ovs)
        _EV_PORT(self, port)
        _EV_MAC(self, mac)
        _EV_PORT_NAME(self, port_name)
        _EV_LINK_UP(self, link_up)
        _EV_IPS(self, ips)
        _EV_IFACE_ID(self, iface_id)
        _EV_VM_ID(self, vm_id)
        _EV_SEGMENT(self, segment)


(
    _EV_KIND, _EV_OVS, _EV_PORT, _EV_MAC, _EV_PORT_NAME, _EV_LINK_UP, _EV_IPS, _EV_IFACE_ID,
    _EV_VM_ID, _EV_SEGMENT,
) = slot_setters(
    PortEvent, "kind", "ovs", "port", "mac", "port_name", "link_up", "ips", "iface_id",
    "vm_id", "segment",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class NotifyRequest:
    """The VMM's migration notify (claims 8 and 9)."""

    vm: str
    source: str
    destination: str


# The messages every event makes have an `__init__` of their own that writes
# the slots directly (see `slot_setters`), same signature as the generated one.


@dataclass(frozen=True, slots=True, init=False)
class Write:
    """A record for the store of record (claim 5: every controller applies it from there).

    `kind` and `reason` say which rule wrote it; `leader` marks the leader's
    writes, fenced by its leadership.
    """

    record: VPortRecord
    kind: EventKind
    reason: Reason
    leader: bool

    def __init__(
        self, record: VPortRecord, kind: EventKind, reason: Reason, leader: bool = False
    ) -> None:
        _WRITE_RECORD(self, record)
        _WRITE_KIND(self, kind)
        _WRITE_REASON(self, reason)
        _WRITE_LEADER(self, leader)


@dataclass(frozen=True, slots=True)
class VPortSync:
    """The leader's vPort sync (claims 1 and 6), to the source's and destination's masters."""

    record: VPortRecord
    migration_id: str
    leader: str


@dataclass(frozen=True, slots=True)
class SyncComplete:
    migration_id: str
    vm: str
    controller: str


@dataclass(frozen=True, slots=True)
class SyncRefused:
    migration_id: str
    vm: str
    controller: str
    reason: str


SyncAnswer = SyncComplete | SyncRefused


@dataclass(frozen=True, slots=True)
class Send:
    """A vPort sync for controller `to`; its answer comes back as `sync_answered`."""

    to: str
    message: VPortSync


# A migration's steps as the leader saw them: (step, its core time), in order.
Timeline = tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class DirectionDowntime:
    """One direction of traffic across a migration, as measured outside the cluster.

    `gap_s`: its longest silence; `lost`: packets lost in all; `arrivals`: when
    packets arrived (the reporter's wall clock, unix seconds), for a plot.
    """

    name: str
    gap_s: float
    lost: int
    arrivals: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class DowntimeReport:
    """What a VMM or the lab measured of a migration's traffic: per direction."""

    directions: tuple[DirectionDowntime, ...]


@dataclass(frozen=True, slots=True, init=False)
class MigrationView:
    """A migration as the API shows it; `timeline` in the core's time (the adapter's clock)."""

    id: str
    vm: str
    source: str
    destination: str
    state: str
    seq: int
    reason: str | None
    timeline: Timeline
    downtime: DowntimeReport | None

    def __init__(  # noqa: PLR0917 (positional like the generated __init__ it replaces)
        self,
        id: str,
        vm: str,
        source: str,
        destination: str,
        state: str,
        seq: int,
        reason: str | None = None,
        timeline: Timeline = (),
        downtime: DowntimeReport | None = None,
    ) -> None:
        _VIEW_ID(self, id)
        _VIEW_VM(self, vm)
        _VIEW_SOURCE(self, source)
        _VIEW_DESTINATION(self, destination)
        _VIEW_STATE(self, state)
        _VIEW_SEQ(self, seq)
        _VIEW_REASON(self, reason)
        _VIEW_TIMELINE(self, timeline)
        _VIEW_DOWNTIME(self, downtime)


@dataclass(frozen=True, slots=True)
class NotifyAnswer:
    """The leader's answer to the VMM: notify complete, or why not (claim 6)."""

    migration: MigrationView
    error: CoreError | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class Notified:
    """A notify taken: the migration, and whether it is new (or the same one again).

    A new one, or one still preparing, is answered later by a `NotifyAnswer`.
    """

    migration: MigrationView
    new: bool

    @property
    def answered(self) -> bool:
        return self.migration.state != "preparing"


R = TypeVar("R")


@dataclass(slots=True)
class Output(Generic[R]):
    """Everything one input asks of the adapters (module doc: the order they do it in)."""

    flow_mods: list[FlowMod] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    messages: list[Send] = field(default_factory=list)
    answers: list[NotifyAnswer] = field(default_factory=list)
    reply: R | None = None
    # The leader's records of VMs' moves (flap damping), fenced by its leadership. (A
    # tuple: most outputs have none, and an empty tuple costs no allocation.)
    moves: tuple[MoveTimes, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.flow_mods or self.writes or self.messages or self.answers or self.moves)

    def absorb(self, other: Output[Any]) -> None:
        """Add what `other` asks to this output (its reply is not ours)."""
        if other.flow_mods:
            self.flow_mods += other.flow_mods
        if other.writes:
            self.writes += other.writes
        if other.messages:
            self.messages += other.messages
        if other.answers:
            self.answers += other.answers
        if other.moves:
            self.moves += other.moves


_WRITE_RECORD, _WRITE_KIND, _WRITE_REASON, _WRITE_LEADER = slot_setters(
    Write, "record", "kind", "reason", "leader"
)
(
    _VIEW_ID, _VIEW_VM, _VIEW_SOURCE, _VIEW_DESTINATION, _VIEW_STATE, _VIEW_SEQ, _VIEW_REASON,
    _VIEW_TIMELINE, _VIEW_DOWNTIME,
) = slot_setters(
    MigrationView, "id", "vm", "source", "destination", "state", "seq", "reason", "timeline",
    "downtime",
)  # fmt: skip
