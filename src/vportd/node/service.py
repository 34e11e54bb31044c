"""The API's `Service` on a real controller: the runtime (and its cluster node, if any).

Reads come from the controller's own table (claim 1: every controller holds
it all). A notify runs the core's coordinator and waits for its answer, which
comes once both controllers answered their vPort sync (claim 6). A vPort sync
from the leader is applied, its flow mods confirmed by a barrier, and only then
answered (the readiness barrier).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from vportd.api.service import ClusterView, Health, MemberView, Peer, SwitchView
from vportd.cluster.node import ClusterNode
from vportd.core.errors import NoController, NotLeader
from vportd.core.messages import (
    Effect,
    MigrationView,
    NotifyAnswer,
    PortEventSync,
    Send,
    SyncComplete,
    SyncRefused,
    VPortSync,
)
from vportd.core.model import VPortRecord, parse_mac
from vportd.core.wire import NotifyRequest
from vportd.node.metrics import Metrics
from vportd.node.runtime import Runtime

ANSWER_GRACE = 3.0  # beyond the sync timeout, before a notify gives up waiting


class ControllerService:
    def __init__(self, runtime: Runtime, me: Peer, node: ClusterNode | None = None) -> None:
        self.runtime = runtime
        self.node = node
        self._me = me

    @property
    def me(self) -> Peer:
        return self._me

    @property
    def metrics(self) -> Metrics:
        metrics, core = self.runtime.metrics, self.runtime.core
        metrics.table_size(len(core.table))
        held = [] if core.coordinator is None else core.coordinator.migrations.values()
        metrics.migration_states(Counter(str(m.state) for m in held))
        return metrics

    def leader(self) -> Peer | None:
        return self._me if self.node is None else self.node.leader()

    # -- reads -------------------------------------------------------------
    def vports(self) -> list[VPortRecord]:
        return sorted(self.runtime.core.table, key=lambda r: r.vm)

    def vport(self, vm: str) -> VPortRecord:
        return self.runtime.core.table.require(parse_mac(vm))

    def cluster(self) -> ClusterView:
        if self.node is not None:
            return self.node.view()
        switches = tuple(f"{self.runtime.topology.dpid(s):016x}" for s in self.runtime.switches)
        return ClusterView(self._me.id, (MemberView(self._me.id, self._me.api, True, switches),))

    def switches(self) -> list[SwitchView]:
        topology, masters = self.runtime.topology, self.runtime.core.cluster.masters
        return [
            self._switch(name, topology.dpid(name), masters.get(name))
            for name in sorted(topology.switches)
        ]

    def _switch(self, name: str, dpid: int, master: str | None) -> SwitchView:
        generation = None if self.node is None else self.node.generation(name)
        return SwitchView(name, dpid, master, name in self.runtime.connected, generation)

    def health(self) -> Health:
        core = self.runtime.core
        ok = self.node is None or self.node.in_session
        detail: dict[str, object] = {
            "controller": self._me.id,
            "leader": core.cluster.leader,
            "leading": core.coordinator is not None,
            "in_session": ok,
            "switches_connected": len(self.runtime.connected),
            "switches_mastered": len(self.runtime.switches),
            "vports": len(core.table),
            "loop_stall_max_s": round(self.runtime.stats.loop_stall_max, 3),
        }
        return Health(ok, detail)

    # -- the leader's part -------------------------------------------------
    async def notify(self, request: NotifyRequest) -> tuple[MigrationView, bool]:
        started = time.monotonic()
        core = self.runtime.core
        view, new, effects = core.notify(
            request.vm, request.source, request.destination, self.runtime.now()
        )
        if not new and view.state != "preparing":
            return view, False  # the same migration, answered already
        answer = await self._answer(view.id, effects)
        if answer.error is not None:
            self.runtime.metrics.migration(answer.migration.state)
            raise answer.error
        if new:
            self.runtime.metrics.handshake(time.monotonic() - started)
            self.runtime.metrics.migration(answer.migration.state)
        return answer.migration, new

    async def _answer(self, migration_id: str, effects: list[Effect]) -> NotifyAnswer:
        limit = self.runtime.config.migration.sync_timeout + ANSWER_GRACE
        try:
            return await asyncio.wait_for(self.runtime.answer(migration_id, effects), limit)
        except TimeoutError:
            raise NoController(f"migration {migration_id}: no answer in {limit:g}s") from None

    async def abort(self, migration_id: str) -> MigrationView:
        view, effects = self.runtime.core.abort(migration_id, self.runtime.now())
        self.runtime.submit(effects)
        return view

    def migrations(self) -> list[MigrationView]:
        coordinator = self.runtime.core.coordinator
        if coordinator is None:
            raise NotLeader(f"controller {self._me.id} is not the leader")
        return [m.view() for m in coordinator.migrations.values()]

    def migration(self, migration_id: str) -> MigrationView:
        return self.runtime.core.migration(migration_id).view()

    # -- east-west ---------------------------------------------------------
    async def vport_sync(self, msg: VPortSync) -> SyncComplete | SyncRefused | None:
        effects = self.runtime.core.receive(msg, self.runtime.now())
        answer: SyncComplete | SyncRefused | None = None
        rest: list[Effect] = []
        for effect in effects:
            if (
                isinstance(effect, Send)
                and effect.to == msg.leader
                and isinstance(effect.message, SyncComplete | SyncRefused)
            ):
                answer = effect.message  # answered by the response, not a request of ours
            else:
                rest.append(effect)
        await self.runtime.carry_out(rest)
        return answer

    async def port_events(self, msgs: list[PortEventSync]) -> None:
        for msg in msgs:
            self.runtime.receive(msg)
