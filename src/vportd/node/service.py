"""The API's `Service` on a real controller: the runtime, and its cluster node if any.

Reads come from the core's queries (claim 1: every controller holds the whole
table); until a member of a cluster has loaded the table from the store, they
answer 503 `not-ready` rather than an empty table. A notify runs on the
leader's core and waits for its answer, which comes once both controllers
answered their vPort sync (claim 6). A vPort sync is applied, its flow mods
confirmed by a barrier, and only then answered (the readiness barrier).
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from vportd.api.errors import ApiError
from vportd.api.service import ConflictView, Health, SwitchRole, SwitchView
from vportd.cluster.members import ClusterView, MemberView, Peer
from vportd.cluster.node import ClusterNode
from vportd.core.errors import MigrationSuppressed, NoController
from vportd.core.messages import (
    DowntimeReport,
    MigrationView,
    NotifyRequest,
    SyncAnswer,
    VPortSync,
)
from vportd.core.model import VPortRecord
from vportd.node.conflicts import decode
from vportd.node.metrics import Scrape
from vportd.node.runtime import Runtime

log = logging.getLogger("vportd.service")

ANSWER_GRACE = 3.0  # beyond the sync timeout, before a notify gives up waiting
HTTP_UNAVAILABLE = 503


class ControllerService:
    def __init__(self, runtime: Runtime, me: Peer, node: ClusterNode | None = None) -> None:
        self.runtime = runtime
        self.core = runtime.core
        self.node = node
        self._me = me

    @property
    def me(self) -> Peer:
        return self._me

    def metrics(self) -> tuple[bytes, str]:
        core, runtime = self.core, self.runtime
        switches = runtime.switches
        runtime.metrics.scraped(Scrape(
            core.vport_count(), core.migration_counts(), core.leading, len(core.members),
            len(switches.connected), len(switches.adopted), switches.stats.flow_mods_sent,
            sum(m.live for m in runtime.monitors),
        ))  # fmt: skip
        return runtime.metrics.render()

    def leader(self) -> Peer | None:
        return self._me if self.node is None else self.node.leader()

    # -- reads -------------------------------------------------------------
    def _ready(self) -> None:
        if self.node is not None and not self.node.loaded:
            raise ApiError(
                HTTP_UNAVAILABLE, "not-ready",
                f"controller {self._me.id} has not loaded the vPort table from the store yet",
            )  # fmt: skip

    def vports(self) -> list[VPortRecord]:
        self._ready()
        return self.core.vports()

    def vport(self, vm: str) -> VPortRecord:
        self._ready()
        return self.core.vport(vm)

    def conflicts(self) -> list[ConflictView]:
        if self.node is None:
            return list(self.runtime.conflicts.confirmed.values())
        posted = (decode(value) for value in self.node.conflicts.read.values())
        return [view for view in posted if view is not None]

    def cluster(self) -> ClusterView:
        if self.node is None:
            mine = [s for s in self.core.switches() if s.master == self._me.id]
            dpids = tuple(f"{s.dpid:016x}" for s in mine)
            me = MemberView(self._me.id, self._me.api, True, dpids, tuple(s.name for s in mine))
            return ClusterView(self._me.id, (me,))
        node = self.node
        ids = sorted(set(node.members) | {self._me.id})
        members = tuple(self._member(node, i) for i in ids)
        session = node.in_session
        stale = None if session else node.stale_since
        return ClusterView(node.leader_id, members, session=session, stale_since=stale)

    def _member(self, node: ClusterNode, member: str) -> MemberView:
        peer = node.members.get(member, self._me if member == self._me.id else None)
        switches = sorted(
            (self.core.dpid(s), s)
            for s, (holder, _) in node.masters.items()
            if holder == member and self.core.knows_switch(s)
        )
        api = peer.api if peer is not None else ""
        dpids = tuple(f"{dpid:016x}" for dpid, _ in switches)
        names = tuple(name for _, name in switches)
        return MemberView(member, api, member in node.members, dpids, names)

    def switches(self) -> list[SwitchView]:
        connected = self.runtime.switches.connected
        return [
            SwitchView(
                s.name, s.dpid, s.master, s.name in connected, self._role(s.name, s.master),
                None if self.node is None else self.node.generation(s.name),
            )
            for s in self.core.switches()
        ]  # fmt: skip

    def _role(self, switch: str, master: str | None) -> SwitchRole:
        """This controller's part in `switch` (`SwitchView.role`)."""
        registry = self.runtime.switches
        if switch not in registry.connected:
            return "disconnected"
        if switch in registry.adopted:
            return "master"
        if master == self._me.id:
            return "adopting"
        return "equal" if master is None else "slave"

    def health(self) -> Health:
        core, runtime = self.core, self.runtime
        ok = self.node is None or self.node.in_session
        detail: dict[str, object] = {
            "controller": self._me.id,
            "leader": core.leader,
            "leading": core.leading,
            "in_session": ok,
            "switches_connected": len(runtime.switches.connected),
            "switches_mastered": len(runtime.switches.adopted),
            "vports": core.vport_count(),
            "loop_stall_max_s": round(runtime.loop_stall_max, 3),
        }
        return Health(ok, detail)

    # -- the leader's part -------------------------------------------------
    async def notify(self, request: NotifyRequest) -> tuple[MigrationView, bool]:
        try:
            notified, waiter = self.runtime.notify(request)
        except MigrationSuppressed as err:
            self._suppressed(err)
            raise
        if waiter is None:
            return self._wall(notified.migration), False  # the same one, answered already
        mid = notified.migration.id
        limit = self.runtime.config.migration.sync_timeout + ANSWER_GRACE
        try:
            answer = await asyncio.wait_for(waiter, limit)
        except TimeoutError:
            raise NoController(f"migration {mid}: no answer in {limit:g}s") from None
        finally:
            self.runtime.forget(mid, waiter)
        if answer.error is not None:
            raise answer.error
        return self._wall(answer.migration), notified.new

    def _suppressed(self, err: MigrationSuppressed) -> None:
        when = datetime.now(UTC) + timedelta(seconds=err.retry_after)
        log.warning(
            "notify of VM %s refused (flap damping): it moved %d time(s) in the last %g s; "
            "it may move again at %s (in %d s)",
            err.vm, err.moves, self.runtime.config.migration.flap_window,
            when.strftime("%Y-%m-%d %H:%M:%S UTC"), math.ceil(err.retry_after),
        )  # fmt: skip
        self.runtime.metrics.suppressed()

    async def abort(self, migration_id: str) -> MigrationView:
        return self._wall(self.runtime.abort(migration_id))

    def migrations(self, state: str | None = None, limit: int | None = None) -> list[MigrationView]:
        return [self._wall(view) for view in self.core.migrations(state, limit)]

    def migration(self, migration_id: str) -> MigrationView:
        return self._wall(self.core.migration(migration_id))

    def report_downtime(self, migration_id: str, report: DowntimeReport) -> MigrationView:
        return self._wall(self.runtime.downtime_reported(migration_id, report))

    def _wall(self, view: MigrationView) -> MigrationView:
        """The view with its timeline in wall-clock time (the core's is the runtime's clock)."""
        offset = self.runtime.wall_offset
        return replace(view, timeline=tuple((step, at + offset) for step, at in view.timeline))

    # -- east-west ---------------------------------------------------------
    async def vport_sync(self, msg: VPortSync) -> SyncAnswer:
        return await self.runtime.vport_sync(msg)
