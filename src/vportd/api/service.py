"""What the REST API asks of a controller: the one port between HTTP and the runtime.

The FastAPI app (`api.app`) only parses, authenticates, forwards and renders;
every answer comes from a `Service`. The runtime implements it on a real
controller; tests may implement it on the in-process core.

Errors are the core's typed errors (`CoreError`, with `code` and `status`):
the app renders them as `{"error": code, "detail": text}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from vportd.core.messages import MigrationView, PortEventSync, SyncComplete, SyncRefused, VPortSync
from vportd.core.model import VPortRecord
from vportd.core.wire import NotifyRequest
from vportd.node.metrics import Metrics


@dataclass(frozen=True, slots=True)
class Peer:
    """Another controller (or this one) as the cluster knows it."""

    id: str
    api: str  # base URL, e.g. http://127.0.0.1:8081


@dataclass(frozen=True, slots=True)
class MemberView:
    id: str
    api: str
    healthy: bool
    switches: tuple[str, ...]  # datapath ids (16 hex digits) this member masters


@dataclass(frozen=True, slots=True)
class ClusterView:
    leader: str | None
    members: tuple[MemberView, ...]


@dataclass(frozen=True, slots=True)
class SwitchView:
    name: str
    dpid: int
    master: str | None  # the controller that masters it, None while nobody does
    connected: bool  # connected to *this* controller
    generation: int | None  # the mastership's generation id (etcd revision), if any


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    detail: dict[str, object]


class Service(Protocol):
    """One controller, as the API sees it."""

    @property
    def me(self) -> Peer: ...

    @property
    def metrics(self) -> Metrics: ...

    def leader(self) -> Peer | None:
        """The leader (possibly this controller), or None while there is none."""

    # -- northbound, any controller --------------------------------------
    def vports(self) -> list[VPortRecord]: ...

    def vport(self, vm: str) -> VPortRecord:
        """Raises InvalidMac or UnknownVM."""

    def cluster(self) -> ClusterView: ...

    def switches(self) -> list[SwitchView]: ...

    def health(self) -> Health: ...

    # -- northbound, the leader only (NotLeader otherwise: the app forwards) --
    async def notify(self, request: NotifyRequest) -> tuple[MigrationView, bool]:
        """Claim 6: start (or find again) a migration and wait for notify complete.

        Returns the migration once both controllers answered sync complete and
        whether it is new (201) or the same migration again (200). Raises
        CoreError: NotLeader, UnknownVM, UnknownSwitch, NotOnSource,
        AlreadyMigrating, MigrationConflict (refused or rolled back), NoController
        (a controller did not answer in time: rolled back).
        """

    async def abort(self, migration_id: str) -> MigrationView: ...

    def migrations(self) -> list[MigrationView]: ...

    def migration(self, migration_id: str) -> MigrationView: ...

    # -- east-west ---------------------------------------------------------
    async def vport_sync(self, msg: VPortSync) -> SyncComplete | SyncRefused | None:
        """Claims 1 and 6: apply the leader's entry (flows confirmed), then answer.

        None when the leader asked for no answer (a rollback or completion)."""

    async def port_events(self, msgs: list[PortEventSync]) -> None:
        """Claims 2, 3, 5: apply peers' port add/modify/delete syncs, in order."""
