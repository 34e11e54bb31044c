"""A `SimCluster` driven by the benchmark, every call into each controller timed on its own."""

from __future__ import annotations

import functools
import gc
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from vportd.core.controller import Controller
from vportd.core.messages import NotifyAnswer, NotifyRequest, Output, PortEvent, VPortSync
from vportd_lab.sim.cluster import InFlight, SimCluster, Stored

R = TypeVar("R")


@dataclass
class ControllerStats:
    switches: int = 0
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: Counter[str] = field(default_factory=Counter)
    own_events: int = 0
    store_updates: int = 0  # records the store's watch brought (its own writes among them)
    handshake_messages: int = 0
    flow_mods: int = 0
    gc_seconds: float = 0.0  # of `seconds`: the cyclic GC's pauses during its calls

    @property
    def events(self) -> int:
        return self.own_events + self.store_updates

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())

    @property
    def events_per_second(self) -> float:
        t = self.total_seconds
        return self.events / t if t > 0 else 0.0


class TimedCluster:
    """Drives a `SimCluster`, timing every call into each controller on its own."""

    def __init__(self, sim: SimCluster) -> None:
        self.sim = sim
        self.stats = {cid: ControllerStats() for cid in sim.controllers}
        for cid, ctl in sim.controllers.items():
            self.stats[cid].switches = sum(1 for s in ctl.switches() if s.master == cid)
        self.masters = {s: sim.master_of(s) for s in sim.topology.switches}
        self.leader = sim.leader
        self.answers: dict[str, NotifyAnswer] = {}
        self.port_events: Counter[str] = Counter()
        self.notifies = 0
        self.aborts = 0
        self.deliveries = 0
        self.gc_seconds = 0.0
        self.gc_collections: Counter[int] = Counter()
        self._gc_start = 0.0
        self._seen_answers = len(sim.answers)

    def _run(self, ctl: Controller, out: Output[Any]) -> None:
        self.stats[ctl.me].flow_mods += len(out.flow_mods)
        self.sim.run(out)
        answers = self.sim.answers
        if len(answers) > self._seen_answers:
            for answer in answers[self._seen_answers :]:
                self.answers[answer.migration.id] = answer
            # Read: the sim need not keep them (the harness's garbage is not the
            # controllers', but the cyclic GC would scan it in their calls).
            del answers[self._seen_answers :]

    def _call(self, ctl: Controller, what: str, call: Callable[[], R]) -> R:
        """`call()`, its time (and the cyclic GC's share of it) booked to `ctl`."""
        gc_before = self.gc_seconds
        t0 = time.perf_counter()
        result = call()
        elapsed = time.perf_counter() - t0
        stats = self.stats[ctl.me]
        stats.seconds[what] += elapsed
        stats.calls[what] += 1
        stats.gc_seconds += self.gc_seconds - gc_before
        return result

    def _timed(self, ctl: Controller, what: str, call: Callable[[], Output[Any]]) -> Output[Any]:
        out = self._call(ctl, what, call)
        self._run(ctl, out)
        return out

    @property
    def events(self) -> int:
        return sum(self.port_events.values())

    def port_event(self, ev: PortEvent) -> None:
        ctl = self.masters[ev.ovs]
        self.port_events[ev.kind.value] += 1
        self.stats[ctl.me].own_events += 1
        self._timed(ctl, "port_event", functools.partial(ctl.port_event, ev, self.sim.now))

    def notify(self, vm: str, source: str, destination: str) -> str:
        ctl = self.leader
        request = NotifyRequest(vm, source, destination)
        out = self._timed(ctl, "notify", functools.partial(ctl.notify, request, self.sim.now))
        self.notifies += 1
        assert out.reply is not None
        return str(out.reply.migration.id)

    def abort(self, migration_id: str) -> None:
        ctl = self.leader
        self._timed(ctl, "abort", functools.partial(ctl.abort, migration_id, self.sim.now))
        self.aborts += 1

    # -- the cyclic GC: its pauses land in whichever call allocates -------
    def watch_gc(self) -> None:
        gc.callbacks.append(self._on_gc)

    def unwatch_gc(self) -> None:
        gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.gc_seconds += time.perf_counter() - self._gc_start
            self.gc_collections[info["generation"]] += 1

    def advance(self, seconds: float) -> None:
        self.sim.now += seconds
        now = self.sim.now
        for ctl in self.sim.controllers.values():
            self._timed(ctl, "tick", functools.partial(ctl.tick, now))

    def deliver_all(self, limit: int = 10_000_000) -> None:
        """FIFO, like `SimCluster.deliver_all`, without its O(n) pops."""
        queue = self.sim.queue
        i = 0
        while i < len(queue):
            if i >= limit:
                raise RuntimeError("messages keep coming: a message loop between controllers")
            item = queue[i]
            i += 1
            self._receive(item)
        del queue[:i]
        self.deliveries += i

    def _receive(self, item: InFlight) -> None:
        """Deliver one queued item as `SimCluster.deliver` does, timed."""
        ctl, msg, now = self.sim.controllers[item.to], item.message, self.sim.now
        stats = self.stats[ctl.me]
        if isinstance(msg, Stored):
            stats.store_updates += 1
            self._timed(ctl, "stored", functools.partial(ctl.stored, msg.record, now))
            return
        stats.handshake_messages += 1
        if isinstance(msg, VPortSync):
            out = self._timed(ctl, "vport_sync", functools.partial(ctl.vport_sync, msg, now))
            if out.reply is not None:
                self.sim.queue.append(InFlight(msg.leader, out.reply))
        else:
            self._timed(ctl, "sync_answered", functools.partial(ctl.sync_answered, msg, now))
