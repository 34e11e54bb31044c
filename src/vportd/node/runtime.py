"""The controller process: the sans-I/O core wired to OpenFlow, OVSDB and the clock.

Everything long-lived runs in one `asyncio.TaskGroup` (`Runtime.run`): the
OpenFlow server, one OVSDB monitor per remote, the effect executor, the timer
and LLDP. The core is called synchronously on the loop; its effects go, in
order, through one queue to the executor, which sends flow mods (with a barrier
before any peer message that follows them) and delivers peer messages.

Switch identity: a switch is named after its OVSDB bridge; an OpenFlow
connection whose datapath id OVSDB has not shown yet waits for it.

The vPort table follows OVSDB whether or not a bridge's OpenFlow channel is
up: a controller that (re)starts knows every VM before it reconciles the
first switch, so that reconciling one switch never deletes the flows of VMs
on a switch that has not connected yet (and never re-adds them a moment
later). Reconciling reads the switch's flows and sends only the difference.

LLDP (when `topology.lldp` is on): a probe leaves every infrastructure port
each `lldp_interval`; the flow `LLDP_PUNT` (ours, kept out of the compiler's
view) brings probes to the controller. A discovered link goes when its port
is deleted or goes down, or after `LLDP_MISSES` intervals without a probe.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Protocol

from vportd.core.controller import Controller
from vportd.core.coordinator import Timeouts
from vportd.core.errors import CoreError
from vportd.core.flow import CLASSIFY_TABLE, Flow, FlowCommand, FlowMod, Match, ToController
from vportd.core.membership import Membership
from vportd.core.messages import (
    Effect,
    EventKind,
    NotifyAnswer,
    PeerMessage,
    PortEvent,
    PortEventSync,
    Send,
    SyncComplete,
    SyncRefused,
    VPortSync,
)
from vportd.core.model import VPortRecord
from vportd.core.topology import Topology
from vportd.node.config import Config
from vportd.node.metrics import Metrics
from vportd.southbound import frames
from vportd.southbound.openflow.connection import SwitchConnection
from vportd.southbound.openflow.errors import FlowModsFailed, OpenFlowError, SwitchClosed
from vportd.southbound.openflow.incoming import PortInfo, PortReason
from vportd.southbound.openflow.server import OpenFlowServer
from vportd.southbound.openflow.wire import Role
from vportd.southbound.ovsdb.monitor import OvsdbMonitor
from vportd.southbound.ovsdb.snapshot import (
    EMPTY,
    Change,
    DeclaredLink,
    IfaceRow,
    Snapshot,
    declared_links,
    diff_ports,
)

# LLDP probes to the controller (802.1AB's nearest-bridge address; never forwarded).
COOKIE_LLDP = 0x05 << 56
PRIO_LLDP = 300
LLDP_PUNT = Flow(
    CLASSIFY_TABLE, PRIO_LLDP, Match(eth_dst="01:80:c2:00:00:0e"), (ToController(),), COOKIE_LLDP
)
LLDP_MISSES = 3  # a discovered link goes after this many intervals without a probe through it
LOOP_PROBE = 0.1  # seconds between looks at the event loop's lag
LOOP_STALL_WARNING = 0.25  # a lag worth a warning: a tenth of a short lease TTL
LOOP_STALL_STACK = 1.0  # a stall worth showing where the loop is

log = logging.getLogger("vportd.node.runtime")

_KIND = {
    Change.ADD: EventKind.ADD,
    Change.MODIFY: EventKind.MODIFY,
    Change.DELETE: EventKind.DELETE,
}


def port_events(change: Change, row: IfaceRow) -> list[PortEvent]:
    """The core's events for one VM port change; an add that is already up is add + modify."""
    assert row.mac is not None and row.ofport is not None
    ev = PortEvent(
        _KIND[change], row.bridge, row.ofport, row.mac, row.name, row.link_up,
        (), row.iface_id, row.vm_id,
    )  # fmt: skip
    if change is Change.ADD and row.link_up:
        return [ev, replace(ev, kind=EventKind.MODIFY)]
    return [ev]


class ClusterPort(Protocol):
    """The cluster adapter as the runtime sees it (`cluster.node`); absent with one controller."""

    async def run(self) -> None:
        """Keep the session, leadership, mastership and the table's copy going."""

    def deliver(self, send: Send) -> None:
        """Send a message to another controller (never blocks; ordered per peer)."""

    def persist(self, records: Sequence[tuple[VPortRecord, bool]]) -> None:
        """Record entries in the store of record; True: written as the leader (fenced so)."""

    def switches_changed(self) -> None:
        """The topology learnt or lost a switch: reconsider who masters what."""

    def generation(self, switch: str) -> int | None:
        """The generation id of this controller's mastership of `switch`, if it has one."""


@dataclass
class RuntimeStats:
    """What the runtime did to its switches: for tests, benchmarks and metrics."""

    flow_mods_sent: int = 0  # every flow mod written to a switch, of any kind
    foreign_flows_deleted: int = 0  # of those: deletes of flows vportd did not make
    reconciles: Counter[str] = field(default_factory=Counter)  # adoptions done, per switch
    flows_confirmed_at: float | None = None  # clock time of the last barrier-confirmed flow mods
    loop_stall_max: float = 0.0  # longest the event loop was seen late for a timer (s)


@dataclass
class Runtime:
    config: Config
    clock: Callable[[], float] = time.monotonic
    topology: Topology = field(default_factory=Topology)
    switches: dict[str, SwitchConnection] = field(default_factory=dict)
    answers: list[NotifyAnswer] = field(default_factory=list)
    stats: RuntimeStats = field(default_factory=RuntimeStats)
    cluster: ClusterPort | None = None  # None: one controller, its table in memory

    def __post_init__(self) -> None:
        me = self.config.controller.id
        m = self.config.migration
        timeouts = Timeouts(m.sync_timeout, m.activation_timeout, m.completion_timeout)
        solo = self.config.store.kind == "memory"
        membership = Membership([me], me if solo else None)
        self.core = Controller(me, self.topology, membership, timeouts, aware=m.aware)
        if solo:
            self.core.lead(self.clock())
        self.metrics = Metrics(me)
        # Every switch connected to us, mastered or not; `switches` holds the mastered ones.
        self.connected: dict[str, SwitchConnection] = {}
        self._waiters: dict[str, list[asyncio.Future[NotifyAnswer]]] = {}
        of = self.config.openflow
        host, _, port = of.listen.rpartition(":")
        self.openflow = OpenFlowServer(
            self, host, int(port), echo_interval=of.echo_interval, echo_misses=of.echo_misses,
            max_message=of.max_message, send_queue=of.send_queue, reply_timeout=of.reply_timeout,
        )  # fmt: skip
        self.monitors = [
            OvsdbMonitor(r, partial(self._on_snapshot, r)) for r in self.config.ovsdb.remotes
        ]
        # Per OVSDB server (one per hypervisor in production), what was fed of it and
        # whether that was all its monitor gave: each server is diffed on its own, so
        # an update costs what changed on it, not every row of every server.
        self._snapshots: dict[str, Snapshot] = {}
        self._whole: dict[str, bool] = {}
        # The VM port rows of the snapshot by (bridge, ofport), kept from each diff: a
        # port status must not scan every row (a boot storm brings thousands of each).
        self._vm_ports: dict[tuple[str, int], IfaceRow] = {}
        self._link_names: set[str] = set()  # interfaces that declare a link or are named by one
        self._waiting: dict[int, SwitchConnection] = {}
        self._declared: set[DeclaredLink] = set()
        # LLDP: the link each receiving port leads over, and when a probe last came through.
        self._discovered: dict[tuple[str, int], tuple[DeclaredLink, float]] = {}
        self._applied_links: set[DeclaredLink] = set()
        self._effects: asyncio.Queue[_Batch] = asyncio.Queue()
        self._held: _Batch | None = None  # taken from the queue while coalescing, next to run
        self._busy = False
        self._executing = False
        self.port_event_hook: Callable[[PortEvent], None] | None = None

    # -- life ------------------------------------------------------------
    async def run(self, *also: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run every long-lived task in one TaskGroup; `also` adds more (the API server)."""
        async with asyncio.TaskGroup() as tg:
            for start in also:
                tg.create_task(start())
            if self.cluster is not None:
                tg.create_task(self.cluster.run())
            tg.create_task(self.openflow.serve())
            for monitor in self.monitors:
                tg.create_task(monitor.run())
            tg.create_task(self._execute())
            tg.create_task(self._tick())
            tg.create_task(self._watch_loop())
            if self.config.topology.lldp:
                tg.create_task(self._lldp())

    def submit(self, effects: Sequence[Effect | _Adopt | _Done]) -> None:
        if not effects:
            return
        if self._executing:
            effects = self._sent_at_once(effects)
        if effects:
            self._effects.put_nowait(list(effects))

    def _sent_at_once(
        self, effects: Sequence[Effect | _Adopt | _Done]
    ) -> list[Effect | _Adopt | _Done]:
        """Deliver (and record) the peer copies among `effects` now; the rest is queued.

        A copy of an entry does not vouch for our flows, so it waits neither for
        them nor for the batches queued before it: in a boot storm, while
        ovs-vswitchd took seconds to confirm flow mods, peers learnt of the
        ports only as fast as those barriers came back. Answers to a vPort
        sync still go after the flows (the readiness barrier).
        """
        now = [e for e in effects if isinstance(e, Send) and not isinstance(e.message, SyncAnswer)]
        if not now:
            return list(effects)
        for send in now:
            self._deliver(send)
        self._persist(now)
        sent = {id(e) for e in now}
        return [e for e in effects if id(e) not in sent]

    async def carry_out(self, effects: Sequence[Effect]) -> None:
        """Submit effects and wait until they are carried out (flow mods confirmed)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.submit([*effects, _Done(done)])
        await done

    async def answer(self, migration_id: str, effects: Sequence[Effect]) -> NotifyAnswer:
        """Submit the effects of a notify and wait for the leader's answer to it."""
        waiter: asyncio.Future[NotifyAnswer] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(migration_id, []).append(waiter)
        try:
            self.submit(effects)
            return await waiter
        finally:
            waiters = self._waiters.get(migration_id, [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self._waiters.pop(migration_id, None)

    def receive(self, message: PeerMessage) -> None:
        """A message from a peer (by REST, or a record from the store's watch)."""
        try:
            self.submit(self.core.receive(message, self.now()))
        except CoreError as err:
            log.warning("message from a peer refused: %s", err.detail)

    def now(self) -> float:
        return self.clock()

    @property
    def idle(self) -> bool:
        """No effect (flow mods, adoption) is queued or being carried out."""
        return not self._busy and self._held is None and self._effects.empty()

    def mastered(self, switch: str) -> bool:
        """Whether this controller masters `switch` (with one controller: every switch)."""
        return self.cluster is None or self.core.cluster.masters.get(switch) == self.core.me

    # -- the core's inputs -----------------------------------------------
    def feed(self, ev: PortEvent) -> None:
        """A port event from OVS; only the switch's master feeds it to the core (claim 5)."""
        if not self.mastered(ev.ovs):
            return
        self.metrics.port_event(ev.kind.value)
        try:
            self.submit(self.core.port_event(ev, self.now()))
        except CoreError as err:
            log.warning("port %s on %s port %d: %s", ev.kind, ev.ovs, ev.port, err.detail)
        if self.port_event_hook is not None:
            self.port_event_hook(ev)

    # -- mastership (told by the cluster adapter) ----------------------------
    def gain(self, switch: str) -> None:
        """We master `switch` now: take its ports as ours, then adopt its flows."""
        self.core.cluster.masters[switch] = self.core.me  # (feed is gated on it)
        for ev in self._switch_ports(switch):
            self.feed(ev)
        try:
            self.submit(self.core.master_switch(switch, self.now()))
        except CoreError as err:
            log.warning("cannot master %s: %s", switch, err.detail)
            return
        conn = self.connected.get(switch)
        if conn is not None and not conn.closed:
            self.submit([_Adopt(switch, conn)])

    def lose(self, switch: str, master: str | None) -> None:
        """Another controller (or none yet) masters `switch`: leave its flows to it."""
        self.core.release_switch(switch, master)
        conn = self.switches.pop(switch, None)
        if conn is not None and not conn.closed:
            self.submit([_Adopt(switch, conn, Role.SLAVE)])
        log.info("%s: mastered by %s now", switch, master or "nobody")

    def _switch_ports(self, switch: str) -> list[PortEvent]:
        events: list[PortEvent] = []
        for row in self._rows():
            if row.bridge == switch and row.is_vm and row.ofport is not None:
                events += port_events(Change.ADD, row)
        return events

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            self.submit(self.core.tick(self.now()))

    async def _watch_loop(self) -> None:
        """Log when the event loop ran late: a stall starves the lease keepalive and the
        OpenFlow echoes, and is otherwise invisible (the loop cannot see its own lag).

        A watchdog thread also logs where the loop's thread is while a stall lasts:
        the lag alone does not say what held the loop."""
        loop = asyncio.get_running_loop()
        watchdog = _Watchdog(threading.get_ident(), loop.time())
        threading.Thread(target=watchdog.run, name="loop-watchdog", daemon=True).start()
        try:
            while True:
                before = loop.time()
                await asyncio.sleep(LOOP_PROBE)
                watchdog.beat = loop.time()
                late = max(watchdog.beat - before - LOOP_PROBE, 0.0)
                self.stats.loop_stall_max = max(self.stats.loop_stall_max, late)
                self.metrics.loop_lag(late)
                if late > LOOP_STALL_WARNING:
                    log.warning("event loop stalled %.2f s (a timer ran that late)", late)
        finally:
            watchdog.stop = True

    # -- OVSDB -----------------------------------------------------------
    def _on_snapshot(self, remote: str, snap: Snapshot) -> None:
        """Feed the VM port changes of every named bridge, connected or not (module doc)."""
        old, new = self._snapshots.get(remote, EMPTY), _named_only(snap)
        whole = new is snap
        if new.changed is not None and not (whole and self._whole.get(remote, False)):
            # "What changed" is relative to the monitor's previous snapshot: it holds
            # only if that one, and this one, were fed whole (not filtered).
            new = replace(new, changed=None)
        self._whole[remote] = whole
        self._snapshots[remote] = new
        self._learn_bridges(new)
        for change in diff_ports(old, new):
            self._index_vm_port(change.change, change.row)
            if self.mastered(change.row.bridge):  # (as `feed` would: skip making the events)
                for ev in port_events(change.change, change.row):
                    self.feed(ev)
        if self._links_may_change(new):
            self._declared = declared_links(self._snapshots.values())
            self._link_names = _link_names(self._snapshots.values())
        self._sync_links()

    def _rows(self) -> Iterator[IfaceRow]:
        """Every interface row of every OVSDB server."""
        for snap in self._snapshots.values():
            yield from snap.ifaces.values()

    def _index_vm_port(self, change: Change, row: IfaceRow) -> None:
        assert row.ofport is not None
        at = (row.bridge, row.ofport)
        if change is not Change.DELETE:
            self._vm_ports[at] = row
        elif self._vm_ports.get(at) is row:
            del self._vm_ports[at]

    def _links_may_change(self, new: Snapshot) -> bool:
        """Whether a changed interface declares, or is named by, a link (patch or hint)."""
        if new.changed is None:
            return True
        for name in new.changed:
            row = new.ifaces.get(name)
            if name in self._link_names or (row is not None and row.peer is not None):
                return True
        return False

    def _learn_bridges(self, snap: Snapshot) -> None:
        learnt = False
        for name, dpid in snap.bridges.items():
            if name not in self.topology or self.topology.dpid(name) != dpid:
                self.topology.add_switch(name, dpid)
                log.info("switch %s is datapath %016x", name, dpid)
                learnt = True
            conn = self._waiting.pop(dpid, None)
            if conn is not None and not conn.closed:
                self._connected(name, conn)
        if learnt and self.cluster is not None:
            self.cluster.switches_changed()

    # -- OpenFlow --------------------------------------------------------
    async def switch_connected(self, conn: SwitchConnection) -> None:
        assert conn.dpid is not None
        name = self._name_of(conn.dpid)
        if name is None:
            log.info("datapath %016x connected; waiting for OVSDB to name it", conn.dpid)
            self._waiting[conn.dpid] = conn
            return
        self._connected(name, conn)

    def _connected(self, name: str, conn: SwitchConnection) -> None:
        """Adopt the switch if we master it, else tell it we are a slave.

        Adopting needs a flow dump: queued with the effects, so that it keeps their order.
        """
        old = self.connected.get(name)
        if old is not None and old is not conn:
            old.close("replaced by a new connection from the same switch")
        self.connected[name] = conn
        self.submit([_Adopt(name, conn, Role.MASTER if self.mastered(name) else Role.SLAVE)])

    def _name_of(self, dpid: int) -> str | None:
        try:
            return self.topology.resolve(f"{dpid:x}")
        except CoreError:
            return None

    async def _adopt(self, name: str, conn: SwitchConnection) -> None:
        """Master the switch: read its flows, correct only the difference.

        The switch is registered only once its flows are read: until then,
        flow mods for it are left to this reconcile and topology changes do
        not resync it against what the compiler believed before.
        """
        await self._claim_role(name, conn, Role.MASTER)
        await conn.read_ports()  # as a slave it heard of no port change (OFPT_SET_ASYNC)
        dump = await conn.dump()
        self._register(name, conn)
        if dump.foreign:
            log.info("%s: removing %d flows vportd did not make", name, len(dump.foreign))
            self.stats.flow_mods_sent += len(dump.foreign)
            self.stats.foreign_flows_deleted += len(dump.foreign)
            await conn.delete_foreign(dump.foreign)
        held, punting = self._without_lldp_punt(dump.flows)
        self.core.flows.set_installed(name, held)
        mods = self.core.switch_connected(name)
        if self.config.topology.lldp and not punting:
            mods.append(FlowMod(name, FlowCommand.ADD, LLDP_PUNT))
        log.info("%s: reconciled, %d flows held, %d to correct", name, len(dump.flows), len(mods))
        await self._send_mods(mods)
        self.stats.reconciles[name] += 1

    async def _claim_role(self, name: str, conn: SwitchConnection, role: Role) -> None:
        """Tell the switch our role, with the generation id of the current mastership."""
        if self.cluster is None:
            return  # alone: the switch's default role (EQUAL) is all we need
        generation = self.cluster.generation(name)
        if generation is None:
            # Nobody's generation to send (a slave before any master): the switch's
            # default role, EQUAL, receives no flow mods from us anyway.
            return
        granted, gen = await conn.role_request(role, generation)
        log.info("%s: role %s (generation %d)", name, granted.name, gen)

    def _register(self, name: str, conn: SwitchConnection) -> None:
        self.switches[name] = conn
        if self.cluster is None:
            self.core.cluster.masters[name] = self.core.me

    def _without_lldp_punt(self, flows: list[Flow]) -> tuple[list[Flow], bool]:
        """The flows for the compiler, and whether our LLDP punt flow is among them.

        With LLDP off, a punt flow left from an earlier run stays in the
        compiler's view, which deletes it as a flow it does not want.
        """
        if not self.config.topology.lldp or LLDP_PUNT not in flows:
            return flows, False
        return [f for f in flows if f != LLDP_PUNT], True

    def switch_disconnected(self, conn: SwitchConnection, reason: str) -> None:
        for name, known in list(self.connected.items()):
            if known is conn:
                del self.connected[name]
                self.switches.pop(name, None)
                log.warning("switch %s disconnected: %s", name, reason)

    def port_status(self, conn: SwitchConnection, reason: PortReason, port: PortInfo) -> None:
        """Link changes arrive here first; OVSDB tells which VM the port is.

        A port that goes down or away also takes the links LLDP found through it.
        """
        name = self._conn_name(conn)
        if name is None:
            return
        if reason == "delete" or not port.link_up:
            self._forget_links_at(name, port.port_no)
        if reason != "modify":
            return
        row = self._vm_row(name, port.port_no)
        if row is not None:
            assert row.mac is not None
            self.feed(PortEvent(EventKind.MODIFY, name, port.port_no, row.mac, row.name,
                                port.link_up, (), row.iface_id, row.vm_id))  # fmt: skip

    def _vm_row(self, name: str, port: int) -> IfaceRow | None:
        """The OVSDB row of the VM port `port` of switch `name`, if it is one."""
        return self._vm_ports.get((name, port))

    def packet_in(self, conn: SwitchConnection, in_port: int, data: bytes) -> None:
        name = self._conn_name(conn)
        eth = frames.parse_ethernet(data)
        if name is None or eth is None:
            return
        if eth.ethertype == frames.ETH_LLDP:
            self._on_lldp(name, in_port, eth)
        elif frames.announces(eth):
            try:
                self.submit(self.core.vm_announced(name, in_port, eth.src, self.now()))
            except CoreError as err:
                log.debug("announcement on %s port %d ignored: %s", name, in_port, err.detail)

    def _conn_name(self, conn: SwitchConnection) -> str | None:
        return next((n for n, c in self.switches.items() if c is conn), None)

    # -- topology --------------------------------------------------------
    def _on_lldp(self, name: str, in_port: int, eth: frames.Ethernet) -> None:
        origin = frames.parse_lldp(eth.payload)
        if origin is None or self._vm_row(name, in_port) is not None:
            return  # not our probe, or from a VM's port: a VM does not make links
        peer = self._name_of(origin[0])
        if peer is None or peer == name:
            return
        ends = sorted([(name, in_port), (peer, origin[1])])
        link = DeclaredLink(ends[0][0], ends[0][1], ends[1][0], ends[1][1])
        known = self._discovered.get((name, in_port))
        self._discovered[(name, in_port)] = (link, self.now())
        if known is None or known[0] != link:
            log.info("LLDP: %s port %d leads to %s port %d", name, in_port, peer, origin[1])
            self._sync_links()

    def _forget_links_at(self, name: str, port: int) -> None:
        """A port went down or away: the links LLDP found through it are gone."""
        gone = [
            at for at, (link, _) in self._discovered.items()
            if (link.a, link.a_port) == (name, port) or (link.b, link.b_port) == (name, port)
        ]  # fmt: skip
        self._drop_discovered(gone, "its port went down or away")

    def _expire_discovered(self) -> None:
        limit = self.now() - LLDP_MISSES * self.config.topology.lldp_interval
        stale = [at for at, (_, seen) in self._discovered.items() if seen < limit]
        self._drop_discovered(stale, f"no probe through it for {LLDP_MISSES} intervals")

    def _drop_discovered(self, where: list[tuple[str, int]], why: str) -> None:
        for at in where:
            link, _ = self._discovered.pop(at)
            log.info("LLDP: link %s port %d - %s port %d gone: %s",
                     link.a, link.a_port, link.b, link.b_port, why)  # fmt: skip
        if where:
            self._sync_links()

    def _sync_links(self) -> None:
        static = {DeclaredLink(x.a, x.a_port, x.b, x.b_port) for x in self.config.topology.links}
        discovered = {link for link, _ in self._discovered.values()}
        wanted = {
            link for link in self._declared | discovered | static
            if link.a in self.topology and link.b in self.topology
        }  # fmt: skip
        if wanted == self._applied_links:
            return
        for link in self._applied_links - wanted:
            self.topology.remove_link(link.a, link.a_port)
        for link in wanted - self._applied_links:
            self.topology.add_link(link.a, link.a_port, link.b, link.b_port)
        self._applied_links = wanted
        log.info("topology: %d inter-switch links", len(wanted))
        for name in self.switches:
            self.submit(self.core.switch_connected(name))

    async def _lldp(self) -> None:
        while True:
            for name, conn in list(self.switches.items()):
                await self._probe(name, conn)
            self._expire_discovered()
            await asyncio.sleep(self.config.topology.lldp_interval)

    async def _probe(self, name: str, conn: SwitchConnection) -> None:
        vm_ports = {r.ofport for r in self._rows() if r.bridge == name and r.is_vm}
        for port in conn.ports.values():
            if port.reserved or port.port_no in vm_ports:
                continue
            assert conn.dpid is not None
            try:
                await conn.packet_out(port.port_no, frames.build_lldp(conn.dpid, port.port_no))
            except SwitchClosed:
                return

    # -- effects ---------------------------------------------------------
    async def _execute(self) -> None:
        self._executing = True  # (peers are reachable from now on: see `submit`)
        while True:
            batch = self._held or await self._effects.get()
            self._held = None
            self._busy = True
            try:
                if _plain(batch):
                    batch = self._coalesced(batch)
                await self._run_batch(batch)
            finally:
                self._busy = False

    def _coalesced(self, batch: _Batch) -> _Batch:
        """`batch` and the plain batches queued behind it, as one: all their flow mods first.

        One barrier per switch for a whole burst (a boot storm queues a batch per
        port event) instead of one per event. What waits for flows still comes
        after them; a batch that adopts a switch or is awaited ends the run.
        """
        mods = [e for e in batch if isinstance(e, FlowMod)]
        rest = [e for e in batch if not isinstance(e, FlowMod)]
        while len(mods) + len(rest) < COALESCE_MAX and not self._effects.empty():
            following = self._effects.get_nowait()
            if not _plain(following):
                self._held = following
                break
            mods += [e for e in following if isinstance(e, FlowMod)]
            rest += [e for e in following if not isinstance(e, FlowMod)]
        return [*mods, *rest]

    async def _run_batch(self, batch: _Batch) -> None:
        mods: list[FlowMod] = []
        for effect in batch:
            if isinstance(effect, FlowMod):
                mods.append(effect)
                continue
            if isinstance(effect, Send) and not isinstance(effect.message, SyncAnswer):
                # A peer's copy of an entry does not vouch for our flows: it need not
                # wait for them (only a sync's answer does: the readiness barrier).
                self._deliver(effect)
                continue
            await self._send_mods(mods)  # the readiness barrier: flows first
            mods = []
            if isinstance(effect, _Adopt):
                await self._adopt_guarded(effect)
            elif isinstance(effect, Send):
                self._deliver(effect)
            elif isinstance(effect, _Done):
                if not effect.future.done():
                    effect.future.set_result(None)
            else:
                self._answered(effect)
        await self._send_mods(mods)
        self._persist(batch)

    def _answered(self, answer: NotifyAnswer) -> None:
        self.answers.append(answer)
        del self.answers[: -self._KEEP_ANSWERS]
        for waiter in self._waiters.pop(answer.migration.id, []):
            if not waiter.done():
                waiter.set_result(answer)

    _KEEP_ANSWERS = 1000

    def _persist(self, batch: Iterable[object]) -> None:
        """Entries this batch told peers about go to the store of record too (once each)."""
        if self.cluster is None:
            return
        records: dict[str, tuple[VPortRecord, bool]] = {}
        for effect in batch:
            if not isinstance(effect, Send):
                continue
            msg = effect.message
            if isinstance(msg, PortEventSync) and msg.origin == self.core.me:
                records[msg.record.vm] = (msg.record, False)
            elif isinstance(msg, VPortSync) and msg.leader == self.core.me:
                records[msg.record.vm] = (msg.record, True)
        if records:
            self.cluster.persist(list(records.values()))

    async def _adopt_guarded(self, effect: _Adopt) -> None:
        """Adopt; a switch that fails it is dropped, to be adopted again when it reconnects."""
        try:
            if effect.role is Role.SLAVE:
                await self._claim_role(effect.name, effect.conn, Role.SLAVE)
                return
            if not self.mastered(effect.name):
                return  # mastership moved while this waited in the queue
            await self._adopt(effect.name, effect.conn)
        except SwitchClosed as err:
            log.warning("%s closed while being adopted: %s", effect.name, err)
        except (TimeoutError, OpenFlowError) as err:
            effect.conn.close(f"adoption failed: {err!r}")

    def _deliver(self, send: Send) -> None:
        if send.to == self.core.me:
            self.receive(send.message)
        elif self.cluster is not None:
            self.cluster.deliver(send)
        else:
            log.error("message for controller %s, but this one runs alone", send.to)

    async def _send_mods(self, mods: list[FlowMod]) -> None:
        by_switch: dict[str, list[FlowMod]] = {}
        for mod in _last_per_flow(mods):
            by_switch.setdefault(mod.switch, []).append(mod)
        # Every switch at once: one barrier round trip in all, not one per switch in turn
        # (a VM's flows touch every switch, and peers wait for them: claim 6's barrier).
        await asyncio.gather(*(self._send_switch_mods(n, b) for n, b in by_switch.items()))

    async def _send_switch_mods(self, name: str, batch: list[FlowMod]) -> None:
        conn = self.switches.get(name)
        if conn is None or conn.closed:
            return  # reconciled when it comes back
        self.stats.flow_mods_sent += len(batch)
        try:
            await conn.send_flow_mods(batch)
        except TimeoutError:
            # Not confirmed: what it holds is unknown. Reconnecting reconciles it.
            conn.close("flow mods not confirmed by a barrier in time")
        except SwitchClosed as err:
            log.warning("%s: flow mods not confirmed (%s); reconciled when it is back", name, err)
        except FlowModsFailed as err:
            log.error("%s: %s; reading back what it holds", name, err)
            await self._reread(name, conn)
        else:
            self.stats.flows_confirmed_at = self.now()

    async def _reread(self, name: str, conn: SwitchConnection) -> None:
        """After refused flow mods: believe what the switch holds, not what we sent.

        Not a re-send: a flow the switch refuses would be refused again. The
        next change that touches those flows tries them again.
        """
        try:
            dump = await conn.dump()
        except (SwitchClosed, TimeoutError, OpenFlowError) as err:
            conn.close(f"flows not readable after refused flow mods: {err!r}")
            return
        held, _ = self._without_lldp_punt(dump.flows)
        self.core.flows.set_installed(name, held)


@dataclass
class _Watchdog:
    """Logs the event loop thread's stack once per stall longer than LOOP_STALL_STACK."""

    thread: int
    beat: float  # loop.time() (time.monotonic) of the loop's last heartbeat
    stop: bool = False

    def run(self) -> None:
        reported = 0.0
        while not self.stop:
            time.sleep(LOOP_PROBE)
            beat = self.beat
            if time.monotonic() - beat < LOOP_STALL_STACK or beat == reported:
                continue
            reported = beat
            frame = sys._current_frames().get(self.thread)
            stack = "".join(traceback.format_stack(frame)[-12:]) if frame else "(gone)\n"
            log.warning("event loop stalled over %.1f s; it is in:\n%s", LOOP_STALL_STACK, stack)


def _last_per_flow(mods: list[FlowMod]) -> Iterable[FlowMod]:
    """Of the mods for one flow (switch, table, priority, match), the last: it alone decides
    what the switch holds after the barrier. A burst of VMs booting on a switch rewrites its
    flood flow once per VM; the switch needs the last one only (encoding them all grew
    with the square of the VMs per switch)."""
    last: dict[tuple[str, tuple[int, int, object]], FlowMod] = {}
    for mod in mods:
        last[(mod.switch, mod.flow.key)] = mod
    return mods if len(last) == len(mods) else last.values()


def _named_only(snap: Snapshot) -> Snapshot:
    """The snapshot without the ports of bridges that have no datapath id yet.

    Such a bridge is not a switch of the topology; once it has one, its VM
    ports show up in the next diff as adds.
    """
    if snap.named or all(row.bridge in snap.bridges for row in snap.ifaces.values()):
        return snap
    ifaces = {n: r for n, r in snap.ifaces.items() if r.bridge in snap.bridges}
    return Snapshot(snap.bridges, ifaces)


def _link_names(snaps: Iterable[Snapshot]) -> set[str]:
    names = set()
    for snap in snaps:
        for row in snap.ifaces.values():
            if row.peer is not None:
                names |= {row.name, row.peer.rpartition("/")[2]}
    return names


@dataclass(frozen=True, slots=True)
class _Adopt:
    """Adopt a switch (or tell it we are a slave), queued with the effects to keep their order."""

    name: str
    conn: SwitchConnection
    role: Role = Role.MASTER


@dataclass(frozen=True, slots=True)
class _Done:
    """Resolved when the executor reaches it: everything before it was carried out."""

    future: asyncio.Future[None]


_Batch = list[Effect | _Adopt | _Done]
SyncAnswer = SyncComplete | SyncRefused
COALESCE_MAX = 20_000  # effects per coalesced run: bounds the wait of what queues behind


def _plain(batch: _Batch) -> bool:
    """Only flow mods, peer messages and answers: may run merged with its neighbours."""
    return all(isinstance(e, FlowMod | Send | NotifyAnswer) for e in batch)
