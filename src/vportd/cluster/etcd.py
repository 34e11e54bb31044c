"""etcd as the cluster's store of record: sessions, roles, vPort records and one resumable watch.

Keyspace under the prefix P:
  P/vports/{mac}     a vPort record (JSON); written only by a compare-and-swap merge
  P/leader           {"id", "api"} on the leader's lease, created only if absent
  P/members/{id}     {"id", "api", "openflow"} on the member's lease
  P/masters/{switch} {"id"} on the master's lease; its create_revision is the
                     mastership's generation id (monotonic)
  P/moves/{mac}      a VM's recent moves (JSON, flap damping); put or deleted by
                     the leader, fenced by its leadership
  P/conflicts/..., P/unreachable/{switch}/{id}  notices on their poster's lease
                     (`cluster.board`)

A role is held as long as its key lives; a `Fence` names the key and its
create_revision, and a fenced write only applies while that key is the same
incarnation. A controller whose lease expired therefore gets `Fenced` and
must stop acting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NoReturn

from aetcd import rpc

from vportd.cluster.codec import decode_record, encode_record
from vportd.cluster.etcd_auth import EtcdLogin
from vportd.cluster.etcd_rpc import (
    Backoff,
    Compacted,
    Msg,
    Stubs,
    channel,
    check_watch,
    created_at,
    delete_op,
    first_error,
    grpc_target,
    is_delete,
    modified_at,
    put_op,
    range_kvs,
    range_op,
    retrying,
    translate,
    txn_request,
    watch_stream,
)
from vportd.cluster.etcd_tls import EtcdTLS, check
from vportd.cluster.lease import LeaseRenewer
from vportd.cluster.store import (
    KV,
    Fence,
    Fenced,
    LeaseLost,
    OnChange,
    OnReset,
    Store,
    StoreError,
    Transient,
    collapse,
)
from vportd.core.model import VPortRecord

__all__ = ["KV", "EtcdStore", "Fence", "Fenced", "LeaseLost", "StoreError"]

log = logging.getLogger("vportd.etcd")

MAX_TXN_OPS = 128  # etcd's default --max-txn-ops: compares, successes and failures each
CHUNK_ATTEMPTS = 3  # whole-chunk CAS rounds before a contended chunk goes key by key
PARALLEL_CHUNKS = 8  # chunks of one merge in flight at once
SEEN_KEYS = 4096  # keys whose newest stored value is kept, to merge them in one round trip
WRITTEN_KEYS = 4096  # keys whose value we last put is kept with its record, for the watch


@dataclass(frozen=True)
class _Claim:
    """A create-if-absent's outcome: our fence, or None and the revision the holder was seen at."""

    fence: Fence | None
    revision: int


@dataclass(frozen=True, slots=True)
class _Seen:
    """A key's value at a revision, as read, written or watched (None: deleted)."""

    value: bytes | None
    mod_revision: int


class EtcdStore(Store):
    """One controller's connection to etcd; every method retries what etcd lets it retry."""

    def __init__(
        self,
        endpoints: list[str],
        prefix: str = "/vportd",
        lease_ttl: int = 2,
        *,
        call_timeout: float = 5.0,
        patience: float = 10.0,
        tls: EtcdTLS | None = None,
        login: tuple[str, str] | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoint")
        self.prefix = prefix.rstrip("/") + "/"
        self.lease_ttl = lease_ttl
        self.endpoints = list(endpoints)
        self._timeout = call_timeout
        self._patience = patience  # how long a call keeps retrying an unreachable etcd
        self._target = grpc_target(endpoints)
        self._tls = tls
        self._login = None if login is None else EtcdLogin(*login, timeout=call_timeout)
        context = None if tls is None else tls.context()
        self._renewer = LeaseRenewer(endpoints, lease_ttl, call_timeout, tls=context)
        self._channel: Any = None
        self._stubs: Stubs | None = None
        # The newest value seen of recent keys: a merge plans on it and writes in one
        # round trip (its compare-and-swap catches a stale one, and then reads).
        self._seen: OrderedDict[bytes, _Seen] = OrderedDict()
        # The value we last put at a key and the record it encodes: the watch brings
        # that value back, which then needs no decoding (the same bytes decode the same).
        self._written: OrderedDict[bytes, tuple[bytes, VPortRecord]] = OrderedDict()

    async def __aenter__(self) -> EtcdStore:
        """Open the channel (it connects, and reconnects, by itself); with TLS, first check
        each endpoint's certificate, with a user, log in: StoreError if either is refused."""
        if self._tls is not None:
            await asyncio.to_thread(check, self.endpoints, self._tls)
        login = self._login
        self._channel = channel(self._target, self._tls, () if login is None else (login,))
        self._stubs = Stubs.of(self._channel, self._timeout)
        if login is not None:
            login.channel = self._channel
            with contextlib.suppress(rpc.AioRpcError):  # etcd not up yet: logs in later
                await login.login()
        return self

    async def __aexit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stubs = None
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    # -- plumbing -------------------------------------------------------------
    @property
    def stubs(self) -> Stubs:
        if self._stubs is None:
            raise StoreError("EtcdStore used outside `async with`")
        return self._stubs

    def key(self, rel: str) -> bytes:
        return (self.prefix + rel).encode()

    def _rel(self, key: bytes) -> str:
        return key.decode()[len(self.prefix) :]

    async def _txn(
        self, what: str, compare: Sequence[Msg], success: Sequence[Msg], failure: Sequence[Msg] = ()
    ) -> Msg:
        request = txn_request(compare, success, failure)
        return await retrying(what, lambda: self.stubs.txn(request), self._patience)

    # -- sessions -------------------------------------------------------------
    async def grant_lease(self) -> int:
        req = rpc.LeaseGrantRequest(TTL=self.lease_ttl)

        async def grant() -> Msg:
            return await self.stubs.lease.LeaseGrant(req, timeout=self._timeout)

        resp = await retrying("lease grant", grant, self._patience)
        if resp.error:
            raise StoreError(f"lease grant: {resp.error}")
        log.info("granted lease %x (ttl %d s)", resp.ID, resp.TTL)
        return int(resp.ID)

    async def keep_alive(self, lease: int) -> NoReturn:
        """Keep `lease` alive until it is lost, then raise LeaseLost (see `cluster.lease`)."""
        await self._renewer.keep_alive(lease)

    async def revoke(self, lease: int) -> None:
        req = rpc.LeaseRevokeRequest(ID=lease)

        async def revoke() -> Msg:
            return await self.stubs.lease.LeaseRevoke(req, timeout=self._timeout)

        with contextlib.suppress(LeaseLost):  # already gone: what revoke wanted
            await retrying("lease revoke", revoke, self._patience)
        log.info("revoked lease %x", lease)

    # -- roles ----------------------------------------------------------------
    async def _create(self, rel: str, value: bytes, lease: int) -> _Claim:
        """Create `rel` on `lease` unless it exists; ours if it is (now) on our lease."""
        key = self.key(rel)
        while True:
            resp = await self._txn(
                f"create {rel}", [created_at(key, 0)], [put_op(key, value, lease)], [range_op(key)]
            )
            revision = int(resp.header.revision)
            if resp.succeeded:
                return _Claim(Fence(rel, revision), revision)
            kvs = range_kvs(resp.responses[0])
            if not kvs:
                continue  # deleted between compare and read: try again
            if int(kvs[0].lease) == lease:
                # A retried create whose first attempt did land, or a second claim.
                return _Claim(Fence(rel, int(kvs[0].create_revision)), revision)
            return _Claim(None, revision)

    async def _delete(self, fence: Fence) -> bool:
        """Delete the fence's key if it is still that incarnation; True if it was."""
        key = self.key(fence.key)
        resp = await self._txn(
            f"delete {fence.key}", [created_at(key, fence.revision)], [delete_op(key)]
        )
        return bool(resp.succeeded)

    async def register(self, me: str, info: dict[str, str], lease: int) -> Fence:
        """Put our members key on `lease`, taking it over from an older incarnation of us."""
        rel = f"members/{me}"
        value = json.dumps({**info, "id": me}).encode()
        while True:
            claim = await self._create(rel, value, lease)
            if claim.fence is not None:
                log.info("registered as member %s (lease %x)", me, lease)
                return claim.fence
            await self._take_over(rel)

    async def _take_over(self, rel: str) -> None:
        """Delete a stale `rel` (a previous run of this id): our key must be a new incarnation."""
        key = self.key(rel)
        resp = await self._txn(f"read {rel}", [], [range_op(key)])
        for kv in range_kvs(resp.responses[0]):
            log.warning("taking over %s from lease %x (a previous run?)", rel, kv.lease)
            await self._txn(f"delete {rel}", [modified_at(key, kv.mod_revision)], [delete_op(key)])

    async def campaign(self, me: str, info: dict[str, str], lease: int) -> Fence:
        """Become the leader: block until our leader key exists, watching the holder's."""
        value = json.dumps({**info, "id": me}).encode()
        while True:
            claim = await self._create("leader", value, lease)
            if claim.fence is not None:
                log.info("%s elected leader (generation %d)", me, claim.fence.revision)
                return claim.fence
            await self._wait_deleted("leader", claim.revision + 1)

    async def _wait_deleted(self, rel: str, start: int) -> None:
        """Return once `rel` is deleted at or after revision `start` (or on a stream error:
        the caller re-reads, so a missed wake-up costs a round trip, never a deletion)."""
        key = self.key(rel)
        try:
            async with watch_stream(self.stubs, key, start) as call:
                async for resp in call:
                    check_watch(resp, f"watch {rel}")
                    if any(ev.kv.key == key and is_delete(ev) for ev in resp.events):
                        return
        except (rpc.AioRpcError, Transient, Compacted) as err:
            log.info("watch on %s broke (%s); reading it again", rel, err)
            await asyncio.sleep(Backoff().next())

    async def claim(self, switch: str, me: str, lease: int) -> Fence | None:
        """Become master of `switch`; the fence's revision is the generation id."""
        claim = await self._create(f"masters/{switch}", json.dumps({"id": me}).encode(), lease)
        if claim.fence is not None:
            log.info("%s masters %s (generation %d)", me, switch, claim.fence.revision)
        return claim.fence

    async def release(self, fence: Fence) -> None:
        if await self._delete(fence):
            log.info("released %s (generation %d)", fence.key, fence.revision)

    async def post(self, key: str, value: bytes | None, lease: int) -> None:
        op = delete_op(self.key(key)) if value is None else put_op(self.key(key), value, lease)
        await self._txn(f"post {key}", [], [op])

    # -- records --------------------------------------------------------------
    async def merge(self, records: Sequence[VPortRecord], fences: Sequence[Fence] = ()) -> None:
        """Join `records` into the stored ones (compare-and-swap per key, many keys per txn)."""
        items = list(collapse(records).items())
        size = MAX_TXN_OPS - len(fences)
        if size < 1:
            raise ValueError(f"{len(fences)} fences leave no room in a transaction")
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        if len(chunks) == 1:  # (a handshake's record: no task of its own to wait for)
            await self._merge_chunk(chunks[0], fences, CHUNK_ATTEMPTS)
            return
        gate = asyncio.Semaphore(PARALLEL_CHUNKS)

        async def one(chunk: list[tuple[str, VPortRecord]]) -> None:
            async with gate:
                await self._merge_chunk(chunk, fences, CHUNK_ATTEMPTS)

        try:
            async with asyncio.TaskGroup() as group:
                for chunk in chunks:
                    group.create_task(one(chunk))
        except BaseExceptionGroup as errors:
            raise first_error(errors) from None

    async def _merge_chunk(
        self, items: list[tuple[str, VPortRecord]], fences: Sequence[Fence], attempts: int | None
    ) -> None:
        keys = [self.key(f"vports/{vm}") for vm, _ in items]
        fence_cmp = [created_at(self.key(f.key), f.revision) for f in fences]
        stored, recalled = self._recalled(keys), True
        tries = 0
        while attempts is None or tries < attempts:
            compare, puts = self._plan(keys, items, stored)
            if not puts:
                if not recalled:
                    return
                # "Nothing to write" is only believed from a read: the key may be gone.
                recalled, stored = False, await self._read(keys, fence_cmp, fences)
                continue
            tries += 1
            reread = [range_op(self.key(f.key)) for f in fences] + [range_op(k) for k in keys]
            resp = await self._txn("merge vports", fence_cmp + compare, puts, reread)
            if resp.succeeded:
                self._wrote(puts, int(resp.header.revision))
                return
            self._check_fences(resp, fences, offset=0)
            stored = [range_kvs(r) for r in resp.responses[len(fences) :]]
            recalled = False
            self._saw(keys, stored)
        # Contended as a whole: key by key, each retried until it lands.
        for item in items:
            await self._merge_chunk([item], fences, None)

    async def _read(
        self, keys: list[bytes], fence_cmp: list[Msg], fences: Sequence[Fence]
    ) -> list[list[Msg]]:
        resp = await self._txn("read vports", fence_cmp, [range_op(k) for k in keys])
        self._check_fences(resp, fences, offset=None)
        stored = [range_kvs(r) for r in resp.responses]
        self._saw(keys, stored)
        return stored

    def _recalled(self, keys: list[bytes]) -> list[list[Msg]]:
        """What was last seen stored at each key; a key not seen (or seen deleted) is taken
        for absent. A wrong guess fails the compare-and-swap, whose failure branch reads:
        a boot storm's new keys, unknown until written, then cost one round trip, not two."""
        seen = [self._seen.get(k) for k in keys]
        return [[s] if s is not None and s.value is not None else [] for s in seen]

    def remember(self, key: bytes, value: bytes | None, mod_revision: int) -> None:
        """Note a key's value at a revision (an older one than known is ignored)."""
        held = self._seen.get(key)
        if held is not None and held.mod_revision >= mod_revision:
            return
        _keep(self._seen, key, _Seen(value, mod_revision), SEEN_KEYS)

    def recall(self, key: bytes, value: bytes | None) -> VPortRecord | None:
        """The record `value` encodes if it is what we last put at `key`, and forget it
        (the watch brings each value back once)."""
        held = self._written.get(key)
        if held is None or held[0] != value:
            return None
        del self._written[key]
        return held[1]

    def _encode(self, key: bytes, rec: VPortRecord) -> bytes:
        """`encode_record(rec)`, kept with `rec` for the watch (`recall`)."""
        value = encode_record(rec)
        _keep(self._written, key, (value, rec), WRITTEN_KEYS)
        return value

    def _saw(self, keys: list[bytes], stored: list[list[Msg]]) -> None:
        for key, kvs in zip(keys, stored, strict=True):
            if kvs:
                self.remember(key, bytes(kvs[0].value), int(kvs[0].mod_revision))

    def _wrote(self, puts: list[Msg], revision: int) -> None:
        for op in puts:
            self.remember(bytes(op.request_put.key), bytes(op.request_put.value), revision)

    def _check_fences(self, resp: Msg, fences: Sequence[Fence], offset: int | None) -> None:
        """Raise Fenced if `resp` failed on a fence. With `offset` None the txn compared
        only fences; otherwise its failure branch read each fence key from `offset` on."""
        if offset is None:
            if not resp.succeeded:
                raise Fenced(f"fenced out: {', '.join(f.key for f in fences)} changed")
            return
        for n, fence in enumerate(fences):
            kvs = range_kvs(resp.responses[offset + n])
            have = int(kvs[0].create_revision) if kvs else 0
            if have != fence.revision:
                raise Fenced(f"fenced out: {fence.key} is generation {have}, not {fence.revision}")

    def _plan(
        self, keys: list[bytes], items: list[tuple[str, VPortRecord]], stored: list[list[Msg]]
    ) -> tuple[list[Msg], list[Msg]]:
        """The compares and puts that join each item into what was read (none if stored wins)."""
        compare: list[Msg] = []
        puts: list[Msg] = []
        for key, (_, rec), kvs in zip(keys, items, stored, strict=True):
            if not kvs:
                compare.append(created_at(key, 0))
                puts.append(put_op(key, self._encode(key, rec)))
                continue
            have = decode_record(kvs[0].value)
            joined = have.merge(rec)
            if joined is not have:
                compare.append(modified_at(key, kvs[0].mod_revision))
                puts.append(put_op(key, self._encode(key, joined)))
        return compare, puts

    async def put(self, items: Mapping[str, bytes | None], fences: Sequence[Fence]) -> None:
        """Put or delete keys, fenced, in as many transactions as etcd's op limit needs."""
        ops = [
            delete_op(self.key(rel)) if value is None else put_op(self.key(rel), value)
            for rel, value in items.items()
        ]
        size = MAX_TXN_OPS - len(fences)
        fence_cmp = [created_at(self.key(f.key), f.revision) for f in fences]
        for start in range(0, len(ops), size):
            resp = await self._txn(f"put {len(items)} keys", fence_cmp, ops[start : start + size])
            self._check_fences(resp, fences, offset=None)

    async def read(self, sub: str) -> dict[str, bytes]:
        prefix = self.key(sub)
        kvs, _ = await retrying(
            f"read {sub}", lambda: self.stubs.range_prefix(prefix), self._patience
        )
        return {self._rel(kv.key): bytes(kv.value) for kv in kvs}

    async def records(self) -> tuple[dict[str, VPortRecord], int]:
        """Every stored vPort record by MAC, and the revision they were read at."""
        prefix = self.key("vports/")
        kvs, revision = await retrying(
            "read vports", lambda: self.stubs.range_prefix(prefix), self._patience
        )
        return {
            self._rel(kv.key)[len("vports/") :]: decode_record(kv.value) for kv in kvs
        }, revision

    # -- the watch ------------------------------------------------------------
    async def follow(self, sub: str, on_reset: OnReset, on_change: OnChange) -> NoReturn:
        """Mirror every key under P/sub into the callbacks, forever (run it in a TaskGroup).

        on_reset(all, revision) first and after a compaction made resuming
        impossible; on_change(events, revision) for each watch answer with
        events, `revision` being the newest event's. After a disconnect it
        resumes right after the last revision delivered. An exception raised by
        a callback ends `follow` (it is the caller's bug, not etcd's).
        """
        follower = _Follower(self, sub, on_reset, on_change)
        await follower.run()


class _Follower:
    """The state of one `follow`: the last revision delivered, and how to get back to it."""

    def __init__(
        self,
        store: EtcdStore,
        sub: str,
        on_reset: OnReset,
        on_change: OnChange,
    ) -> None:
        self.store, self.sub = store, sub
        self.prefix = store.key(sub)
        self.on_reset, self.on_change = on_reset, on_change
        self.revision: int | None = None  # None: a full read is due
        self.backoff = Backoff(first=0.05, cap=1.0)

    async def run(self) -> NoReturn:
        while True:
            try:
                if self.revision is None:
                    await self._reset()
                await self._watch()
            except Compacted as err:
                log.warning(
                    "follow %s: cannot resume after revision %s (%s); full resync",
                    *(self.sub, self.revision, err),
                )
                self.revision = None
            except (rpc.AioRpcError, Transient) as err:
                await self._pause(
                    translate(err, "watch") if isinstance(err, rpc.AioRpcError) else err
                )

    async def _pause(self, err: Exception) -> None:
        delay = self.backoff.next()
        then = "read everything" if self.revision is None else f"resume after {self.revision}"
        log.warning(
            "follow %s: etcd connection lost (%s); in %.2f s, reconnect and %s",
            *(self.sub, err, delay, then),
        )
        await asyncio.sleep(delay)

    async def _reset(self) -> None:
        kvs, revision = await self.store.stubs.range_prefix(self.prefix)
        view = {kv.key: kv for kv in (_to_kv(self.store.prefix, raw) for raw in kvs)}
        log.info("follow %s: read %d keys at revision %d", self.sub, len(view), revision)
        self.revision = revision
        self.on_reset(view, revision)

    async def _watch(self) -> None:
        assert self.revision is not None
        resumed = self.backoff.attempts > 0
        async with watch_stream(self.store.stubs, self.prefix, self.revision + 1) as call:
            async for resp in call:
                check_watch(resp, f"follow {self.sub}")
                if resp.created:
                    self._check_not_rewound(int(resp.header.revision))
                    if resumed:
                        log.info(
                            "follow %s: watching again after revision %d", self.sub, self.revision
                        )
                    self.backoff.reset()
                    continue
                self._deliver(resp)
        raise Transient(f"follow {self.sub}: watch stream ended")

    def _event(self, ev: Msg) -> KV:
        """A watch event as delivered, with the record if it is the value we last put."""
        store, raw = self.store, ev.kv
        key, value = bytes(raw.key), None if is_delete(ev) else bytes(raw.value)
        kv = _kv(store.prefix, key, value, raw, store.recall(key, value))
        store.remember(key, value, kv.mod_revision)
        return kv

    def _check_not_rewound(self, now: int) -> None:
        """A store behind what we delivered is another history (restored from a backup, or a
        new cluster): waiting for revisions past ours would miss everything, so reload."""
        if self.revision is not None and now < self.revision:
            raise Compacted(now, f"etcd is at revision {now}, behind ours; another history")

    def _deliver(self, resp: Msg) -> None:
        if not resp.events:
            # A progress answer: only sent once the watch has caught up, so every
            # event up to its header revision has been delivered.
            self.revision = max(self.revision or 0, int(resp.header.revision))
            return
        events = [self._event(ev) for ev in resp.events]
        # Not the header revision: a catching-up watch may send a batch whose
        # header is ahead of its last event.
        revision = max(kv.mod_revision for kv in events)
        self.revision = revision
        self.on_change(events, revision)


def _to_kv(prefix: str, kv: Msg) -> KV:
    """A raw key-value as `follow` delivers it: key relative to `prefix`."""
    return _kv(prefix, bytes(kv.key), bytes(kv.value), kv)


def _kv(
    prefix: str, key: bytes, value: bytes | None, raw: Msg, record: VPortRecord | None = None
) -> KV:
    """`key` (read from `raw`) relative to `prefix`, with `value` and `raw`'s revisions."""
    rel = key.decode()[len(prefix) :]
    return KV(rel, value, int(raw.create_revision), int(raw.mod_revision), record)


def _keep(cache: OrderedDict[bytes, Any], key: bytes, item: object, limit: int) -> None:
    """Hold `item` at `key` as the newest of `cache`, which keeps the `limit` newest."""
    cache[key] = item
    cache.move_to_end(key)
    if len(cache) > limit:
        cache.popitem(last=False)
