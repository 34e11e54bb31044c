"""The controller process: the sealed core wired to OpenFlow, OVSDB, the cluster and the clock.

Everything long-lived runs in one `asyncio.TaskGroup` (`Runtime.run`): the
OpenFlow server, the OVSDB monitors (in a cluster, only those of the
hypervisors this controller masters: `following`), the cluster node, the
executor, the timer, LLDP and the loop watchdog. Every input reaches the core
here, on the loop, with the time; each `Output` goes to the executor
(`executor`), which writes, sends and confirms it in order. The parts:
`feed` (OVSDB snapshots), `following` (which servers, and what the masters
publish of the others), `switches` (OpenFlow connections and adoption),
`discovery` (LLDP), `cluster.node` (etcd and the peers).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from functools import partial
from typing import Any

from vportd.cluster.node import ClusterNode
from vportd.cluster.writer import NotDurable
from vportd.core.controller import Controller
from vportd.core.coordinator import History, Timeouts
from vportd.core.errors import CoreError, NoController
from vportd.core.flaps import FlapLimit, MoveTimes
from vportd.core.flow import Flow, FlowMod
from vportd.core.messages import (
    DowntimeReport,
    EventKind,
    MigrationView,
    Notified,
    NotifyAnswer,
    NotifyRequest,
    Output,
    PortEvent,
    SyncAnswer,
    VPortSync,
)
from vportd.core.model import VPortRecord
from vportd.core.topology import Link
from vportd.node.addresses import split_address
from vportd.node.config import Config
from vportd.node.conflicts import ConflictWatch
from vportd.node.discovery import LinkDiscovery, probe
from vportd.node.executor import Executor
from vportd.node.feed import Fed, OvsdbFeed
from vportd.node.following import Following
from vportd.node.metrics import Metrics
from vportd.node.migrations import MigrationWatch
from vportd.node.pacing import Pacer, Unfed
from vportd.node.reach import Reachability
from vportd.node.switches import Switches
from vportd.node.tls import Contexts
from vportd.node.watchdog import watch_loop
from vportd.southbound import frames
from vportd.southbound.openflow.connection import SwitchConnection
from vportd.southbound.openflow.incoming import PortInfo, PortReason
from vportd.southbound.openflow.server import OpenFlowServer
from vportd.southbound.openflow.wire import Role
from vportd.southbound.ovsdb.monitor import OvsdbMonitor
from vportd.southbound.ovsdb.snapshot import Snapshot

log = logging.getLogger("vportd.runtime")

TICK = 0.5  # seconds between the coordinator's looks at its deadlines
EVENT_SLICE = 64  # OVSDB port events carried through the core per turn of the loop

AnswerWaiter = asyncio.Future[NotifyAnswer]


class Runtime:
    def __init__(
        self,
        config: Config,
        clock: Callable[[], float] = time.monotonic,
        *,
        wall: Callable[[], float] = time.time,  # unix time: what the store's times are in
        tls: Contexts | None = None,  # [tls]: OpenFlow and ssl: OVSDB remotes with these
    ) -> None:
        self.config = config
        self.clock = clock
        self.wall = wall  # (the store's times of moves: converted when written and read)
        # The core's times are this clock's; wall-clock (unix) time is a core time plus
        # this, taken once so that a timeline's steps keep their order and spacing.
        self.wall_offset = wall() - clock()
        me, m = config.controller.id, config.migration
        timeouts = Timeouts(m.sync_timeout, m.activation_timeout, m.completion_timeout)
        history = History(m.history_size, m.history_age)
        flaps = FlapLimit(m.flap_moves, m.flap_window)
        self.core = Controller(
            me, timeouts, aware=m.aware, history=history, flaps=flaps,
            segments=config.segments.segment_map(),
        )  # fmt: skip
        self.solo = config.store.kind == "memory"
        if self.solo:
            self.core.lead(clock())
        self.metrics = Metrics(me)
        self.migration_watch = MigrationWatch(self.core, self.metrics, clock)
        self.loop_stall_max = 0.0  # longest the event loop was seen late for a timer (s)
        self.switches = Switches(self, lldp=config.topology.lldp, clock=clock)
        self.feed = OvsdbFeed()
        self.discovery = LinkDiscovery(config.topology.lldp_interval)
        self.reach = Reachability(config.openflow.unreachable_after)
        self._handing: set[str] = set()  # mastered, unreachable from here, reached elsewhere
        self.pacer = Pacer()
        self._unfed = Unfed()
        self.conflicts = ConflictWatch(me)
        self.cluster: ClusterNode | None = None
        self.executor = Executor(self.switches, None, self._answered)
        self._waiters: dict[str, list[AnswerWaiter]] = {}
        self._links: set[Link] = set()
        of = config.openflow
        host, port = split_address(of.listen)  # ([::1]:6653: the socket takes ::1)
        self.openflow = OpenFlowServer(
            self, host, port, echo_interval=of.echo_interval, echo_misses=of.echo_misses,
            max_message=of.max_message, send_queue=of.send_queue, reply_timeout=of.reply_timeout,
            tls=None if tls is None else tls.openflow,
        )  # fmt: skip
        ovsdb_tls = None if tls is None else tls.ovsdb
        self.monitors = [
            OvsdbMonitor(r, partial(self._on_snapshot, r), pace=self.pacer.turn, tls=ovsdb_tls)
            for r in config.ovsdb.remotes
        ]
        self.following: Following | None = None  # in a cluster: sessions by mastership

    def attach(self, cluster: ClusterNode) -> None:
        """Run as a member of a cluster (store.kind = "etcd")."""
        self.cluster = cluster
        self.executor.cluster = cluster

    # -- life ------------------------------------------------------------
    async def run(self, *also: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run every long-lived task in one TaskGroup; `also` adds more (the API server)."""
        async with asyncio.TaskGroup() as tg:
            for start in also:
                tg.create_task(start())
            tg.create_task(self.executor.run())
            if self.cluster is not None:
                tg.create_task(self.cluster.run())
            tg.create_task(self.openflow.serve())
            if self.cluster is not None and self.config.ovsdb.follow == "mastered":
                self.following = Following(
                    self.monitors, self.core, self.feed, self.cluster,
                    gain=self._gain, learn=self._learn, apply=self._apply_fed,
                )  # fmt: skip
                tg.create_task(self.following.sessions.run())
            else:
                for monitor in self.monitors:
                    tg.create_task(monitor.run())
            tg.create_task(self._tick())
            tg.create_task(watch_loop(self._lagged))
            if self.config.topology.lldp:
                tg.create_task(self._lldp())

    @property
    def idle(self) -> bool:
        """No output (flow mods, adoption) is queued or being carried out."""
        return self.executor.idle

    def _submit(self, out: Output[Any], *, urgent: bool = False) -> None:
        """Carry an output out; `urgent`: the handshake's, ahead of bulk work (executor)."""
        if out:
            self.executor.submit(out, urgent=urgent)
        self.migration_watch.look()  # (an input may have moved a migration, output or not)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            now = self.clock()
            self._submit(self.core.tick(now), urgent=True)  # (timeouts: the VMM waits)
            self._look_at_switches(now)
            self._look_for_conflicts()

    def _look_at_switches(self, now: float) -> None:
        me, switches = self.core.me, self.core.switches()
        mastered = [s.name for s in switches if s.master == me]
        went, back = self.reach.look(
            [s.name for s in switches], mastered, self.switches.connected, now
        )
        unreachable = self.reach.unreachable(now)
        self._handing &= unreachable.intersection(mastered)  # (said again if it happens again)
        if self.cluster is not None:
            self.cluster.unreachable_are(unreachable)
        for switch in went:
            if self.cluster is not None and self.cluster.reachable_elsewhere(switch):
                # Not down: its master-to-be reaches it (looked at again next tick, as the
                # others may not have said yet that they lost it too).
                self.reach.down.discard(switch)
                if switch not in self._handing:
                    why = "%s: no OpenFlow channel for %g s, another controller reaches it"
                    log.warning(why + ": handing it over", switch, self.reach.after)
                self._handing.add(switch)
                continue
            self._handing.discard(switch)
            log.warning("%s: no OpenFlow channel for %g s: its VM ports count as down until "
                        "it is back", switch, self.reach.after)  # fmt: skip
            self._submit(self.core.switch_down(switch, now))
        for switch in back:
            log.info("%s: back; its VM ports as its OVSDB shows them", switch)
            self._submit(self.core.switch_back(switch, self.feed.ports_of(switch), now))

    def _look_for_conflicts(self) -> None:
        if not self.conflicts.look(self.core.conflicts()):
            return
        self.metrics.mac_conflicts(len(self.conflicts.confirmed))
        if self.cluster is not None:
            self.cluster.conflicts.post(self.conflicts.notices())

    def _lagged(self, late: float) -> None:
        self.loop_stall_max = max(self.loop_stall_max, late)
        self.metrics.loop_lag(late)

    # -- what the API asks ---------------------------------------------------
    def notify(
        self, request: NotifyRequest
    ) -> tuple[Notified, asyncio.Future[NotifyAnswer] | None]:
        """Claim 6 on the leader: the migration, and the answer to wait for (None: answered)."""
        out = self.core.notify(request, self.clock())
        notified = out.reply
        assert notified is not None
        self.migration_watch.notified(notified)
        waiter = None
        if not notified.answered:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(notified.migration.id, []).append(waiter)
        self._submit(out, urgent=True)
        return notified, waiter

    def forget(self, migration_id: str, waiter: AnswerWaiter) -> None:
        """A notify that stopped waiting for its answer."""
        waiters = self._waiters.get(migration_id, [])
        if waiter in waiters:
            waiters.remove(waiter)
        if not waiters:
            self._waiters.pop(migration_id, None)

    def _answered(self, answer: NotifyAnswer) -> None:
        self.migration_watch.answered(answer)
        for waiter in self._waiters.pop(answer.migration.id, []):
            if not waiter.done():
                waiter.set_result(answer)

    def abort(self, migration_id: str) -> MigrationView:
        out = self.core.abort(migration_id, self.clock())
        self._submit(out, urgent=True)
        assert out.reply is not None
        return out.reply

    def downtime_reported(self, migration_id: str, report: DowntimeReport) -> MigrationView:
        """A migration's downtime as a VMM or the lab measured it (on the leader)."""
        out = self.core.downtime_reported(migration_id, report)
        assert out.reply is not None
        for direction in report.directions:
            self.metrics.downtime(direction.gap_s)
        return out.reply

    async def vport_sync(self, msg: VPortSync) -> SyncAnswer:
        """Claims 1 and 6 on a peer: applied, flows confirmed, then answered."""
        out = self.core.vport_sync(msg, self.clock())
        try:
            await self.executor.carry_out(out, urgent=True)
        except NotDurable as err:  # a correction it made could not be written
            raise NoController(f"vPort sync of {msg.record.vm} not carried out: {err}") from None
        assert out.reply is not None
        return out.reply

    # -- OVSDB ---------------------------------------------------------------
    async def _on_snapshot(self, remote: str, snap: Snapshot) -> None:
        """An OVSDB server's new snapshot: its port events in slices, one per turn."""
        async with self.pacer.turn():
            fed = self.feed.snapshot(remote, snap, self.core.mastered)
            learnt = self._learn(fed.bridges)
            if fed.tunnels_changed or (learnt and self.feed.tunnels):
                self._submit(self.core.tunnels_are(self.feed.tunnels))
            if self.following is not None:
                self.following.snapshot_in(remote, fed, learnt)
        events = fed.events
        self._unfed.expect(events)
        try:
            for start in range(0, len(events), EVENT_SLICE):
                async with self.pacer.turn():
                    self._submit(self._feed_slice(events[start : start + EVENT_SLICE]))
        finally:
            self._unfed.forget(events)  # (all fed, unless the runtime is stopping)
        if learnt or fed.links_changed:
            self._sync_links()

    def _apply_fed(self, fed: Fed) -> None:
        """Tunnel endpoints or links changed (a server followed or not, published facts)."""
        if fed.tunnels_changed:
            self._submit(self.core.tunnels_are(self.feed.tunnels))
        if fed.links_changed:
            self._sync_links()

    def _feed_slice(self, events: list[PortEvent]) -> Output[None]:
        out: Output[None] = Output()
        for ev in events:
            out.absorb(self.port_event(ev))
            held = self._unfed.fed(ev)
            if held is not None:
                out.absorb(self.port_event(held))
        return out

    def _learn(self, bridges: dict[str, int]) -> bool:
        learnt = False
        for name, dpid in bridges.items():
            try:
                new = self.core.switch_seen(name, dpid)
            except CoreError as err:
                log.error("bridge %s: %s", name, err.detail)
                continue
            if new:
                log.info("switch %s is datapath %016x", name, dpid)
                learnt = True
                if self.solo:
                    self.gained(name)
            conn = self.switches.named(name, dpid)
            if conn is not None:
                self._connected(name, conn)
        if learnt and self.cluster is not None:
            self.cluster.switches_changed()
        return learnt

    def port_event(self, ev: PortEvent) -> Output[None]:
        """A port event of our own OVS, through the core (which ignores others' switches)."""
        self.metrics.port_event(ev.kind.value)
        try:
            return self.core.port_event(ev, self.clock())
        except CoreError as err:
            log.warning("port %s on %s port %d: %s", ev.kind, ev.ovs, ev.port, err.detail)
            return Output()

    # -- OpenFlow (the server's SwitchHandler) ---------------------------------
    async def switch_connected(self, conn: SwitchConnection) -> None:
        assert conn.dpid is not None
        name = self.switches.arrived(conn, self.core.switch_of(conn.dpid))
        if name is not None:
            self._connected(name, conn)

    def _connected(self, name: str, conn: SwitchConnection) -> None:
        role = Role.MASTER if self.core.mastered(name) else Role.SLAVE
        self.executor.step(partial(self.switches.take_role, name, conn, role))

    def switch_disconnected(self, conn: SwitchConnection, reason: str) -> None:
        self.switches.left(conn, reason)

    def port_status(self, conn: SwitchConnection, reason: PortReason, port: PortInfo) -> None:
        """Link changes arrive here first; OVSDB tells which VM the port is."""
        name = self.switches.name_of(conn)
        if name is None:
            return
        if (reason == "delete" or not port.link_up) and self.discovery.port_down(
            name, port.port_no
        ):
            self._sync_links()
        row = self.feed.vm_row(name, port.port_no)
        if reason != "modify" or row is None:
            return
        assert row.mac is not None
        ev = PortEvent(EventKind.MODIFY, name, port.port_no, row.mac, row.name,
                       port.link_up, (), row.iface_id, row.vm_id, row.segment)  # fmt: skip
        if self._unfed.hold(ev):
            return  # for after the port's OVSDB events
        self._submit(self.port_event(ev))

    def packet_in(self, conn: SwitchConnection, in_port: int, data: bytes) -> None:
        name = self.switches.name_of(conn)
        eth = frames.parse_ethernet(data)
        if name is None or eth is None:
            return
        if eth.ethertype == frames.ETH_LLDP:
            self._on_lldp(name, in_port, eth)
        elif frames.announces(eth):
            try:
                self._submit(self.core.vm_announced(name, in_port, eth.src, self.clock()))
            except CoreError as err:
                log.debug("announcement on %s port %d ignored: %s", name, in_port, err.detail)

    # -- the switches' adoption (switches.Node) ---------------------------------
    def mastered(self, switch: str) -> bool:
        return self.core.mastered(switch)

    def generation(self, switch: str) -> int | None:
        return None if self.cluster is None else self.cluster.generation(switch)

    def reconcile(self, switch: str, flows: list[Flow]) -> list[FlowMod]:
        return self.core.flows_read(switch, flows).flow_mods

    def believe(self, switch: str, flows: list[Flow]) -> None:
        self.core.flows_held(switch, flows)

    def gone(self, switch: str) -> None:
        self.core.switch_gone(switch)

    def role_lost(self, switch: str, conn: SwitchConnection) -> None:
        if not conn.closed:
            self._connected(switch, conn)

    # -- topology ------------------------------------------------------------
    def _on_lldp(self, name: str, in_port: int, eth: frames.Ethernet) -> None:
        origin = frames.parse_lldp(eth.payload)
        if origin is None or self.feed.vm_row(name, in_port) is not None:
            return  # not our probe, or from a VM's port: a VM does not make links
        peer = self.core.switch_of(origin[0])
        if peer is None or peer == name:
            return
        if self.discovery.heard((name, in_port), (peer, origin[1]), self.clock()):
            self._sync_links()

    async def _lldp(self) -> None:
        while True:
            # Not to VM ports, nor to an overlay host's tunnel (it has no one to reach).
            tunnels = {e.host: {e.port} for e in self.core.tunnels()}
            for name, conn in list(self.switches.adopted.items()):
                skip = self.feed.vm_ports(name) | tunnels.get(name, set())
                await probe(conn, skip.__contains__)
            if self.discovery.expire(self.clock()):
                self._sync_links()
            await asyncio.sleep(self.config.topology.lldp_interval)

    def _sync_links(self) -> None:
        static = {Link(x.a, x.a_port, x.b, x.b_port) for x in self.config.topology.links}
        links = self.feed.declared | self.discovery.links | static
        self._submit(self.core.links_are(links))
        if links != self._links:
            self._links = links
            log.info("topology: %d inter-switch links", len(links))

    # -- the cluster (cluster.node.NodeEvents) -----------------------------------
    def stored(self, records: Sequence[VPortRecord]) -> None:
        now, out = self.clock(), Output[None]()
        for rec in records:
            try:
                out.absorb(self.core.stored(rec, now))
            except CoreError as err:
                log.warning("record of %s from the store refused: %s", rec.vm, err.detail)
        self._submit(out)

    def reloaded(self, records: Sequence[VPortRecord]) -> None:
        now, out = self.clock(), Output[None]()
        for rec in records:
            log.info("entry of %s read back from the store", rec.vm)
            out.absorb(self.core.restored(rec, now))
        self._submit(out)

    def members_are(self, members: Sequence[str]) -> None:
        self.core.members_are(members)

    def leader_is(self, leader: str | None) -> None:
        self.core.leader_is(leader)
        self.metrics.leader_changed()

    def lead(self, moves: Sequence[MoveTimes]) -> None:
        self.core.lead(self.clock(), moves)
        log.info("%s leads the cluster (adopted %d open migrations)",
                 self.core.me, self.core.open_migrations())  # fmt: skip

    def unix_offset(self) -> float:
        return self.wall() - self.clock()

    def step_down(self) -> None:
        self.core.step_down()

    def gained(self, switch: str) -> None:
        """We master `switch` now: take its ports as ours (once its OVSDB server's first
        snapshot is in: the reconcile needs every port), then adopt its flows."""
        if self.following is None or self.following.gained(switch):
            self._gain(switch)

    def _gain(self, switch: str) -> None:
        try:
            out = self.core.gain_switch(switch, self.feed.ports_of(switch), self.clock())
        except CoreError as err:
            log.warning("cannot master %s: %s", switch, err.detail)
            return
        self._submit(out)
        conn = self.switches.connected.get(switch)
        if conn is not None and not conn.closed:
            self.executor.step(partial(self.switches.take_role, switch, conn, Role.MASTER))
        if self.following is not None:
            self.following.changed(switch)

    def master_is(self, switch: str, master: str | None) -> None:
        """Another controller (or none yet) masters `switch`: leave its flows to it."""
        self.core.master_is(switch, master)
        if self.following is not None:
            self.following.changed(switch)
        conn = self.switches.released(switch)
        if conn is not None:
            self.executor.step(partial(self.switches.take_role, switch, conn, Role.SLAVE))
            log.info("%s: mastered by %s now", switch, master or "nobody")

    def sync_answered(self, answer: SyncAnswer) -> None:
        self._submit(self.core.sync_answered(answer, self.clock()), urgent=True)

    def switch_names(self) -> list[str]:
        """The switches to master: with sessions by mastership, those a configured
        OVSDB server serves (as read), not those only published."""
        names = [s.name for s in self.core.switches()]
        return names if self.following is None else self.following.masterable(names)

    def switch_facts(self, published: dict[str, bytes]) -> None:
        if self.following is not None:
            self.following.published(published)

    def records_on(self, switch: str) -> list[VPortRecord]:
        return [rec for rec in self.core.vports() if rec.loc.ovs == switch]

    def peer_outcome(self, peer: str, outcome: str) -> None:
        self.metrics.peer_request(peer, outcome)
