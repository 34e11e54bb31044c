"""One controller's part in the cluster: its etcd session, leadership, mastership,
the table's copy from the store of record, and the leader's vPort syncs.

Session: one lease (`store.lease_ttl`) carries this controller's member key, the
leader key while it leads and the keys of the switches it masters. If the lease
is lost (etcd out of reach for longer than the TTL) or a fenced write fails,
the session ends: the controller stops leading, lets go of its switches (their
flows stay in OVS, forwarding goes on) and starts a new session. A controller
that stops revokes its lease: its roles move on at once, not a TTL later.

A new leader reads the VMs' recent moves (`moves/`, flap damping) before it
takes a notify; the leader writes them as its other records, fenced.

The table's copy (claims 1 and 5) does not depend on the session: a watch on
the records keeps it, resuming from its last revision after any reconnect and
reloading everything when that revision was compacted. Leading waits for the
first full load, so that a new leader adopts every open migration.

Mastership: each switch's master is chosen by rendezvous hashing with bounded
loads over the live members (`mastership`), so that masters spread evenly and
move only when members or switches come or go; the
chosen one claims the switch's key (the key's create revision is the
OpenFlow generation id), a master that is no longer the chosen one hands the
switch over, and a switch left without a master for two TTLs is claimed by
whoever sees it.

Everything the cluster says goes to the runtime through `NodeEvents`; the
node never touches the core.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any, Protocol

from vportd.cluster.board import Board
from vportd.cluster.codec import decode_moves, decode_record, encode_moves
from vportd.cluster.mastership import chosen_masters
from vportd.cluster.members import Peer
from vportd.cluster.peers import PeerClient, PeerUnreachable
from vportd.cluster.store import KV, Fence, Fenced, LeaseLost, Store, StoreError
from vportd.cluster.writer import RecordWriter, Waiter
from vportd.core.errors import InvalidRequest
from vportd.core.flaps import MoveTimes
from vportd.core.messages import EventKind, Reason, Send, SyncAnswer, Write
from vportd.core.model import VPortRecord

log = logging.getLogger("vportd.cluster")

RETRY = 0.5  # seconds between attempts to reach etcd again
LEAVE_TIMEOUT = 1.0  # seconds a stopping controller gives etcd to take its lease back


class NodeEvents(Protocol):
    """The runtime, as the cluster node tells it what the cluster says."""

    def stored(self, records: Sequence[VPortRecord]) -> None:
        """Records from the store of record (claims 1 and 5)."""

    def members_are(self, members: Sequence[str]) -> None: ...

    def leader_is(self, leader: str | None) -> None: ...

    def lead(self, moves: Sequence[MoveTimes]) -> None:
        """This controller leads now; `moves`: the VMs' recent moves, as the store holds them."""

    def unix_offset(self) -> float:
        """Seconds from the core's clock to unix time, now (the store's times are unix)."""

    def step_down(self) -> None: ...

    def gained(self, switch: str) -> None:
        """This controller masters `switch` now."""

    def master_is(self, switch: str, master: str | None) -> None:
        """Another controller (or nobody, for now) masters `switch`."""

    def sync_answered(self, answer: SyncAnswer) -> None:
        """A peer's answer to our vPort sync."""

    def reloaded(self, records: Sequence[VPortRecord]) -> None:
        """The store's entries of VMs whose leader records were dropped unwritten."""

    def switch_names(self) -> list[str]:
        """The switches known (OVSDB's bridges): those to master."""

    def records_on(self, switch: str) -> list[VPortRecord]:
        """The entries that place a VM on `switch`."""

    def peer_outcome(self, peer: str, outcome: str) -> None:
        """How an east-west request ended ("ok" or "unreachable"), for the metrics."""

    def switch_facts(self, published: dict[str, bytes]) -> None:
        """What the masters publish of their switches (`switches/{name}`), all of it."""


class ClusterNode:
    """The cluster adapter of a runtime whose store is etcd."""

    def __init__(
        self,
        store: Store,
        client: PeerClient,
        me: Peer,
        events: NodeEvents,
        *,
        openflow: str = "",
        gather: float = 0.0,
    ) -> None:
        self.store = store
        self.client = client
        self.me = me
        self.events = events
        self.openflow = openflow
        self.ttl = store.lease_ttl
        self.members: dict[str, Peer] = {}
        self.leader_id: str | None = None
        self.leader_api: str | None = None
        self.masters: dict[str, tuple[str, int]] = {}  # switch -> (controller, generation)
        self.writer = RecordWriter(store, gather, self._dropped)
        self.conflicts = Board(store, "conflicts/")
        # unreachable/{switch}/{controller}: the switches each controller has not reached
        # for a while; mastership goes to the controllers that still reach a switch.
        self.unreachable = Board(store, "unreachable/")
        # switches/{name}: what its master publishes of a switch for the others (node.facts).
        self.facts = Board(store, "switches/")
        self._unwritten: set[str] = set()  # VMs whose entries to read back from the store
        self._reread = asyncio.Event()
        self._mine: dict[str, Fence] = {}
        self._unmastered_since: dict[str, float] = {}
        self._member: Fence | None = None
        self.stale_since: float | None = None  # wall-clock end of the last session, till a new one
        self._leading: Fence | None = None
        self._dirty = asyncio.Event()  # mastership to reconsider
        self._synced = asyncio.Event()  # the table holds every record of the store

    # -- what the runtime asks ---------------------------------------------
    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            follow = self.store.follow
            tg.create_task(follow("vports/", self._records_reset, self._records_changed))
            tg.create_task(follow("members/", self._members_reset, self._members_changed))
            tg.create_task(follow("masters/", self._masters_reset, self._masters_changed))
            tg.create_task(follow("leader", self._leader_reset, self._leader_changed))
            tg.create_task(follow("conflicts/", self.conflicts.reset, self.conflicts.changed))
            reach = (self._unreachable_reset, self._unreachable_changed)
            tg.create_task(follow("unreachable/", *reach))
            tg.create_task(follow("switches/", self._facts_reset, self._facts_changed))
            tg.create_task(self._sessions())
            tg.create_task(self._reread_unwritten())

    def persist(self, writes: Sequence[Write]) -> Waiter:
        """Write records to the store; the future resolves once they are durable."""
        return self.writer.persist(writes)

    def save_moves(self, moves: Sequence[MoveTimes]) -> None:
        """Write the leader's records of VMs' moves (an empty one is deleted), fenced by its
        leadership; nobody waits for them."""
        to_unix = self.events.unix_offset()
        self.writer.save({f"moves/{m.vm}": encode_moves(m, to_unix) for m in moves})

    async def write_now(self, writes: Sequence[Write]) -> None:
        """Write records at once (a message waits for them); NotDurable if they were not."""
        await self.writer.write_now(writes)

    def unreachable_are(self, switches: Iterable[str]) -> None:
        """The switches this controller has not reached for a while (`node.reach`)."""
        self.unreachable.post({f"unreachable/{s}/{self.me.id}": b"{}" for s in switches})

    def reachable_elsewhere(self, switch: str) -> bool:
        """Whether another live controller still reaches `switch` (by what they posted)."""
        return any(m != self.me.id for m in self._reaching(switch, sorted(self.members)))

    def _reaching(self, switch: str, live: Sequence[str]) -> list[str]:
        return [m for m in live if f"unreachable/{switch}/{m}" not in self.unreachable.read]

    def _unreachable_reset(self, kvs: dict[str, KV], revision: int) -> None:
        self.unreachable.reset(kvs, revision)
        self._dirty.set()

    def _unreachable_changed(self, kvs: list[KV], revision: int) -> None:
        self.unreachable.changed(kvs, revision)
        self._dirty.set()

    def _facts_reset(self, kvs: dict[str, KV], revision: int) -> None:
        self.facts.reset(kvs, revision)
        self.events.switch_facts(self.facts.read)

    def _facts_changed(self, kvs: list[KV], revision: int) -> None:
        self.facts.changed(kvs, revision)
        self.events.switch_facts(self.facts.read)

    def switches_changed(self) -> None:
        """The runtime learnt or lost a switch: reconsider who masters what."""
        self._dirty.set()

    def generation(self, switch: str) -> int | None:
        """The generation id of the current mastership of `switch`, if any."""
        mine = self._mine.get(switch)
        if mine is not None:
            return mine.revision
        held = self.masters.get(switch)
        return None if held is None else held[1]

    def leader(self) -> Peer | None:
        if self.leader_id is None or self.leader_api is None:
            return None
        return Peer(self.leader_id, self.leader_api)

    @property
    def in_session(self) -> bool:
        return self._member is not None and self._synced.is_set()

    @property
    def loaded(self) -> bool:
        """Whether the table has been loaded from the store at least once."""
        return self._synced.is_set()

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
        try:
            return await self._hold(lease)
        except asyncio.CancelledError:
            await self._leave(lease)
            raise

    async def _leave(self, lease: int) -> None:
        """Stopping: give the lease back, so that our roles move on now, not a TTL later."""
        with contextlib.suppress(StoreError, TimeoutError):
            async with asyncio.timeout(LEAVE_TIMEOUT):
                await self.store.revoke(lease)
                log.info("left the cluster: lease %x revoked", lease)

    async def _hold(self, lease: int) -> StoreError:
        """Register on `lease` and run the session's parts until one of them ends it."""
        info = {"id": self.me.id, "api": self.me.api, "openflow": self.openflow}
        self._member = member = await self.store.register(self.me.id, info, lease)
        self.stale_since = None
        log.info("joined the cluster as %s (lease %x, ttl %d s)", self.me.id, lease, self.ttl)
        ended: asyncio.Future[StoreError] = asyncio.get_running_loop().create_future()
        async with asyncio.TaskGroup() as tg:
            parts = [
                self.store.keep_alive(lease), self._lead(lease), self._mastership(lease),
                self.writer.run(member, lambda: self._leading), self.conflicts.run(lease),
                self.unreachable.run(lease), self.facts.run(lease),
            ]  # fmt: skip
            tasks = [tg.create_task(_until_lost(part, ended)) for part in parts]
            why = await ended
            for task in tasks:
                task.cancel()
        return why

    def _end_session(self) -> None:
        if self._member is not None and self.stale_since is None:
            self.stale_since = time.time()  # what the watches showed may be stale from now on
        if self._leading is not None:
            log.warning("%s stops leading", self.me.id)
        self._leading = None
        self._member = None
        self.writer.drop_leader_writes()
        self.events.step_down()
        for switch in list(self._mine):
            del self._mine[switch]
            self.masters.pop(switch, None)
            self.events.master_is(switch, None)

    # -- leadership --------------------------------------------------------
    async def _lead(self, lease: int) -> None:
        await self._synced.wait()
        info = {"id": self.me.id, "api": self.me.api}
        self._leading = await self.store.campaign(self.me.id, info, lease)
        # Read once we lead: the previous leader is fenced out, its last moves are in.
        self.events.lead(await self._moves())

    async def _moves(self) -> list[MoveTimes]:
        """The VMs' recent moves as the previous leaders stored them (flap damping)."""
        stored = await self.store.read("moves/")
        to_unix = self.events.unix_offset()
        moves = []
        for key, value in stored.items():
            try:
                moves.append(decode_moves(value, to_unix))
            except InvalidRequest as err:
                log.error("store record %s unreadable, ignored: %s", key, err.detail)
        log.info("%d VMs moved lately (flap damping), as the store holds it", len(moves))
        return moves

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
        log.info("leader: %s", leader or "none")
        self.events.leader_is(leader)

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
        self.events.members_are(sorted(set(self.members) | {self.me.id}))
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
        if mine is not None and holder == self.me.id and generation == mine.revision:
            return  # our own claim, seen by the watch
        if mine is not None:
            del self._mine[switch]  # our key went (lease lost) or was replaced
        if holder is None:
            self.masters.pop(switch, None)
        else:
            self.masters[switch] = (holder, generation)
        if holder != self.me.id:
            self.events.master_is(switch, holder)

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
        now = asyncio.get_running_loop().time()
        # Among the controllers that reach a switch; if none does (it is gone), any.
        reaching = {s: self._reaching(s, live) or live for s in self.events.switch_names()}
        for switch, chosen in chosen_masters(reaching, live).items():  # (in name order)
            candidates = reaching[switch]
            holder = self.masters.get(switch, (None, 0))[0]
            if switch in self._mine and chosen not in (None, self.me.id):
                await self._hand_over(switch, chosen)
            elif holder is None:
                since = self._unmastered_since.setdefault(switch, now)
                orphan = now - since > 2 * self.ttl and self.me.id in candidates
                if chosen == self.me.id or orphan:
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
        self.events.gained(switch)
        self._vouch(switch)

    def _vouch(self, switch: str) -> None:
        """Write the entries of `switch`'s ports to the store again, as their master now.

        The previous master may have died, or lost its session, before its writes
        went out; re-feeding the ports then changes nothing in our table, so
        nothing else would write them. A merge that finds the store right
        changes nothing there.
        """
        records = self.events.records_on(switch)
        if records:
            self.persist([_vouched(rec) for rec in records])

    async def _hand_over(self, switch: str, to: str) -> None:
        fence = self._mine.pop(switch)
        log.info("%s: handing over to %s", switch, to)
        self.masters.pop(switch, None)
        self.events.master_is(switch, None)
        await self.store.release(fence)

    # -- the table's copy (claims 1 and 5) ------------------------------------
    def _records_reset(self, kvs: dict[str, KV], revision: int) -> None:
        self._records_changed(list(kvs.values()), revision)
        if not self._synced.is_set():
            log.info("table loaded from the store: %d records (revision %d)", len(kvs), revision)
            self._synced.set()

    def _records_changed(self, kvs: list[KV], revision: int) -> None:
        records = []
        for kv in kvs:
            if kv.value is None:
                continue  # records are never deleted; a removal is a tombstone
            try:
                records.append(decode_record(kv.value) if kv.record is None else kv.record)
            except InvalidRequest as err:
                log.error("store record %s unreadable, ignored: %s", kv.key, err.detail)
        if records:
            self.events.stored(records)

    # -- leader records that were never written ----------------------------------
    def _dropped(self, records: list[VPortRecord]) -> None:
        """The leadership ended with these records unwritten, though our own table
        holds them: its entries of those VMs are read back from the store."""
        self._unwritten.update(rec.vm for rec in records)
        self._reread.set()

    async def _reread_unwritten(self) -> None:
        while True:
            await self._reread.wait()
            self._reread.clear()
            vms, self._unwritten = self._unwritten, set()
            try:
                stored, _ = await self.store.records()
            except StoreError as err:
                log.warning("entries of %d VMs not read back yet: %s", len(vms), err)
                self._unwritten |= vms
                self._reread.set()
                await asyncio.sleep(RETRY)
                continue
            self.events.reloaded([stored[vm] for vm in sorted(vms) if vm in stored])

    # -- the leader's vPort syncs --------------------------------------------
    async def deliver(self, send: Send) -> None:
        """Send a vPort sync; its answer goes to `events.sync_answered`."""
        peer = self.members.get(send.to)
        if peer is None:
            log.warning("vPort sync for %s dropped: not a member", send.to)
            return
        try:
            answer = await self.client.sync(peer, send.message)
        except PeerUnreachable as err:
            self.events.peer_outcome(send.to, "unreachable")
            log.warning("peer %s: vPort sync of %s not delivered: %s", send.to,
                        send.message.record.vm, err)  # fmt: skip
            return
        self.events.peer_outcome(send.to, "ok")
        self.events.sync_answered(answer)


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


def _vouched(rec: VPortRecord) -> Write:
    return Write(rec, EventKind.MODIFY, Reason.PORT)
