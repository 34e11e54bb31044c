"""One controller's part in the cluster: its etcd session, leadership, mastership,
its copy of the vPort table, and the east-west transport.

Session: one lease (`store.lease_ttl`) carries this controller's member key, the
leader key while it leads and the keys of the switches it masters. If the lease
is lost (etcd out of reach for longer than the TTL) or a fenced write fails,
the session ends: the controller stops leading, lets go of its switches (their
flows stay in OVS, forwarding goes on) and starts a new session.

The table's copy (claim 1) does not depend on the session: a watch on the
records keeps it, resuming from its last revision after any reconnect and
reloading everything when that revision was compacted. Leading waits for the
first full load, so that a new leader adopts every open migration.

Mastership: each switch's master is chosen by rendezvous hashing over the live
members, so that masters spread and move only when members come or go; the
chosen one claims the switch's key (the key's create revision is the
OpenFlow generation id), a master that is no longer the chosen one hands the
switch over, and a switch left without a master for two TTLs is claimed by
whoever sees it.

East-west: messages to a peer leave in order through that peer's outbox;
port-event syncs queued together travel as one request. A peer that does not
answer loses the message: the records are in etcd too, and a migration whose
sync is not answered times out and rolls back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from vportd.api.service import ClusterView, MemberView, Peer
from vportd.cluster.peers import PeerClient, PeerUnreachable
from vportd.cluster.store import KV, Fence, Fenced, LeaseLost, Store, StoreError
from vportd.core.errors import InvalidRequest
from vportd.core.messages import (
    EventKind,
    PeerMessage,
    PortEventSync,
    Reason,
    Send,
    SyncComplete,
    SyncRefused,
    VPortSync,
)
from vportd.core.model import VPortRecord
from vportd.core.table import VPortTable
from vportd.core.wire import record_from_json, record_to_json
from vportd.node.runtime import Runtime

log = logging.getLogger("vportd.cluster")

STORE = "store"  # the origin of records that came from etcd's watch
BATCH = 2000  # port-event syncs per east-west request, at most
RETRY = 0.5  # seconds between attempts to reach etcd again


def chosen_master(switch: str, members: Sequence[str]) -> str | None:
    """Rendezvous hashing: the member that should master `switch`."""
    if not members:
        return None
    return max(members, key=lambda m: hashlib.sha256(f"{switch}/{m}".encode()).digest())


@dataclass
class _Outbox:
    """Messages for one peer, in order; a sender task drains it."""

    messages: deque[PeerMessage] = field(default_factory=deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def put(self, msg: PeerMessage) -> None:
        self.messages.append(msg)
        self.ready.set()

    async def next_batch(self) -> list[PeerMessage]:
        """The next message, or the run of port-event syncs at the head (at most BATCH)."""
        while not self.messages:
            self.ready.clear()
            await self.ready.wait()
        first = self.messages.popleft()
        if not isinstance(first, PortEventSync):
            return [first]
        batch = [first]
        while self.messages and len(batch) < BATCH:
            following = self.messages[0]
            if not isinstance(following, PortEventSync):
                break
            batch.append(following)
            self.messages.popleft()
        return latest_entries(batch)


def latest_entries(batch: Sequence[PortEventSync]) -> list[PeerMessage]:
    """`batch` without the plain port changes that a later sync of the same VM replaces.

    A receiver merges only a sync's entry, and a later entry from the same
    controller's table holds all that an earlier one did (its versions only
    grow), so the later one alone leaves the receiver's table as both would:
    the store's watch, too, brings only the latest. A boot storm's port is an
    add (down) and then a modify (up), claim 5; sent as one, each peer parses,
    merges and compiles it once. Syncs of a migration always go, each one.
    """
    kept: list[PeerMessage] = []
    later: set[tuple[str, str]] = set()
    for msg in reversed(batch):
        key = (msg.origin, msg.record.vm)
        if msg.reason is not Reason.PORT or key not in later:
            kept.append(msg)
        later.add(key)
    kept.reverse()
    return kept


class ClusterNode:
    """The `ClusterPort` of a runtime in a cluster (store.kind = "etcd")."""

    def __init__(self, runtime: Runtime, store: Store, client: PeerClient, me: Peer) -> None:
        self.runtime = runtime
        self.store = store
        self.client = client
        self.me = me
        self.ttl = runtime.config.store.lease_ttl
        self.members: dict[str, Peer] = {}
        self.leader_id: str | None = None
        self.leader_api: str | None = None
        self.masters: dict[str, tuple[str, int]] = {}  # switch -> (controller, generation)
        self._mine: dict[str, Fence] = {}
        self._unmastered_since: dict[str, float] = {}
        self._member: Fence | None = None
        self._leading: Fence | None = None
        self._pending: dict[str, tuple[VPortRecord, bool]] = {}
        self._written = asyncio.Event()  # something waits in _pending
        self._dirty = asyncio.Event()  # mastership to reconsider
        self._synced = asyncio.Event()  # the table holds every record of the store
        self._outboxes: dict[str, _Outbox] = {}
        self._tg: asyncio.TaskGroup | None = None

    # -- ClusterPort -------------------------------------------------------
    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            tg.create_task(self.store.follow("vports/", self._records_reset, self._records_changed))
            tg.create_task(
                self.store.follow("members/", self._members_reset, self._members_changed)
            )
            tg.create_task(
                self.store.follow("masters/", self._masters_reset, self._masters_changed)
            )
            tg.create_task(self.store.follow("leader", self._leader_reset, self._leader_changed))
            tg.create_task(self._sessions())

    def deliver(self, send: Send) -> None:
        box = self._outboxes.get(send.to)
        if box is None:
            assert self._tg is not None, "deliver before run"
            box = self._outboxes[send.to] = _Outbox()
            self._tg.create_task(self._sender(send.to, box))
        box.put(send.message)

    def persist(self, records: Sequence[tuple[VPortRecord, bool]]) -> None:
        for rec, by_leader in records:
            held = self._pending.get(rec.vm)
            merged = rec if held is None else held[0].merge(rec)
            self._pending[rec.vm] = (merged, by_leader or (held is not None and held[1]))
        self._written.set()

    def switches_changed(self) -> None:
        self._dirty.set()

    def generation(self, switch: str) -> int | None:
        mine = self._mine.get(switch)
        if mine is not None:
            return mine.revision
        held = self.masters.get(switch)
        return None if held is None else held[1]

    # -- what the API shows ------------------------------------------------
    def leader(self) -> Peer | None:
        if self.leader_id is None or self.leader_api is None:
            return None
        return Peer(self.leader_id, self.leader_api)

    def view(self) -> ClusterView:
        ids = sorted(set(self.members) | {self.me.id})
        return ClusterView(self.leader_id, tuple(self._member_view(i) for i in ids))

    def _member_view(self, member: str) -> MemberView:
        peer = self.members.get(member, self.me if member == self.me.id else None)
        switches = sorted(
            f"{self.runtime.topology.dpid(s):016x}"
            for s, (holder, _) in self.masters.items()
            if holder == member and s in self.runtime.topology
        )
        api = peer.api if peer is not None else ""
        return MemberView(member, api, member in self.members, tuple(switches))

    @property
    def in_session(self) -> bool:
        return self._member is not None and self._synced.is_set()

    # -- sessions ----------------------------------------------------------
    async def _sessions(self) -> None:
        while True:
            try:
                why = await self._session()
            except StoreError as err:  # (joining: lease grant or register)
                why = err
            log.warning("session ended: %s; starting a new one", why)
            self._end_session()
            await asyncio.sleep(RETRY)

    async def _session(self) -> StoreError:
        lease = await self.store.grant_lease()
        info = {
            "id": self.me.id,
            "api": self.me.api,
            "openflow": self.runtime.config.openflow.listen,
        }
        self._member = await self.store.register(self.me.id, info, lease)
        log.info("joined the cluster as %s (lease %x, ttl %d s)", self.me.id, lease, self.ttl)
        ended: asyncio.Future[StoreError] = asyncio.get_running_loop().create_future()
        async with asyncio.TaskGroup() as tg:
            parts = [self.store.keep_alive(lease), self._lead(lease), self._mastership(lease),
                     self._writer()]  # fmt: skip
            tasks = [tg.create_task(_until_lost(part, ended)) for part in parts]
            why = await ended
            for task in tasks:
                task.cancel()
        return why

    def _end_session(self) -> None:
        if self._leading is not None:
            log.warning("%s stops leading", self.me.id)
        self._leading = None
        self._member = None
        self.runtime.core.step_down()
        for switch in list(self._mine):
            del self._mine[switch]
            self.masters.pop(switch, None)
            self.runtime.lose(switch, None)
        # A deposed leader's pending writes must not outlive its leadership.
        self._pending = {vm: p for vm, p in self._pending.items() if not p[1]}

    # -- leadership --------------------------------------------------------
    async def _lead(self, lease: int) -> None:
        await self._synced.wait()
        info = {"id": self.me.id, "api": self.me.api}
        self._leading = await self.store.campaign(self.me.id, info, lease)
        self.runtime.core.lead(self.runtime.now())
        adopted = (
            len(self.runtime.core.coordinator.active()) if self.runtime.core.coordinator else 0
        )
        log.info("%s leads the cluster (adopted %d open migrations)", self.me.id, adopted)

    def _leader_reset(self, kvs: dict[str, KV], revision: int) -> None:
        self._leader_changed(list(kvs.values()), revision)
        if not kvs:
            self._set_leader(None, None)

    def _leader_changed(self, kvs: list[KV], revision: int) -> None:
        for kv in kvs:
            if kv.key != "leader":
                continue
            if kv.value is None:
                self._set_leader(None, None)
                continue
            data = _json(kv)
            self._set_leader(str(data.get("id")), str(data.get("api")))

    def _set_leader(self, leader: str | None, api: str | None) -> None:
        if leader == self.leader_id:
            return
        self.leader_id, self.leader_api = leader, api
        self.runtime.core.cluster.leader = leader
        self.runtime.metrics.leader_changed()
        log.info("leader: %s", leader or "none")
        if leader != self.me.id and self.runtime.core.coordinator is not None:
            self.runtime.core.step_down()  # our lease went; the session will notice too

    # -- members -----------------------------------------------------------
    def _members_reset(self, kvs: dict[str, KV], revision: int) -> None:
        self.members = {}
        self._members_changed(list(kvs.values()), revision)

    def _members_changed(self, kvs: list[KV], revision: int) -> None:
        for kv in kvs:
            member = kv.key.removeprefix("members/")
            if kv.value is None:
                self.members.pop(member, None)
            else:
                self.members[member] = Peer(member, str(_json(kv).get("api", "")))
        ids = sorted(set(self.members) | {self.me.id})
        self.runtime.core.cluster.members = ids
        self._dirty.set()

    # -- mastership --------------------------------------------------------
    def _masters_reset(self, kvs: dict[str, KV], revision: int) -> None:
        gone = [
            KV(f"masters/{s}", None, 0, revision) for s in self.masters if f"masters/{s}" not in kvs
        ]
        self._masters_changed([*kvs.values(), *gone], revision)

    def _masters_changed(self, kvs: list[KV], revision: int) -> None:
        for kv in kvs:
            switch = kv.key.removeprefix("masters/")
            mine = self._mine.get(switch)
            if mine is not None and kv.mod_revision < mine.revision:
                # Older than our own claim (the watch lags behind it): the previous
                # master's key, or its deletion. Taken as news, it cost us the switch.
                continue
            holder = None if kv.value is None else str(_json(kv).get("id"))
            self._master_is(switch, holder, kv.create_revision)
        self._dirty.set()

    def _master_is(self, switch: str, holder: str | None, generation: int) -> None:
        mine = self._mine.get(switch)
        if mine is not None and (holder != self.me.id or generation != mine.revision):
            del self._mine[switch]  # our key went (lease lost) or was replaced
            self.runtime.lose(switch, holder)
        if holder is None:
            self.masters.pop(switch, None)
            if self.runtime.core.cluster.masters.get(switch) != self.me.id:
                self.runtime.core.cluster.masters.pop(switch, None)
            return
        self.masters[switch] = (holder, generation)
        if holder != self.me.id:
            self.runtime.core.cluster.masters[switch] = holder

    async def _mastership(self, lease: int) -> None:
        await self._synced.wait()
        while True:
            self._dirty.clear()
            await self._reconsider(lease)
            # Also a periodic look (orphans). asyncio.timeout, not wait_for: on 3.11
            # wait_for can swallow a cancellation that races its timeout.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.ttl / 2):
                    await self._dirty.wait()

    async def _reconsider(self, lease: int) -> None:
        live = sorted(self.members)
        now = self.runtime.now()
        for switch in sorted(self.runtime.topology.switches):
            chosen = chosen_master(switch, live)
            holder = self.masters.get(switch, (None, 0))[0]
            if switch in self._mine and chosen not in (None, self.me.id):
                await self._hand_over(switch, chosen)
            elif holder is None:
                since = self._unmastered_since.setdefault(switch, now)
                if chosen == self.me.id or now - since > 2 * self.ttl:
                    await self._claim(switch, lease)
            else:
                self._unmastered_since.pop(switch, None)

    async def _claim(self, switch: str, lease: int) -> None:
        fence = await self.store.claim(switch, self.me.id, lease)
        if fence is None:
            return  # someone was quicker; the watch tells who
        self._mine[switch] = fence
        self.masters[switch] = (self.me.id, fence.revision)
        self._unmastered_since.pop(switch, None)
        log.info("%s: mastered by %s (generation %d)", switch, self.me.id, fence.revision)
        self.runtime.gain(switch)
        self._vouch(switch)

    def _vouch(self, switch: str) -> None:
        """Write the entries of `switch`'s ports to the store again, as their master now.

        The previous master may have died, or lost its session, before its writes
        went out; our copy then came only from its peer message, and re-feeding the
        ports changed nothing in our table, so nothing else would write them. A
        merge that finds the store right costs one read per transaction of keys.
        """
        records = [(rec, False) for rec in self.runtime.core.table if rec.loc.ovs == switch]
        if records:
            self.persist(records)

    async def _hand_over(self, switch: str, to: str) -> None:
        fence = self._mine.pop(switch)
        log.info("%s: handing over to %s", switch, to)
        self.masters.pop(switch, None)
        self.runtime.lose(switch, None)
        await self.store.release(fence)

    # -- the table's copy (claim 1) ------------------------------------------
    def _records_reset(self, kvs: dict[str, KV], revision: int) -> None:
        self._records_changed(list(kvs.values()), revision)
        if not self._synced.is_set():
            log.info("table loaded from the store: %d records (revision %d)", len(kvs), revision)
            self._synced.set()

    def _records_changed(self, kvs: list[KV], revision: int) -> None:
        table = self.runtime.core.table
        for kv in kvs:
            if kv.value is None:
                continue  # records are never deleted; a removal is a tombstone
            try:
                data = json.loads(kv.value)
                if _held(table, data):
                    continue  # the peer's message brought it first: merging it changes nothing
                rec = record_from_json(data)
            except (InvalidRequest, ValueError) as err:
                log.error("store record %s unreadable, ignored: %s", kv.key, err)
                continue
            self.runtime.receive(PortEventSync(EventKind.MODIFY, Reason.PORT, rec, STORE))

    async def _writer(self) -> None:
        """Write pending records to the store (gathered for `store.write_delay`), fenced by
        our session (and leadership)."""
        while True:
            await self._written.wait()
            await asyncio.sleep(self.runtime.config.store.write_delay)
            self._written.clear()
            batch, self._pending = self._pending, {}
            try:
                await self._write(batch)
            except BaseException as err:
                # Nothing that ends a write may lose its batch: not etcd failing, not a lost
                # role, not the session being cancelled around it (the boot storm lost a
                # master's records so, and no one wrote them again). They wait for the next
                # try or the next session; what landed already is joined again, unchanged.
                self._put_back(batch)
                if not isinstance(err, StoreError) or isinstance(err, Fenced | LeaseLost):
                    raise  # we lost our role or the session ends: the next one writes them
                log.warning("%d records not written yet: %s", len(batch), err)
                await asyncio.sleep(RETRY)

    def _put_back(self, batch: dict[str, tuple[VPortRecord, bool]]) -> None:
        """Return a batch that was not written to the pending records (joined with newer ones)."""
        if batch:
            self.persist(list(batch.values()))

    async def _write(self, batch: dict[str, tuple[VPortRecord, bool]]) -> None:
        assert self._member is not None
        plain = [rec for rec, by_leader in batch.values() if not by_leader]
        led = [rec for rec, by_leader in batch.values() if by_leader]
        if plain:
            await self.store.merge(plain, [self._member])
        if led:
            if self._leading is None:
                log.warning("dropping %d leader writes: no longer leading", len(led))
                return
            await self.store.merge(led, [self._member, self._leading])

    # -- east-west ---------------------------------------------------------
    async def _sender(self, peer_id: str, box: _Outbox) -> None:
        while True:
            batch = await box.next_batch()
            peer = self.members.get(peer_id)
            if peer is None:
                log.warning("%d messages for %s dropped: not a member", len(batch), peer_id)
                continue
            try:
                await self._send(peer, batch)
            except PeerUnreachable as err:
                self.runtime.metrics.peer_request(peer_id, "unreachable")
                log.warning("peer %s: %d messages not delivered: %s", peer_id, len(batch), err)
            else:
                self.runtime.metrics.peer_request(peer_id, "ok")

    async def _send(self, peer: Peer, batch: list[PeerMessage]) -> None:
        first = batch[0]
        if isinstance(first, VPortSync):
            answer = await self.client.sync(peer, first)
            if answer is not None:
                self.runtime.receive(answer)
        elif isinstance(first, PortEventSync):
            events = [m for m in batch if isinstance(m, PortEventSync)]
            await self.client.port_events(peer, events)
        elif isinstance(first, SyncComplete | SyncRefused):
            log.error("a sync answer for %s outside its request: dropped", peer.id)


async def _until_lost(part: Coroutine[Any, Any, object], ended: asyncio.Future[StoreError]) -> None:
    """Run one part of a session; losing our role (or etcd) ends the session, not the task.

    The session's TaskGroup then sees no error: on Python 3.11 a TaskGroup whose
    child fails while it is being cancelled raises the failure and drops the
    cancellation, and a stopping controller would start a new session instead.
    """
    try:
        await part
    except (LeaseLost, Fenced, StoreError) as err:
        if not ended.done():
            ended.set_result(err)


def _json(kv: KV) -> dict[str, object]:
    try:
        data = json.loads(kv.value or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _held(table: VPortTable, data: object) -> bool:
    """Whether the table holds exactly this record already (each of a boot storm's
    records reaches a controller twice: from its master, then from the store's watch)."""
    vm = data.get("vm") if isinstance(data, dict) else None
    held = table.record(vm) if isinstance(vm, str) else None
    return held is not None and record_to_json(held) == data
