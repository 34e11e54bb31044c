"""Carries out the core's outputs, in the order `core.messages` gives, the handshake's first.

An output's records go to the store of record as soon as it is submitted; its
vPort syncs leave once those records are durable (persist before send),
without waiting for any flow. Its flow mods are queued and sent in order,
several outputs' at once (`coalesced`: one barrier per switch for a burst, as
a boot storm queues an output per port event); its answers to waiting VMMs,
and whoever waits for the output itself, are released once the flows are
confirmed and the records durable (the readiness barrier). A step (a
switch's adoption) is queued with the outputs to keep its place among their
flow mods.

Two lanes. The handshake's outputs (notify, vPort sync, sync answers, abort,
timeouts) are urgent: they go before every bulk output still queued (a boot
storm's port events), and their flow mods replace the queued bulk mods of the
same flows, which are older. An urgent output must not lean on the bulk
outputs before it (the core's vPort sync carries the VM's flows itself). A
run's flow mods are queued on the switches with a barrier behind each
batch, and the next run starts without waiting for those barriers (at most
`CONFIRMING_MAX` bulk runs unconfirmed): a switch busy with a storm delays
the runs that touch it, not the others. Queuing a bulk run can take a while
(a switch slow to read leaves no room in its queue), and an urgent run does
not wait for it unless it sets a flow of that run: every flow mod adds or
deletes one exact flow, so mods of different flows may interleave. Each lane
releases its runs in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from vportd.core.flaps import MoveTimes
from vportd.core.flow import FlowMod
from vportd.core.messages import NotifyAnswer, Output, Send, Write

log = logging.getLogger("vportd.executor")

# A switch works through the bulk mods sent to it before an urgent output's: few
# in flight keep that wait short (the storm bench: BENCHMARKS.md, cluster).
RUN_MAX = 200  # flow mods per bulk run
CONFIRMING_MAX = 1  # bulk runs whose barriers may be pending at once

Waiter = asyncio.Future[None]
Step = Callable[[], Awaitable[None]]
Confirm = Callable[[], Awaitable[None]]


class FlowSender(Protocol):
    async def queue_mods(self, mods: Sequence[FlowMod]) -> Confirm:
        """Queue flow mods on their switches, a barrier behind each switch's; the result
        waits for the barriers (and never raises for a switch's failure)."""


class Cluster(Protocol):
    """The store of record and the peers (absent for a controller that runs alone)."""

    def persist(self, writes: Sequence[Write]) -> Waiter: ...

    def save_moves(self, moves: Sequence[MoveTimes]) -> None:
        """Write the leader's records of VMs' moves (flap damping); nobody waits for them."""

    async def write_now(self, writes: Sequence[Write]) -> None:
        """Write at once, in the caller's task; NotDurable if the records were not written."""

    async def deliver(self, send: Send) -> None:
        """Send a vPort sync and hand its answer on; never raises for a peer's failure."""


@dataclass
class _Item:
    """A submitted output: what is left for the run loop, and who waits for it."""

    mods: list[FlowMod]
    answers: list[NotifyAnswer]
    persisted: Waiter | None
    done: Waiter | None = None


@dataclass
class _Run:
    urgent: bool
    mods: list[FlowMod] = field(default_factory=list)
    items: list[_Item] = field(default_factory=list)


class Executor:
    def __init__(
        self,
        flows: FlowSender,
        cluster: Cluster | None,
        answered: Callable[[NotifyAnswer], None],
    ) -> None:
        self.flows = flows
        self.cluster = cluster
        self.answered = answered
        self._urgent: deque[_Item] = deque()
        self._bulk: deque[_Item | Step] = deque()
        self._wake = asyncio.Event()
        self._busy = False
        self._queuing: _Run | None = None  # the bulk run being queued on the switches
        self._queued = asyncio.Event()  # set when no bulk run is being queued
        self._queued.set()
        self._unconfirmed = 0  # bulk runs queued on the switches, barriers pending
        self._unreleased = 0  # runs of either lane not released yet
        # Each lane's last run's release: the next one is released after it.
        self._released: dict[bool, Waiter | None] = {True: None, False: None}
        self._tg: asyncio.TaskGroup | None = None

    # -- submitting --------------------------------------------------------
    def submit(self, out: Output[Any], done: Waiter | None = None, *, urgent: bool = False) -> None:
        """Queue an output; its records start for the store and its syncs leave at once.

        `urgent`: the handshake's, ahead of the bulk outputs queued (module doc)."""
        persisted = None
        if out.moves and self.cluster is not None:
            self.cluster.save_moves(out.moves)
        if out.messages:
            persisted = self._send_when_durable(out.writes, out.messages)
        elif out.writes and self.cluster is not None:
            persisted = self.cluster.persist(out.writes)
        if not (out.flow_mods or out.answers or done is not None):
            return
        item = _Item(list(out.flow_mods), out.answers, persisted, done)
        if urgent:
            self._supersede(item.mods)
            self._urgent.append(item)
        else:
            self._bulk.append(item)
        self._wake.set()

    async def carry_out(self, out: Output[Any], *, urgent: bool = False) -> None:
        """Submit an output and wait until its flows are confirmed and its records durable."""
        done: Waiter = asyncio.get_running_loop().create_future()
        self.submit(out, done, urgent=urgent)
        await done

    def step(self, step: Step) -> None:
        """Queue an action that must keep its place among the flow mods (an adoption)."""
        self._bulk.append(step)
        self._wake.set()

    @property
    def idle(self) -> bool:
        """Nothing queued, being carried out or waiting for its barriers."""
        return not (self._busy or self._queuing or self._urgent or self._bulk or self._unreleased)

    def _supersede(self, mods: list[FlowMod]) -> None:
        """Drop the queued bulk mods of the flows an urgent output sets: they are older."""
        keys = {(m.switch, m.flow.key) for m in mods}
        if not keys:
            return
        for item in self._bulk:
            if isinstance(item, _Item) and item.mods:
                item.mods = [m for m in item.mods if (m.switch, m.flow.key) not in keys]

    # -- the syncs -----------------------------------------------------------
    def _send_when_durable(self, writes: list[Write], messages: list[Send]) -> Waiter | None:
        """Write `writes` and then send `messages`, in a task of their own (a handshake's
        records are written at once, not behind a storm's); the future says when the
        records are durable."""
        if self.cluster is None:
            log.error("%d vPort syncs, but this controller runs alone", len(messages))
            return None
        assert self._tg is not None, "messages before the executor runs"
        persisted: Waiter = asyncio.get_running_loop().create_future()
        persisted.add_done_callback(_retrieve)
        self._tg.create_task(self._send_after(self.cluster, writes, messages, persisted))
        return persisted

    async def _send_after(
        self, cluster: Cluster, writes: list[Write], messages: list[Send], persisted: Waiter
    ) -> None:
        try:
            if writes:
                await cluster.write_now(writes)
        except Exception as err:  # NotDurable: our leadership ended meanwhile
            persisted.set_exception(err)
            log.warning("%d vPort syncs not sent: their records are not durable (%s)",
                        len(messages), err)  # fmt: skip
            return
        persisted.set_result(None)
        await asyncio.gather(*(cluster.deliver(send) for send in messages))

    # -- the run loop ----------------------------------------------------------
    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            tg.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            job = self._next()
            if job is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            self._busy = True
            try:
                if isinstance(job, _Run) and not job.urgent:
                    self._queue_bulk(job)
                elif isinstance(job, _Run):
                    if self._queuing is not None and _overlap(job.mods, self._queuing.mods):
                        await self._queued.wait()  # its mods must land after the bulk ones
                    await self._start(job)
                else:
                    await job()  # (`_next` gives no step while a bulk run is being queued)
            finally:
                self._busy = False

    def _next(self) -> _Run | Step | None:
        """The urgent outputs, all at once; else the next bulk run or step, if there is room."""
        if self._urgent:
            run = _Run(True)
            while self._urgent:
                self._add(run, self._urgent.popleft())
            return run
        if not self._bulk or self._queuing or self._unconfirmed >= CONFIRMING_MAX:
            return None
        head = self._bulk[0]
        if isinstance(head, _Item):
            return self._coalesced()
        self._bulk.popleft()
        return head

    def _coalesced(self) -> _Run:
        """The bulk outputs at the queue's head, up to a step or RUN_MAX flow mods."""
        run = _Run(False)
        while self._bulk and len(run.mods) < RUN_MAX:
            head = self._bulk[0]
            if not isinstance(head, _Item):
                break
            self._bulk.popleft()
            self._add(run, head)
        return run

    @staticmethod
    def _add(run: _Run, item: _Item) -> None:
        run.mods += item.mods
        run.items.append(item)

    def _queue_bulk(self, run: _Run) -> None:
        """Queue a bulk run in a task of its own: urgent runs go on meanwhile."""
        assert self._tg is not None
        self._queuing = run
        self._queued.clear()
        self._tg.create_task(self._queue_then_wake(run))

    async def _queue_then_wake(self, run: _Run) -> None:
        try:
            await self._start(run)
        finally:
            self._queuing = None
            self._queued.set()
            self._wake.set()

    async def _start(self, run: _Run) -> None:
        """Queue the run's flow mods; its barriers and release go on in a task of their own."""
        confirm = await self.flows.queue_mods(_last_per_flow(run.mods))
        assert self._tg is not None
        before = self._released[run.urgent]
        released: Waiter = asyncio.get_running_loop().create_future()
        self._released[run.urgent] = released
        self._unreleased += 1
        if not run.urgent:
            self._unconfirmed += 1
        self._tg.create_task(self._finish(run, confirm, before, released))

    async def _finish(
        self, run: _Run, confirm: Confirm, before: Waiter | None, released: Waiter
    ) -> None:
        try:
            try:
                await confirm()
            finally:
                if not run.urgent:
                    self._unconfirmed -= 1
                    self._wake.set()
            if before is not None:
                await asyncio.shield(before)
            for item in run.items:
                await self._release(item)
        finally:
            self._unreleased -= 1
            released.set_result(None)
            if self._released[run.urgent] is released:
                self._released[run.urgent] = None

    async def _release(self, item: _Item) -> None:
        """Answers and waiters, once the item's records are durable too."""
        if item.persisted is not None and (item.answers or item.done is not None):
            try:
                await item.persisted
            except Exception as err:
                log.warning("answers held back: their records are not durable (%s)", err)
                if item.done is not None and not item.done.done():
                    item.done.set_exception(err)
                return
        for answer in item.answers:
            self.answered(answer)
        if item.done is not None and not item.done.done():
            item.done.set_result(None)


def _last_per_flow(mods: list[FlowMod]) -> list[FlowMod]:
    """Of the mods for one flow (switch, table, priority, match), the last: it alone decides
    what the switch holds after the barrier. A burst of VMs booting on a switch rewrites its
    flood flow once per VM; the switch needs the last one only."""
    last: dict[tuple[str, tuple[int, int, object]], FlowMod] = {}
    for mod in mods:
        last[(mod.switch, mod.flow.key)] = mod
    return mods if len(last) == len(mods) else list(last.values())


def _overlap(mods: list[FlowMod], others: list[FlowMod]) -> bool:
    """Whether some flow (switch and key) has mods in both."""
    keys = {(m.switch, m.flow.key) for m in mods}
    return any((m.switch, m.flow.key) in keys for m in others)


def _retrieve(waiter: Waiter) -> None:
    if not waiter.cancelled():
        waiter.exception()
