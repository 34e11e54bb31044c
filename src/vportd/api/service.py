"""What the REST API asks of a controller: the one port between HTTP and the node.

The FastAPI app (`api.app`) only parses, authenticates, forwards and renders;
every answer comes from a `Service` (the node's `ControllerService`). Errors
are the core's typed errors (`CoreError`): the app gives each its status
(`api.errors`) and renders it as `{"error": code, "detail": text}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from vportd.cluster.members import ClusterView, Peer
from vportd.core.messages import (
    DowntimeReport,
    MigrationView,
    NotifyRequest,
    SyncAnswer,
    VPortSync,
)
from vportd.core.model import VPortRecord

# A controller's part in a switch: "master" (flows adopted), "adopting" (ours, flows not
# read yet), "slave" (another controller masters it), "equal" (nobody does yet),
# "disconnected" (no OpenFlow channel to this controller).
# The migrations it shows carry their timeline in wall-clock time (unix seconds).
SwitchRole = Literal["master", "adopting", "slave", "equal", "disconnected"]


@dataclass(frozen=True, slots=True)
class SwitchView:
    name: str
    dpid: int
    master: str | None  # the controller that masters it, None while nobody does
    connected: bool  # connected to *this* controller
    role: SwitchRole  # this controller's part in it
    generation: int | None  # the mastership's generation id (etcd revision), if any


@dataclass(frozen=True, slots=True)
class PortRef:
    ovs: str | None
    port: int | None
    port_name: str | None


@dataclass(frozen=True, slots=True)
class ConflictView:
    """A MAC up on `claimant` while its vPort is up on `owner` (which keeps it)."""

    vm: str
    owner: PortRef
    claimant: PortRef
    seen_by: str  # the controller that masters the claimant's switch


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    detail: dict[str, object]


class Service(Protocol):
    """One controller, as the API sees it."""

    @property
    def me(self) -> Peer: ...

    def leader(self) -> Peer | None:
        """The leader (possibly this controller), or None while there is none."""

    def metrics(self) -> tuple[bytes, str]:
        """The Prometheus exposition text and its content type."""

    # -- northbound, any controller --------------------------------------
    def vports(self) -> list[VPortRecord]:
        """Raises NotReady until the table is loaded."""

    def vport(self, vm: str) -> VPortRecord:
        """Raises InvalidMac, UnknownVM or NotReady."""

    def conflicts(self) -> list[ConflictView]:
        """Every duplicate MAC any controller of the cluster sees."""

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
        (a controller did not answer in time: rolled back), MigrationSuppressed
        (the VM moved too often lately).
        """

    async def abort(self, migration_id: str) -> MigrationView: ...

    def migrations(self, state: str | None = None, limit: int | None = None) -> list[MigrationView]:
        """Those in `state` (all if None), the newest `limit` (all if None), oldest first."""

    def migration(self, migration_id: str) -> MigrationView: ...

    def report_downtime(self, migration_id: str, report: DowntimeReport) -> MigrationView:
        """Keep what a VMM or the lab measured of a migration's traffic; UnknownMigration."""

    # -- east-west ---------------------------------------------------------
    async def vport_sync(self, msg: VPortSync) -> SyncAnswer:
        """Claims 1 and 6: apply the leader's entry (flows confirmed), then answer."""
