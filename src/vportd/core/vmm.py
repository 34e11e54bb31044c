"""The VMM's half of the handshake (claims 8 and 9), sans I/O.

A VMM (libvirt hook, Nova, `vportctl migrate`) drives one `VmmMigration`:
it sends the notify, and only when the leader answers notify complete does it
start the live migration. If the migration fails afterwards it asks for an
abort, so that the cluster rolls the VM back to the source.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from vportd.core.errors import InvalidRequest
from vportd.core.messages import NotifyAnswer, NotifyRequest
from vportd.core.model import parse_mac


class VmmState(StrEnum):
    IDLE = "idle"
    NOTIFYING = "notifying"
    MIGRATING = "migrating"
    REFUSED = "refused"
    ABORTING = "aborting"


@dataclass(frozen=True, slots=True)
class SendNotify:
    request: NotifyRequest


@dataclass(frozen=True, slots=True)
class StartLiveMigration:
    migration_id: str


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str


@dataclass(frozen=True, slots=True)
class SendAbort:
    migration_id: str


VmmEffect = SendNotify | StartLiveMigration | GiveUp | SendAbort


class VmmMigration:
    def __init__(self, vm: str, source: str, destination: str) -> None:
        self.request = NotifyRequest(parse_mac(vm), source, destination)
        self.state = VmmState.IDLE
        self.migration_id: str | None = None

    def start(self) -> list[VmmEffect]:
        """Claim 8: tell the leader first, naming the VM, its source and destination."""
        if self.state is not VmmState.IDLE:
            raise InvalidRequest(f"migration already {self.state}")
        self.state = VmmState.NOTIFYING
        return [SendNotify(self.request)]

    def answered(self, answer: NotifyAnswer) -> list[VmmEffect]:
        """Claim 8: move the VM only once the answer says sync complete."""
        if self.state is not VmmState.NOTIFYING:
            return []
        if answer.error is not None:
            self.state = VmmState.REFUSED
            return [GiveUp(f"{answer.error.code}: {answer.error.detail}")]
        self.state = VmmState.MIGRATING
        self.migration_id = answer.migration.id
        return [StartLiveMigration(answer.migration.id)]

    def failed(self) -> list[VmmEffect]:
        """The hypervisor's migration failed: have the cluster roll back."""
        if self.state is not VmmState.MIGRATING or self.migration_id is None:
            return []
        self.state = VmmState.ABORTING
        return [SendAbort(self.migration_id)]
