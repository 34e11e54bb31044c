"""An in-process store of record with etcd's semantics: a whole cluster in one process.

`MemoryServer` holds what an etcd cluster would: keys with create and mod
revisions from one global counter, leases timed on the event loop's clock
(their keys deleted when they expire) and watchers. Each controller talks to
it through a `MemoryStore` of its own (`server.client()`), a `Store` that
behaves as `EtcdStore` does: the same values (bytes), fencing, sessions and
watch order. A watcher's events wait in its own queue and reach its callbacks
in the follower's task, in revision order, never inside the writer's call.

Every call of a client yields to the loop once before it acts (a round trip),
then acts atomically, as one etcd transaction would.

The server's test controls play what a real cluster does to a controller:
`expire` / `expire_member` (a dead lease), `partition` / `heal` (etcd out of
reach: the client's calls raise `Transient`, its renewals stop, its watch
pauses and resumes after the last revision it delivered), `compact` (a paused
watcher that can no longer resume reloads everything).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import NoReturn, Self

from vportd.cluster import store
from vportd.cluster.codec import decode_record, encode_record
from vportd.cluster.store import KV, Fence, OnChange, OnReset, Store, collapse
from vportd.core.model import VPortRecord

__all__ = ["MemoryServer", "MemoryStore"]

log = logging.getLogger("vportd.store")

FIRST_LEASE = 0x694D_0000_0001  # lease ids: arbitrary, but as wide as etcd's


@dataclass
class _Key:
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int  # 0: on no lease


@dataclass
class _Lease:
    ttl: int
    deadline: float  # on the loop's clock
    timer: asyncio.TimerHandle | None = None
    keys: set[str] = field(default_factory=set)


class _Watch:
    """One follower's subscription: the batches written under its prefix, not delivered yet."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.batches: deque[list[KV]] = deque()
        self.ready = asyncio.Event()
        self.compacted = False  # a revision it still had to deliver was compacted

    def offer(self, events: list[KV]) -> None:
        mine = [kv for kv in events if kv.key.startswith(self.prefix)]
        if mine:
            self.batches.append(mine)
            self.ready.set()

    def compact(self, revision: int) -> None:
        if self.batches and self.batches[0][-1].mod_revision <= revision:
            self.compacted = True
            self.batches.clear()
            self.ready.set()


class MemoryServer:
    """What an etcd cluster holds, for the `MemoryStore` clients of one event loop."""

    def __init__(self) -> None:
        self.revision = 1  # etcd's first revision, before any write
        self._keys: dict[str, _Key] = {}
        self._leases: dict[int, _Lease] = {}
        self._watches: set[_Watch] = set()
        self._ids = itertools.count(FIRST_LEASE)
        self._changed = asyncio.Event()  # replaced by a new one at each change

    def client(self, lease_ttl: int = 2, *, patience: float = 0.0) -> MemoryStore:
        """A new controller's connection; `patience`: how long its calls wait out a partition."""
        return MemoryStore(self, lease_ttl, patience=patience)

    # -- test controls ------------------------------------------------------
    def expire(self, lease: int) -> bool:
        """Expire `lease` now, as etcd does a TTL after its last renewal; False if gone."""
        return self.end_lease(lease, "expired")

    def expire_member(self, member: str) -> None:
        """Expire the lease that holds `member`'s session (its member key)."""
        key = self._keys.get(f"members/{member}")
        if key is None or not key.lease:
            raise LookupError(f"{member} holds no session")
        self.expire(key.lease)

    def partition(self, client: MemoryStore) -> None:
        """Cut `client` off: its calls raise `store.Transient`, its renewals and watches stop."""
        client.reachable.clear()
        self._bump()

    def heal(self, client: MemoryStore) -> None:
        client.reachable.set()
        self._bump()

    def compact(self, revision: int) -> None:
        """Forget the history up to `revision`: a watcher that still had to deliver part
        of it cannot resume and reloads everything (etcd's compaction)."""
        if revision > self.revision:
            raise ValueError(f"revision {revision} is in the future (now {self.revision})")
        for watch in self._watches:
            watch.compact(revision)

    # -- reads ----------------------------------------------------------------
    def range(self, prefix: str) -> dict[str, KV]:
        return {
            k: KV(k, v.value, v.create_revision, v.mod_revision)
            for k, v in sorted(self._keys.items())
            if k.startswith(prefix)
        }

    async def changed(self) -> None:
        """Return after the next change (a write, a partition or heal)."""
        await self._changed.wait()

    @contextlib.contextmanager
    def watching(self, prefix: str) -> Iterator[tuple[_Watch, dict[str, KV], int]]:
        """A watch on `prefix` with what it holds now and the revision: nothing in between."""
        watch = _Watch(prefix)
        self._watches.add(watch)
        try:
            yield watch, self.range(prefix), self.revision
        finally:
            self._watches.discard(watch)

    # -- writes ---------------------------------------------------------------
    def commit(self, puts: Mapping[str, tuple[bytes, int]], deletes: Iterable[str] = ()) -> int:
        """One transaction: the deletes, then the puts (key: value, lease), at one new
        revision (none if nothing changes); the revision now."""
        for _, lease in puts.values():
            self._check_lease(lease)
        revision = self.revision + 1
        events = [self._delete(key, revision) for key in deletes if key in self._keys]
        events += [self._put(key, value, lease, revision) for key, (value, lease) in puts.items()]
        if not events:
            return self.revision
        self.revision = revision
        for watch in self._watches:
            watch.offer(events)
        self._bump()
        return revision

    def _check_lease(self, lease: int) -> None:
        if lease and lease not in self._leases:
            raise store.LeaseLost(f"lease {lease:x} not found")

    def _delete(self, key: str, revision: int) -> KV:
        old = self._keys.pop(key)
        self._detach(key, old)
        return KV(key, None, 0, revision)

    def _put(self, key: str, value: bytes, lease: int, revision: int) -> KV:
        old = self._keys.get(key)
        if old is not None:
            self._detach(key, old)
        created = revision if old is None else old.create_revision
        self._keys[key] = _Key(value, created, revision, lease)
        if lease:
            self._leases[lease].keys.add(key)
        return KV(key, value, created, revision)

    def _detach(self, key: str, old: _Key) -> None:
        held = self._leases.get(old.lease)
        if held is not None:
            held.keys.discard(key)

    def _bump(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- roles ----------------------------------------------------------------
    def create(self, rel: str, value: bytes, lease: int) -> Fence | None:
        """Create `rel` on `lease` unless it exists; our fence if it is (now) on our lease."""
        held = self._keys.get(rel)
        if held is None:
            return Fence(rel, self.commit({rel: (value, lease)}))
        if held.lease == lease:  # a second claim of ours
            return Fence(rel, held.create_revision)
        return None

    def take_over(self, rel: str, lease: int) -> None:
        """Delete `rel` if it is on another lease than `lease` (an older run of its owner)."""
        held = self._keys.get(rel)
        if held is not None and held.lease != lease:
            log.warning("taking over %s from lease %x (a previous run?)", rel, held.lease)
            self.commit({}, [rel])

    def delete(self, fence: Fence) -> bool:
        """Delete the fence's key if it is still that incarnation; True if it was."""
        held = self._keys.get(fence.key)
        if held is None or held.create_revision != fence.revision:
            return False
        self.commit({}, [fence.key])
        return True

    # -- records --------------------------------------------------------------
    def _check_fences(self, fences: Sequence[Fence]) -> None:
        for fence in fences:
            held = self._keys.get(fence.key)
            now = 0 if held is None else held.create_revision
            if now != fence.revision:
                raise store.Fenced(
                    f"fenced out: {fence.key} is generation {now}, not {fence.revision}"
                )

    def put(self, items: Mapping[str, bytes | None], fences: Sequence[Fence]) -> None:
        """Put or delete (None) keys in one transaction, if every fence holds."""
        self._check_fences(fences)
        puts = {key: (value, 0) for key, value in items.items() if value is not None}
        self.commit(puts, [key for key, value in items.items() if value is None])

    def merge(self, records: dict[str, VPortRecord], fences: Sequence[Fence]) -> None:
        """Join `records` (by VM) into the stored ones in one transaction, if every fence holds."""
        self._check_fences(fences)
        puts = {}
        for vm, rec in records.items():
            joined = self._joined(f"vports/{vm}", rec)
            if joined is not None:
                puts[f"vports/{vm}"] = (encode_record(joined), 0)
        self.commit(puts)

    def _joined(self, key: str, rec: VPortRecord) -> VPortRecord | None:
        """What `key` must hold to include `rec`; None if it does already."""
        held = self._keys.get(key)
        if held is None:
            return rec
        have = decode_record(held.value)
        joined = have.merge(rec)
        return None if joined is have else joined

    def records(self) -> tuple[dict[str, VPortRecord], int]:
        vports = self.range("vports/")
        return {
            key.removeprefix("vports/"): decode_record(kv.value or b"")
            for key, kv in vports.items()
        }, self.revision

    # -- leases ---------------------------------------------------------------
    def grant(self, ttl: int) -> int:
        lease = next(self._ids)
        loop = asyncio.get_running_loop()
        self._leases[lease] = held = _Lease(ttl, loop.time() + ttl)
        held.timer = loop.call_at(held.deadline, self._lapse, lease)
        return lease

    def renew(self, lease: int) -> bool:
        """Renew `lease` for its TTL from now; False if it is gone."""
        held = self._leases.get(lease)
        if held is None:
            return False
        held.deadline = asyncio.get_running_loop().time() + held.ttl
        return True

    def _lapse(self, lease: int) -> None:
        """The lease's timer: expire it, unless it was renewed meanwhile (then wait again)."""
        held = self._leases.get(lease)
        if held is None:
            return
        loop = asyncio.get_running_loop()
        if loop.time() < held.deadline:
            held.timer = loop.call_at(held.deadline, self._lapse, lease)
            return
        self.end_lease(lease, "expired")

    def end_lease(self, lease: int, how: str) -> bool:
        """End `lease` and delete its keys (one revision); False if it was gone."""
        held = self._leases.pop(lease, None)
        if held is None:
            return False
        if held.timer is not None:
            held.timer.cancel()
        log.info("lease %x %s: deleting %s", lease, how, ", ".join(sorted(held.keys)) or "no key")
        self.commit({}, sorted(held.keys))
        return True


class MemoryStore(Store):
    """One controller's connection to a `MemoryServer` (see `Store` for each call)."""

    def __init__(self, server: MemoryServer, lease_ttl: int = 2, *, patience: float = 0.0) -> None:
        self.lease_ttl = lease_ttl
        self._server = server
        self._patience = patience
        self._open = False
        self.reachable = asyncio.Event()  # cleared while partitioned (`MemoryServer.partition`)
        self.reachable.set()

    async def __aenter__(self) -> Self:
        self._open = True
        return self

    async def __aexit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._open = False

    async def _call(self, what: str) -> MemoryServer:
        """The server, after one round trip; `store.Transient` while cut off past our patience."""
        if not self._open:
            raise store.StoreError("MemoryStore used outside `async with`")
        await asyncio.sleep(0)
        if not self.reachable.is_set() and self._patience > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._patience):
                    await self.reachable.wait()
        if not self.reachable.is_set():
            raise store.Transient(f"{what}: the store is unreachable (partitioned)")
        return self._server

    # -- sessions -------------------------------------------------------------
    async def grant_lease(self) -> int:
        lease = (await self._call("lease grant")).grant(self.lease_ttl)
        log.info("granted lease %x (ttl %d s)", lease, self.lease_ttl)
        return lease

    async def keep_alive(self, lease: int) -> NoReturn:
        loop = asyncio.get_running_loop()
        expires = loop.time() + self.lease_ttl
        while True:
            now = loop.time()
            if self.reachable.is_set():
                if not self._server.renew(lease):
                    raise store.LeaseLost(f"lease {lease:x} expired or was revoked")
                expires = now + self.lease_ttl
            elif now >= expires:
                raise store.LeaseLost(
                    f"lease {lease:x}: no keepalive answered for {self.lease_ttl} s"
                )
            await asyncio.sleep(self.lease_ttl / 3)

    async def revoke(self, lease: int) -> None:
        (await self._call("lease revoke")).end_lease(lease, "revoked")

    # -- roles ----------------------------------------------------------------
    async def register(self, me: str, info: dict[str, str], lease: int) -> Fence:
        rel, value = f"members/{me}", json.dumps({**info, "id": me}).encode()
        server = await self._call(f"register {me}")
        server.take_over(rel, lease)
        fence = server.create(rel, value, lease)
        assert fence is not None  # (nothing ran between the take-over and the create)
        log.info("registered as member %s (lease %x)", me, lease)
        return fence

    async def campaign(self, me: str, info: dict[str, str], lease: int) -> Fence:
        value = json.dumps({**info, "id": me}).encode()
        while True:
            server = await self._call("campaign")
            fence = server.create("leader", value, lease)
            if fence is not None:
                log.info("%s elected leader (generation %d)", me, fence.revision)
                return fence
            await server.changed()

    async def claim(self, switch: str, me: str, lease: int) -> Fence | None:
        server = await self._call(f"claim {switch}")
        fence = server.create(f"masters/{switch}", json.dumps({"id": me}).encode(), lease)
        if fence is not None:
            log.info("%s masters %s (generation %d)", me, switch, fence.revision)
        return fence

    async def release(self, fence: Fence) -> None:
        if (await self._call(f"release {fence.key}")).delete(fence):
            log.info("released %s (generation %d)", fence.key, fence.revision)

    async def post(self, key: str, value: bytes | None, lease: int) -> None:
        server = await self._call(f"post {key}")
        if value is None:
            server.commit({}, [key])
        else:
            server.commit({key: (value, lease)})

    # -- records --------------------------------------------------------------
    async def merge(self, records: Sequence[VPortRecord], fences: Sequence[Fence] = ()) -> None:
        joined = collapse(records)
        if joined:  # (as etcd's: an empty merge is no transaction, so no fence check)
            (await self._call("merge vports")).merge(joined, fences)

    async def records(self) -> tuple[dict[str, VPortRecord], int]:
        return (await self._call("read vports")).records()

    async def put(self, items: Mapping[str, bytes | None], fences: Sequence[Fence]) -> None:
        if items:  # (as etcd's: no transaction, so no fence check)
            (await self._call(f"put {len(items)} keys")).put(items, fences)

    async def read(self, sub: str) -> dict[str, bytes]:
        kvs = (await self._call(f"read {sub}")).range(sub)
        return {key: kv.value for key, kv in kvs.items() if kv.value is not None}

    # -- the watch ------------------------------------------------------------
    async def follow(self, sub: str, on_reset: OnReset, on_change: OnChange) -> NoReturn:
        if not self._open:
            raise store.StoreError("MemoryStore used outside `async with`")
        while True:
            await self.reachable.wait()
            with self._server.watching(sub) as (watch, view, read_at):
                log.info("follow %s: read %d keys at revision %d", sub, len(view), read_at)
                on_reset(view, read_at)
                last = await self._deliver(watch, on_change, read_at)
            log.warning("follow %s: cannot resume after revision %d; full resync", sub, last)

    async def _deliver(
        self, watch: _Watch, on_change: Callable[[list[KV], int], None], delivered: int
    ) -> int:
        """Hand `watch`'s batches to `on_change` while we are reachable; return the last
        revision delivered once resuming is impossible (compacted)."""
        while True:
            await self.reachable.wait()
            if watch.compacted:
                return delivered
            if not watch.batches:
                watch.ready.clear()
                await watch.ready.wait()
                continue
            batch = watch.batches.popleft()
            delivered = batch[-1].mod_revision
            on_change(batch, delivered)
