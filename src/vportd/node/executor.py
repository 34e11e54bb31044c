"""Carries out the core's outputs, in the order `core.messages` gives.

An output's records go to the store of record as soon as it is submitted; its
vPort syncs leave once those records are durable (persist before send),
without waiting for any flow. Its flow mods are queued and sent in order,
several outputs' at once (`coalesced`: one barrier per switch for a whole
burst, as a boot storm queues an output per port event); its answers to
waiting VMMs, and whoever waits for the output itself, are released once the
flows are confirmed and the records durable (the readiness barrier). A step
(a switch's adoption) is queued with the outputs to keep its place among
their flow mods.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from vportd.core.flow import FlowMod
from vportd.core.messages import NotifyAnswer, Output, Send, Write

log = logging.getLogger("vportd.executor")

COALESCE_MAX = 20_000  # flow mods per coalesced run: bounds the wait of what queues behind

Waiter = asyncio.Future[None]
Step = Callable[[], Awaitable[None]]


class FlowSender(Protocol):
    async def send_mods(self, mods: Sequence[FlowMod]) -> None:
        """Send flow mods to their switches and wait for each switch's barrier."""


class Cluster(Protocol):
    """The store of record and the peers (absent for a controller that runs alone)."""

    def persist(self, writes: Sequence[Write]) -> Waiter: ...

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
        self._queue: asyncio.Queue[_Item | Step] = asyncio.Queue()
        self._held: _Item | Step | None = None  # taken while coalescing, next to run
        self._busy = False
        self._tg: asyncio.TaskGroup | None = None

    # -- submitting --------------------------------------------------------
    def submit(self, out: Output[Any], done: Waiter | None = None) -> None:
        """Queue an output; its records start for the store and its syncs leave at once."""
        persisted = None
        if out.messages:
            persisted = self._send_when_durable(out.writes, out.messages)
        elif out.writes and self.cluster is not None:
            persisted = self.cluster.persist(out.writes)
        if out.flow_mods or out.answers or done is not None:
            self._queue.put_nowait(_Item(out.flow_mods, out.answers, persisted, done))

    async def carry_out(self, out: Output[Any]) -> None:
        """Submit an output and wait until its flows are confirmed and its records durable."""
        done: Waiter = asyncio.get_running_loop().create_future()
        self.submit(out, done)
        await done

    def step(self, step: Step) -> None:
        """Queue an action that must keep its place among the flow mods (an adoption)."""
        self._queue.put_nowait(step)

    @property
    def idle(self) -> bool:
        """Nothing queued or being carried out."""
        return not self._busy and self._held is None and self._queue.empty()

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
            first = self._held or await self._queue.get()
            self._held = None
            self._busy = True
            try:
                if isinstance(first, _Item):
                    await self._carry_out(self._coalesced(first))
                else:
                    await first()
            finally:
                self._busy = False

    def _coalesced(self, first: _Item) -> _Run:
        """`first` and the outputs queued behind it, up to a step or COALESCE_MAX flow mods."""
        run = _Run(list(first.mods), [first])
        while len(run.mods) < COALESCE_MAX and not self._queue.empty():
            following = self._queue.get_nowait()
            if not isinstance(following, _Item):
                self._held = following
                break
            run.mods += following.mods
            run.items.append(following)
        return run

    async def _carry_out(self, run: _Run) -> None:
        await self.flows.send_mods(_last_per_flow(run.mods))
        for item in run.items:
            await self._release(item)

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


def _retrieve(waiter: Waiter) -> None:
    if not waiter.cancelled():
        waiter.exception()
