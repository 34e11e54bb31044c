"""Writes the core's records to the store of record and says when they are durable.

`persist` queues records and returns a future that resolves once every one of
them is written (persist before send: a message that announces a record waits
for it). Records queued while a write is in flight go together in the next
one, joined per VM. Plain records are fenced by this controller's session,
the leader's by its leadership too. A transient store error retries the
batch; losing the session keeps the plain records for the next session, while
the leader's are dropped with `NotDurable`: they belonged to a leadership
that is gone, and the new leader decides again. The controller has applied
them to its own table already: `dropped` is told which, so that it can read
those entries back from the store. The leader's other keys (its records of
VMs' moves, `save`) go with its records, fenced the same way; nobody waits
for them, and the newest value of a key queued is the one written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from vportd.cluster.store import Fence, Fenced, LeaseLost, Store, StoreError
from vportd.core.messages import Write
from vportd.core.model import VPortRecord

log = logging.getLogger("vportd.cluster")

RETRY = 0.5  # seconds before a batch that etcd refused is tried again

Waiter = asyncio.Future[None]


class NotDurable(Exception):
    """The records were not written: the leadership that wrote them is gone."""


@dataclass
class _Part:
    """Records of one kind (plain or the leader's), per VM, and who waits for them."""

    records: dict[str, VPortRecord] = field(default_factory=dict)
    waiters: list[Waiter] = field(default_factory=list)
    keys: dict[str, bytes | None] = field(default_factory=dict)  # to put (None: delete)

    def add(self, rec: VPortRecord) -> None:
        have = self.records.get(rec.vm)
        self.records[rec.vm] = rec if have is None else have.merge(rec)

    def join(self, other: _Part) -> None:
        for rec in other.records.values():
            self.add(rec)
        self.waiters += other.waiters
        self.keys.update(other.keys)  # (other's are the newer)

    def settle(self, error: Exception | None = None) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)
        self.waiters = []


@dataclass
class _Batch:
    plain: _Part = field(default_factory=_Part)
    led: _Part = field(default_factory=_Part)


class RecordWriter:
    """One controller's writes to the store; `run` is part of its session."""

    def __init__(
        self,
        store: Store,
        gather: float = 0.0,
        dropped: Callable[[list[VPortRecord]], None] = lambda _: None,
    ) -> None:
        self.store = store
        self.gather = gather  # seconds to wait for more records before a write
        self.dropped = dropped
        self._member: Fence | None = None  # the session's fences, while it lasts
        self._leading: Callable[[], Fence | None] = lambda: None
        self._pending = _Batch()
        self._queued = asyncio.Event()

    def persist(self, writes: Sequence[Write]) -> Waiter:
        """Queue `writes`; the future resolves once they are all durable."""
        waiter: Waiter = asyncio.get_running_loop().create_future()
        waiter.add_done_callback(_retrieve)  # nobody may be waiting for it
        led = False
        for write in writes:
            (self._pending.led if write.leader else self._pending.plain).add(write.record)
            led |= write.leader
        # A waiter for leader records settles with them (it may fail); else with the plain.
        (self._pending.led if led else self._pending.plain).waiters.append(waiter)
        self._queued.set()
        return waiter

    def save(self, keys: Mapping[str, bytes | None]) -> None:
        """Queue keys of the leader's to put (None: delete), fenced by its leadership."""
        self._pending.led.keys.update(keys)
        self._queued.set()

    async def write_now(self, writes: Sequence[Write]) -> None:
        """Write `writes` at once, in the caller's task (a message waits for them): no
        turn through the queue. NotDurable if they could not be; plain records that
        were not written then go the queue's way, to be written later."""
        batch = _Batch()
        for write in writes:
            (batch.led if write.leader else batch.plain).add(write.record)
        member = self._member
        try:
            if member is None:
                raise Fenced("no session")
            await self._write(batch, member, self._leading())
        except StoreError as err:
            self._give_back(batch, err)  # (a transient error: the queue tries them again)
            raise NotDurable(f"not written: {err}") from None
        except asyncio.CancelledError as err:
            self._give_back(batch, err)
            raise

    async def run(self, member: Fence, leading: Callable[[], Fence | None]) -> None:
        """Write what is queued, fenced by `member` (and `leading()` for the leader's)."""
        self._member, self._leading = member, leading
        try:
            await self._run(member, leading)
        finally:
            self._member = None

    async def _run(self, member: Fence, leading: Callable[[], Fence | None]) -> None:
        while True:
            await self._queued.wait()
            if self.gather:
                await asyncio.sleep(self.gather)
            self._queued.clear()
            batch, self._pending = self._pending, _Batch()
            try:
                await self._write(batch, member, leading())
            except BaseException as err:
                self._give_back(batch, err)
                if not isinstance(err, StoreError) or isinstance(err, Fenced | LeaseLost):
                    raise  # our role or the session is gone: the next session writes them
                log.warning("records not written yet: %s", err)
                await asyncio.sleep(RETRY)

    async def _write(self, batch: _Batch, member: Fence, leader: Fence | None) -> None:
        if batch.plain.records:
            await self.store.merge(list(batch.plain.records.values()), [member])
        batch.plain.records = {}  # written: a retry of the rest must not write them again
        batch.plain.settle()
        led = batch.led
        if led.records or led.waiters or led.keys:
            if leader is None:
                raise Fenced("no longer leading")
            if led.records:
                await self.store.merge(list(led.records.values()), [member, leader])
            led.records = {}
            if led.keys:
                await self.store.put(led.keys, [member, leader])
            led.keys = {}
            led.settle()

    def _give_back(self, batch: _Batch, err: BaseException) -> None:
        """No plain record may be lost: it waits for the next try or session. The leader's
        go on only while this controller may still lead (a transient error)."""
        if not isinstance(err, StoreError) or isinstance(err, Fenced | LeaseLost):
            self._drop(batch.led, f"not written before the leadership ended: {err}")
        batch.plain.join(self._pending.plain)
        batch.led.join(self._pending.led)
        self._pending = batch
        self._queued.set()

    def drop_leader_writes(self) -> None:
        """The leadership ended: its queued records must not outlive it."""
        self._drop(self._pending.led, "the leadership ended before they were written")

    def _drop(self, led: _Part, why: str) -> None:
        records = list(led.records.values())
        if records or led.keys:
            log.warning("dropping %d leader writes: %s", len(records) + len(led.keys), why)
        led.records, led.keys = {}, {}
        led.settle(NotDurable(why))
        if records:
            self.dropped(records)


def _retrieve(waiter: Waiter) -> None:
    if not waiter.cancelled():
        waiter.exception()
