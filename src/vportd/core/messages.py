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
from vportd.core.flows import FlowMod
from vportd.core.model import VPortRecord


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


@dataclass(frozen=True, slots=True)
class VPortSync:
    """The leader's vPort sync (claims 1 and 6); also carries rollbacks."""

    record: VPortRecord
    migration_id: str
    leader: str
    answer: bool = True


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


@dataclass(frozen=True, slots=True)
class PortEventSync:
    """A port add/modify/delete synced to every other controller (claims 2, 3, 5)."""

    kind: EventKind
    reason: Reason
    record: VPortRecord
    origin: str


PeerMessage = VPortSync | SyncComplete | SyncRefused | PortEventSync


@dataclass(frozen=True, slots=True)
class Send:
    to: str
    message: PeerMessage


@dataclass(frozen=True, slots=True)
class MigrationView:
    """A migration as the API shows it."""

    id: str
    vm: str
    source: str
    destination: str
    state: str
    seq: int
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class NotifyAnswer:
    """The leader's answer to the VMM: notify complete, or why not (claim 6)."""

    migration: MigrationView
    error: CoreError | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        return self.error is None


Effect = FlowMod | Send | NotifyAnswer
