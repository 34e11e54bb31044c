"""What crosses the core's boundary: port events in, peer messages both ways, effects out.

Port events come from a controller's own OVS; peer messages travel between
controllers (by REST, claim 7: see `wire`); effects are what the core asks its
adapters to do. Effects are ordered: an adapter sends a peer message only after
the flow mods before it are confirmed by a barrier, which is what makes a
"sync complete" mean "applied and pre-installed" (the readiness barrier).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from vportd.core.errors import CoreError
from vportd.core.flow import FlowMod
from vportd.core.model import VPortRecord, slot_setters


class EventKind(StrEnum):
    ADD = "add"
    MODIFY = "modify"
    DELETE = "delete"


class Reason(StrEnum):
    """Why a port event is synced; `vm-migration` is the patent's reason option."""

    PORT = "port"
    VM_MIGRATION = "vm-migration"
    VM_GONE = "vm-gone"
    VM_ACTIVATED = "vm-activated"
    VM_MOVED = "vm-moved"


@dataclass(frozen=True, slots=True)
class PortEvent:
    """A port add, modify or delete seen on one of this controller's OVS."""

    kind: EventKind
    ovs: str
    port: int
    mac: str
    port_name: str | None = None
    link_up: bool = False
    ips: tuple[str, ...] = ()
    iface_id: str | None = None
    vm_id: str | None = None


# The messages and effects every event makes have an `__init__` of their own
# that writes the slots directly (see `slot_setters`), same signature as the
# generated one.


@dataclass(frozen=True, slots=True, init=False)
class VPortSync:
    """The leader's vPort sync (claims 1 and 6); also carries rollbacks."""

    record: VPortRecord
    migration_id: str
    leader: str
    answer: bool

    def __init__(
        self, record: VPortRecord, migration_id: str, leader: str, answer: bool = True
    ) -> None:
        _SYNC_RECORD(self, record)
        _SYNC_MIGRATION_ID(self, migration_id)
        _SYNC_LEADER(self, leader)
        _SYNC_ANSWER(self, answer)


@dataclass(frozen=True, slots=True, init=False)
class SyncComplete:
    migration_id: str
    vm: str
    controller: str

    def __init__(self, migration_id: str, vm: str, controller: str) -> None:
        _DONE_MIGRATION_ID(self, migration_id)
        _DONE_VM(self, vm)
        _DONE_CONTROLLER(self, controller)


@dataclass(frozen=True, slots=True)
class SyncRefused:
    migration_id: str
    vm: str
    controller: str
    reason: str


@dataclass(frozen=True, slots=True, init=False)
class PortEventSync:
    """A port add/modify/delete synced to every other controller (claims 2, 3, 5)."""

    kind: EventKind
    reason: Reason
    record: VPortRecord
    origin: str

    def __init__(self, kind: EventKind, reason: Reason, record: VPortRecord, origin: str) -> None:
        _PES_KIND(self, kind)
        _PES_REASON(self, reason)
        _PES_RECORD(self, record)
        _PES_ORIGIN(self, origin)


PeerMessage = VPortSync | SyncComplete | SyncRefused | PortEventSync


@dataclass(frozen=True, slots=True, init=False)
class Send:
    to: str
    message: PeerMessage

    def __init__(self, to: str, message: PeerMessage) -> None:
        _SEND_TO(self, to)
        _SEND_MESSAGE(self, message)


@dataclass(frozen=True, slots=True, init=False)
class MigrationView:
    """A migration as the API shows it."""

    id: str
    vm: str
    source: str
    destination: str
    state: str
    seq: int
    reason: str | None

    def __init__(  # noqa: PLR0917 (positional like the generated __init__ it replaces)
        self,
        id: str,
        vm: str,
        source: str,
        destination: str,
        state: str,
        seq: int,
        reason: str | None = None,
    ) -> None:
        _VIEW_ID(self, id)
        _VIEW_VM(self, vm)
        _VIEW_SOURCE(self, source)
        _VIEW_DESTINATION(self, destination)
        _VIEW_STATE(self, state)
        _VIEW_SEQ(self, seq)
        _VIEW_REASON(self, reason)


@dataclass(frozen=True, slots=True)
class NotifyAnswer:
    """The leader's answer to the VMM: notify complete, or why not (claim 6)."""

    migration: MigrationView
    error: CoreError | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        return self.error is None


Effect = FlowMod | Send | NotifyAnswer

_SYNC_RECORD, _SYNC_MIGRATION_ID, _SYNC_LEADER, _SYNC_ANSWER = slot_setters(
    VPortSync, "record", "migration_id", "leader", "answer"
)
_DONE_MIGRATION_ID, _DONE_VM, _DONE_CONTROLLER = slot_setters(
    SyncComplete, "migration_id", "vm", "controller"
)
_PES_KIND, _PES_REASON, _PES_RECORD, _PES_ORIGIN = slot_setters(
    PortEventSync, "kind", "reason", "record", "origin"
)
_SEND_TO, _SEND_MESSAGE = slot_setters(Send, "to", "message")
(
    _VIEW_ID, _VIEW_VM, _VIEW_SOURCE, _VIEW_DESTINATION, _VIEW_STATE, _VIEW_SEQ, _VIEW_REASON,
) = slot_setters(
    MigrationView, "id", "vm", "source", "destination", "state", "seq", "reason"
)  # fmt: skip
