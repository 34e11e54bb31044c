"""``vportctl bench``: the core's throughput and memory on an in-process cluster.

What runs (nothing here is mocked except the wire and the switches):

* **Topology**: a pod fabric. One core switch, P = round(sqrt(S)) - 1 pod
  (aggregation) switches linked to it, every other switch a hypervisor linked
  to one pod switch; the core is the fabric's centre, hence the root of the
  default routes and of the flooding tree. VMs run on hypervisors only. The
  topology caches are filled (`Topology.precompute`) before timing; that
  time is reported on its own.
* **Cluster**: `SimCluster` with `fabric=False`: real `Controller`s (table,
  flow compiler, the leader's coordinator) and the sim's store of record:
  every record written is joined into the store and brought to every
  controller, and the leader's vPort syncs and their answers travel, through
  the in-process FIFO queue; flow mods are counted, not applied.
* **Workload**: a seeded, deterministic VM manager running up to
  `CONCURRENCY` operations at once, interleaved step by step: VM boot (port
  add, link up), link flaps, address updates, live migrations through the
  whole handshake (leader notify, vPort syncs, sync complete answers, then the
  destination port's add and link up, i.e. activation, and the source port's
  delete), aborted migrations, and VM removals. Every port event (add, modify,
  delete) counts towards `events`; notifies and aborts are extra. Queued
  records and messages are delivered every `DELIVER_EVERY` steps, and the clock moves one
  second (with a `tick` of every controller) every `TICK_EVERY` steps.
* **Time** is accounted per controller, around every call into it
  (`port_event`, `stored`, `vport_sync`, `sync_answered`, `notify`, `abort`,
  `tick`): the generator, the queue and the bookkeeping here are not in it. A
  controller's events are the port events of the switches it masters plus the
  records the store's watch brings it (its own writes among them, as etcd's
  watch brings them back). Cyclic GC pauses are timed too (`gc.callbacks`) and shown apart:
  one lands in whichever call allocates when it is due. The GC runs as a
  controller's would: default thresholds, no `gc.freeze()` (a daemon may use
  those; the figures here do not).
* **Memory**: with `tracemalloc`, the bytes allocated to rebuild one
  `Controller` from a pickle of it, its topology and the leader's coordinator
  left out (by type: reported apart): a faithful copy of exactly the objects
  its vPort state holds (the table, the flow compiler, mastership), as a
  controller process of its own would hold them. The table and the flow
  compiler are told apart the same way (each left out in turn). A walk of the
  live objects with `sys.getsizeof` cross-checks it (it also sees the slack of
  dicts that shrank). Divided by the live vPorts.
"""

from __future__ import annotations

import functools
import gc
import io
import itertools
import json
import math
import os
import pickle
import platform
import random
import subprocess
import sys
import time
import tracemalloc
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from types import BuiltinFunctionType, FunctionType, ModuleType
from typing import Any, TypeVar

from vportd.core.compiler import FlowCompiler
from vportd.core.controller import Controller
from vportd.core.coordinator import Coordinator
from vportd.core.errors import CoreError
from vportd.core.messages import (
    EventKind,
    NotifyAnswer,
    NotifyRequest,
    Output,
    PortEvent,
    VPortSync,
)
from vportd.core.table import VPortTable
from vportd.core.topology import Topology
from vportd_lab.bench.doc import write_markdown
from vportd_lab.sim.cluster import InFlight, SimCluster, Stored

R = TypeVar("R")

SECTION = "## Core: port events on an in-process cluster"
RESULTS = Path("bench-results") / "core.json"

SEED = 20140101
CONCURRENCY = 32  # VMM operations in flight at once
DELIVER_EVERY = 8  # scheduler steps between two deliveries of every queued message
TICK_EVERY = 1000  # scheduler steps per simulated second (and tick)
GOAL_EVENTS_PER_S = 50_000
GOAL_BYTES_PER_VPORT = 1024

# The VMM's operation mix, by weight (an operation is several port events).
MIX: tuple[tuple[str, int], ...] = (
    ("boot", 40),  # add, modify up
    ("migrate", 25),  # notify, add at destination, [modify down at source], modify up, delete
    ("flap", 15),  # modify down, modify up
    ("remove", 10),  # [modify down], delete
    ("abort", 5),  # notify, [add at destination], abort, [delete at destination]
    ("address", 5),  # modify with a new IP address
)

# Chances of the optional steps of an operation.
P_NEW_OP = 0.5  # a step starts a new operation (while fewer than CONCURRENCY run)
P_DOWN_BEFORE_REMOVE = 0.5  # the tap goes down before it is deleted
P_SOURCE_DOWN = 0.3  # a migrating VM's source tap goes down before activation
P_DEST_TAP = 0.6  # an aborted migration had its destination tap created

MIN_POD_FABRIC = 4  # fewer switches: a chain of hypervisors
HV_UPLINK = 1  # a hypervisor's port to its pod switch; VM ports come after it
FIRST_VM_PORT = 2
MAX_OFPORT = 0xFEFF


# -- topology -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Fabric:
    topology: Topology
    hypervisors: list[str]
    pods: int
    description: str


def pod_count(switches: int) -> int:
    """About sqrt(switches) - 1 pods: 31 pods of about 31 hypervisors for 1,000."""
    return max(1, round(math.sqrt(switches)) - 1)


def build_fabric(switches: int) -> Fabric:
    """1 core, P pods, the rest hypervisors; tiny sizes fall back to a chain."""
    topo = Topology()
    pods = pod_count(switches) if switches >= MIN_POD_FABRIC else 0
    if pods == 0:
        hvs = [f"hv{i:04d}" for i in range(1, switches + 1)]
        for i, hv in enumerate(hvs):
            topo.add_switch(hv, 0x10000 + i)
        for a, b in itertools.pairwise(hvs):
            topo.add_link(a, 1000, b, 1001)
        return Fabric(topo, hvs, 0, f"{switches} hypervisors in a chain")
    topo.add_switch("core", 1)
    pod_names = [f"pod{i:02d}" for i in range(1, pods + 1)]
    for i, pod in enumerate(pod_names):
        topo.add_switch(pod, 0x100 + i)
        topo.add_link("core", i + 1, pod, 1)
    hvs = [f"hv{i:04d}" for i in range(1, switches - pods)]
    next_port = dict.fromkeys(pod_names, 2)
    for i, hv in enumerate(hvs):
        pod = pod_names[i % pods]
        topo.add_switch(hv, 0x10000 + i)
        topo.add_link(pod, next_port[pod], hv, HV_UPLINK)
        next_port[pod] += 1
    per_pod = math.ceil(len(hvs) / pods)
    text = (
        f"1 core, {pods} pod switches linked to it, {len(hvs)} hypervisors "
        f"(up to {per_pod} per pod) each linked to its pod switch"
    )
    return Fabric(topo, hvs, pods, text)


# -- the timed cluster --------------------------------------------------------
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
            self.stats[cid].switches = sum(1 for sw in ctl.switches() if ctl.mastered(sw.name))
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

    def _timed(self, ctl: Controller, what: str, call: Callable[[], Output[Any]]) -> None:
        self._run(ctl, self._call(ctl, what, call))

    @property
    def events(self) -> int:
        return sum(self.port_events.values())

    def port_event(self, ev: PortEvent) -> None:
        ctl = self.masters[ev.ovs]
        self.port_events[ev.kind.value] += 1
        self.stats[ctl.me].own_events += 1
        self._timed(ctl, "port_event", lambda: ctl.port_event(ev, self.sim.now))

    def notify(self, vm: str, source: str, destination: str) -> str:
        ctl = self.leader
        request = NotifyRequest(vm, source, destination)
        out = self._call(ctl, "notify", functools.partial(ctl.notify, request, self.sim.now))
        self.notifies += 1
        self._run(ctl, out)
        assert out.reply is not None
        return out.reply.migration.id

    def abort(self, migration_id: str) -> None:
        ctl = self.leader
        out = self._call(ctl, "abort", functools.partial(ctl.abort, migration_id, self.sim.now))
        self.aborts += 1
        self._run(ctl, out)

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
        """One queued item, as `SimCluster.deliver` hands it over (the call timed)."""
        ctl, msg, now = self.sim.controllers[item.to], item.message, self.sim.now
        stats = self.stats[ctl.me]
        if isinstance(msg, Stored):
            stats.store_updates += 1
            self._timed(ctl, "stored", lambda: ctl.stored(msg.record, now))
            return
        stats.handshake_messages += 1
        if isinstance(msg, VPortSync):
            out = self._call(ctl, "vport_sync", lambda: ctl.vport_sync(msg, now))
            self._run(ctl, out)
            if out.reply is not None:
                self.sim.queue.append(InFlight(msg.leader, out.reply))
            return
        self._timed(ctl, "sync_answered", lambda: ctl.sync_answered(msg, now))


# -- the VM manager's workload ------------------------------------------------
@dataclass(slots=True)
class VM:
    mac: str
    ovs: str
    port: int
    port_name: str
    iface_id: str
    vm_id: str
    ips: tuple[str, ...] = ()


Step = Iterator[None]


class Workload:
    """A deterministic VM manager: interleaved operations, one action per step."""

    def __init__(self, cluster: TimedCluster, hypervisors: list[str], seed: int = SEED) -> None:
        self.cluster = cluster
        self.hypervisors = hypervisors
        self.rng = random.Random(seed)
        self.vms: dict[str, VM] = {}
        self.idle: list[VM] = []  # VMs no operation is using, settled cluster-wide
        self.settling: list[VM] = []  # done, idle once the cluster has heard of it
        self.next_port = dict.fromkeys(hypervisors, FIRST_VM_PORT)
        self.ops: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self._kinds = [name for name, _ in MIX]
        self._weights = [weight for _, weight in MIX]

    # -- helpers ---------------------------------------------------------
    def _uuid(self) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

    def _mac(self) -> str:
        while True:
            n = self.rng.getrandbits(24)
            mac = f"fa:16:3e:{n >> 16:02x}:{(n >> 8) & 0xFF:02x}:{n & 0xFF:02x}"
            if mac not in self.vms:
                return mac

    def _port(self, hv: str) -> int:
        port = self.next_port[hv]
        self.next_port[hv] = FIRST_VM_PORT if port >= MAX_OFPORT else port + 1
        return port

    def _event(self, kind: EventKind, vm: VM, ovs: str, port: int, up: bool = False) -> None:
        self.cluster.port_event(
            PortEvent(kind, ovs, port, vm.mac, vm.port_name, up, vm.ips, vm.iface_id, vm.vm_id)
        )

    def _take_idle(self) -> VM | None:
        if not self.idle:
            return None
        i = self.rng.randrange(len(self.idle))
        self.idle[i], self.idle[-1] = self.idle[-1], self.idle[i]
        return self.idle.pop()

    def _other_hv(self, hv: str) -> str:
        while True:
            dst = self.rng.choice(self.hypervisors)
            if dst != hv:
                return dst

    def settle(self) -> None:
        """Called after a delivery: what finished before it is known everywhere."""
        self.idle.extend(self.settling)
        self.settling.clear()

    # -- operations ------------------------------------------------------
    def start(self) -> Step:
        kind = self.rng.choices(self._kinds, self._weights)[0]
        movable = len(self.hypervisors) > 1
        vm = self._take_idle() if kind != "boot" and movable else None
        if vm is None:
            kind = "boot"
        self.ops[kind] += 1
        if vm is None:
            return self._boot()
        op = {
            "migrate": self._migrate,
            "flap": self._flap,
            "remove": self._remove,
            "abort": self._abort,
            "address": self._address,
        }[kind]
        return op(vm)

    def _boot(self) -> Step:
        hv = self.rng.choice(self.hypervisors)
        mac = self._mac()
        name = f"tap{self._uuid()[:11]}"
        vm = VM(mac, hv, self._port(hv), name, self._uuid(), self._uuid())
        self.vms[mac] = vm
        self._event(EventKind.ADD, vm, hv, vm.port)
        yield
        self._event(EventKind.MODIFY, vm, hv, vm.port, up=True)
        yield
        self.settling.append(vm)

    def _flap(self, vm: VM) -> Step:
        self._event(EventKind.MODIFY, vm, vm.ovs, vm.port, up=False)
        yield
        self._event(EventKind.MODIFY, vm, vm.ovs, vm.port, up=True)
        yield
        self.settling.append(vm)

    def _address(self, vm: VM) -> Step:
        n = self.rng.getrandbits(24)
        vm.ips = (f"10.{n >> 16}.{(n >> 8) & 0xFF}.{n & 0xFF}",)
        self._event(EventKind.MODIFY, vm, vm.ovs, vm.port, up=True)
        yield
        self.settling.append(vm)

    def _remove(self, vm: VM) -> Step:
        if self.rng.random() < P_DOWN_BEFORE_REMOVE:
            self._event(EventKind.MODIFY, vm, vm.ovs, vm.port, up=False)
            yield
        self._event(EventKind.DELETE, vm, vm.ovs, vm.port)
        del self.vms[vm.mac]
        yield

    def _handshake(self, vm: VM, dst: str) -> Iterator[str | None]:
        """Notify, then wait (without acting) for the leader's answer."""
        try:
            mid = self.cluster.notify(vm.mac, vm.ovs, dst)
        except CoreError as err:
            self.errors[f"notify: {err.code}"] += 1
            yield None
            return
        yield None
        while mid not in self.cluster.answers:
            yield None
        answer = self.cluster.answers.pop(mid)  # read once: kept no longer (see _run)
        if not answer.ok:
            self.outcomes["refused"] += 1
            return
        yield mid

    def _migrate(self, vm: VM) -> Step:
        dst = self._other_hv(vm.ovs)
        mid = None
        for mid in self._handshake(vm, dst):  # the last value is the answer
            if mid is None:
                yield
        if mid is None:
            self.settling.append(vm)
            return
        port = self._port(dst)
        self._event(EventKind.ADD, vm, dst, port)
        yield
        if self.rng.random() < P_SOURCE_DOWN:  # the VM paused at the source
            self._event(EventKind.MODIFY, vm, vm.ovs, vm.port, up=False)
            yield
        self._event(EventKind.MODIFY, vm, dst, port, up=True)  # activation
        yield
        self._event(EventKind.DELETE, vm, vm.ovs, vm.port)
        vm.ovs, vm.port = dst, port
        self.outcomes["migrated"] += 1
        yield
        self.settling.append(vm)

    def _abort(self, vm: VM) -> Step:
        dst = self._other_hv(vm.ovs)
        mid = None
        for mid in self._handshake(vm, dst):
            if mid is None:
                yield
        if mid is None:
            self.settling.append(vm)
            return
        port = None
        if self.rng.random() < P_DEST_TAP:
            port = self._port(dst)
            self._event(EventKind.ADD, vm, dst, port)
            yield
        self.cluster.abort(mid)
        self.outcomes["aborted"] += 1
        yield
        if port is not None:  # a failed destination's delete must not remove the VM
            self._event(EventKind.DELETE, vm, dst, port)
            yield
        self.settling.append(vm)

    # -- the scheduler ---------------------------------------------------
    def run(self, events: int) -> int:
        """Interleave operations until `events` port events were sent; the step count."""
        inflight: list[Step] = []
        step = 0
        cluster = self.cluster
        rng = self.rng
        while cluster.events < events:
            step += 1
            if len(inflight) < CONCURRENCY and (not inflight or rng.random() < P_NEW_OP):
                inflight.append(self.start())
                i = len(inflight) - 1
            else:
                i = rng.randrange(len(inflight))
            try:
                next(inflight[i])
            except StopIteration:
                inflight[i] = inflight[-1]
                inflight.pop()
            if step % DELIVER_EVERY == 0:
                cluster.deliver_all()
                self.settle()
            if step % TICK_EVERY == 0:
                cluster.advance(1.0)
        cluster.deliver_all()
        self.settle()
        self.outcomes["in flight at the end"] = len(inflight)
        return step


# -- memory -------------------------------------------------------------------
def traced_bytes(roots: object, leave_out: tuple[type, ...] = ()) -> int:
    """Bytes tracemalloc sees allocated to rebuild `roots` from a pickle of them.

    Objects of the types in `leave_out` (and what only they reach) are not
    counted: the pickle refers to them by id instead of copying them.
    """
    keep: dict[int, object] = {}

    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> int | None:
            if not isinstance(obj, leave_out):
                return None
            keep[id(obj)] = obj
            return id(obj)

    class _Unpickler(pickle.Unpickler):
        def persistent_load(self, pid: Any) -> object:
            return keep[pid]

    buf = io.BytesIO()
    _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(roots)
    data = buf.getvalue()
    del buf
    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        copy = _Unpickler(io.BytesIO(data)).load()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        if not was_tracing:
            tracemalloc.stop()
    del copy
    return after - before


_NOT_STATE = (type, ModuleType, FunctionType, BuiltinFunctionType, Enum)


def walked_bytes(roots: Iterable[object], leave_out: tuple[type, ...] = ()) -> int:
    """`sys.getsizeof` over every object reachable from `roots` but not through an
    object of a type in `leave_out`."""
    seen: set[int] = set()
    skip = (bool, *_NOT_STATE, *leave_out)
    total = 0
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or obj is None or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


# What a controller holds besides its vPort state: the topology (each controller's
# own copy, reported apart) and, on the leader, the migrations (reported apart).
NOT_VPORT_STATE = (Topology, Coordinator)


@dataclass
class Memory:
    live_vports: int
    tombstones: int
    per_controller: dict[str, dict[str, int]]
    cluster_bytes: int
    topology_bytes: int

    @property
    def worst_bytes_per_vport(self) -> float:
        worst = max(m["state_traced"] for m in self.per_controller.values())
        return worst / self.live_vports if self.live_vports else 0.0


def measure_memory(sim: SimCluster) -> Memory:
    """Each controller as a whole, its parts told apart by their types (see the module doc)."""
    per: dict[str, dict[str, int]] = {}
    for cid, ctl in sim.controllers.items():
        state = traced_bytes(ctl, NOT_VPORT_STATE)
        per[cid] = {
            "table_traced": traced_bytes(ctl, (*NOT_VPORT_STATE, FlowCompiler)),
            "flows_traced": traced_bytes(ctl, (*NOT_VPORT_STATE, VPortTable)),
            "state_traced": state,
            "state_walked": walked_bytes([ctl], NOT_VPORT_STATE),
            "coordinator_traced": traced_bytes(ctl, (Topology,)) - state if ctl.leading else 0,
        }
    first = next(iter(sim.controllers.values()))
    records = first.records()
    live = sum(1 for r in records if r.present)
    return Memory(
        live_vports=live,
        tombstones=len(records) - live,
        per_controller=per,
        cluster_bytes=traced_bytes(list(sim.controllers.values()), (Topology,)),
        topology_bytes=traced_bytes(first) - traced_bytes(first, (Topology,)),
    )


# -- the run ------------------------------------------------------------------
@dataclass
class Result:
    command: str
    events: int
    switches: int
    controllers: int
    fabric: str
    seed: int
    build_seconds: float
    precompute_seconds: float
    wall_seconds: float
    cpu_seconds: float
    gc_seconds: float
    gc_collections: dict[int, int]
    steps: int
    port_events: dict[str, int]
    notifies: int
    aborts: int
    messages_delivered: int
    flow_mods: int
    ops: dict[str, int]
    outcomes: dict[str, int]
    errors: dict[str, int]
    per_controller: dict[str, dict[str, Any]]
    memory: dict[str, Any]
    machine: dict[str, str]
    date: str
    goals: list[dict[str, Any]]


def command_line(events: int, switches: int, controllers: int) -> str:
    """The command as Markdown: `make bench` runs the default sizes."""
    cmd = f"`vportctl bench --events {events} --switches {switches} --controllers {controllers}`"
    if (events, switches, controllers) == (100_000, 1000, 3):
        return f"`make bench` (= {cmd})"
    return cmd


def machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except OSError:
        commit = ""
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "load_average": f"{load} (1 / 5 / 15 min, at the start)",
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": str(os.cpu_count() or 0),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "commit": commit or "unknown",
    }


def bench(events: int, switches: int, controllers: int, seed: int = SEED) -> Result:
    """Run the workload and measure; nothing is printed or written."""
    mach = machine()
    fabric = build_fabric(switches)
    topo = fabric.topology
    t0 = time.perf_counter()
    topo.precompute()
    precompute = time.perf_counter() - t0

    t0 = time.perf_counter()
    sim = SimCluster.build(topo, controllers, fabric=False)
    build = time.perf_counter() - t0
    base_mods = sim.flow_mods
    cluster = TimedCluster(sim)
    workload = Workload(cluster, fabric.hypervisors, seed)

    gc.collect()
    cluster.watch_gc()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    try:
        steps = workload.run(events)
    finally:
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        cluster.unwatch_gc()

    per = {
        cid: {
            "switches": s.switches,
            "own_port_events": s.own_events,
            "store_updates": s.store_updates,
            "handshake_messages": s.handshake_messages,
            "events": s.events,
            "seconds": s.total_seconds,
            "seconds_by_call": dict(s.seconds),
            "gc_seconds": s.gc_seconds,
            "calls": dict(s.calls),
            "events_per_second": s.events_per_second,
            "flow_mods": s.flow_mods,
            "leader": sim.controllers[cid].leading,
        }
        for cid, s in cluster.stats.items()
    }
    memory = measure_memory(sim)
    slowest = min(s.events_per_second for s in cluster.stats.values())
    goals = [
        {
            "goal": "events/s per controller (slowest controller)",
            "target": f">= {GOAL_EVENTS_PER_S:,}",
            "measured": round(slowest),
            "pass": slowest >= GOAL_EVENTS_PER_S,
        },
        {
            "goal": "bytes per vPort (one controller's table + flows, worst controller)",
            "target": f"<= {GOAL_BYTES_PER_VPORT:,}",
            "measured": round(memory.worst_bytes_per_vport),
            "pass": memory.worst_bytes_per_vport <= GOAL_BYTES_PER_VPORT,
        },
    ]
    return Result(
        command=command_line(events, switches, controllers),
        events=events,
        switches=switches,
        controllers=controllers,
        fabric=f"{fabric.description}; root of the default routes and flooding: {topo.root}",
        seed=seed,
        build_seconds=build,
        precompute_seconds=precompute,
        wall_seconds=wall,
        cpu_seconds=cpu,
        gc_seconds=cluster.gc_seconds,
        gc_collections=dict(sorted(cluster.gc_collections.items())),
        steps=steps,
        port_events=dict(cluster.port_events),
        notifies=cluster.notifies,
        aborts=cluster.aborts,
        messages_delivered=cluster.deliveries,
        flow_mods=sim.flow_mods - base_mods,
        ops=dict(workload.ops),
        outcomes=dict(workload.outcomes),
        errors=dict(workload.errors),
        per_controller=per,
        memory={
            **asdict(memory),
            "worst_bytes_per_vport": memory.worst_bytes_per_vport,
            "cluster_bytes_per_vport": (
                memory.cluster_bytes / memory.live_vports if memory.live_vports else 0.0
            ),
        },
        machine=mach,
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        goals=goals,
    )


# -- reporting ----------------------------------------------------------------
def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def summary(r: Result) -> str:
    lines = [
        f"vportd core bench: {r.events:,} port events, {r.switches:,} switches, "
        f"{r.controllers} controllers",
        f"  wall {r.wall_seconds:.2f} s ({r.events / r.wall_seconds:,.0f} port events/s overall, "
        f"{100 * r.cpu_seconds / r.wall_seconds:.0f}% of a core, GC {r.gc_seconds:.2f} s), "
        f"precompute {r.precompute_seconds:.2f} s, cluster build {r.build_seconds:.2f} s",
    ]
    for cid, c in r.per_controller.items():
        lead = " (leader)" if c["leader"] else ""
        lines.append(
            f"  {cid}{lead}: {c['events']:,} events in {c['seconds']:.2f} s = "
            f"{c['events_per_second']:,.0f} events/s (GC {c['gc_seconds']:.2f} s), "
            f"{c['flow_mods']:,} flow mods"
        )
    m = r.memory
    lines.append(
        f"  memory: {m['live_vports']:,} live vPorts; worst controller "
        f"{m['worst_bytes_per_vport']:,.0f} B/vPort (table + flows); whole cluster "
        f"{_mib(m['cluster_bytes'])} = {m['cluster_bytes_per_vport']:,.0f} B/vPort"
    )
    for g in r.goals:
        verdict = "PASS" if g["pass"] else "FAIL"
        lines.append(f"  {verdict}: {g['goal']}: {g['measured']:,} (goal {g['target']})")
    return "\n".join(lines)


def _without_gc(r: Result) -> str:
    rates = []
    for cid, c in r.per_controller.items():
        busy = c["seconds"] - c["gc_seconds"]
        rates.append(f"{cid} {c['events'] / busy if busy > 0 else 0.0:,.0f} events/s")
    return ", ".join(rates)


# What the figures were before the changes that met its goals (commit 634c2de).
BEFORE = (
    "**What changed.** Earlier history: from commit `634c2de` (c0 25,750 events/s, 1,914 B "
    "per vPort) floods became one flow per switch behind a gate per member, the compiler "
    "incremental, a VM's forwarding flow held as MAC -> port, records and tombstones "
    "lighter; that met the goal (c0 54,069 events/s at `0bea616`). The hand-over flows "
    "(make-before-break in the data plane, what brings the migration downtime below OVS's "
    "own learning switch: see the migration section) then added about 57% flow mods "
    "(c0 105,224 -> 165,063) and put the leader under the goal (c0 41,966 events/s, "
    "1,003 B per vPort at `e4b101d`). Since (commits `239d086` to `79168ce`): a hand-over "
    "flow takes the place of the VM's forwarding flow on its switch (priority 100, same "
    "match, cookie `0x06`), so one flow mod makes it and the flow mod that re-points or "
    "deletes the forwarding flow on activation (or restores it on rollback) ends it, "
    "instead of an add and a delete of a priority-150 flow of its own: flow mods c0 "
    "165,063 -> 138,266, c1 102,806 -> 87,777, c2 103,181 -> 88,201, the same deliveries "
    "(`tests/core/test_handover.py`, `test_stateful.py`). Fewer objects for the cyclic GC: "
    "a path's hops are plain tuples (the GC stops tracking them; the path cache, which "
    "held 63,000 hop objects after such a run, is bounded), the leader's migration records "
    "have slots, messages and changes are written slot by slot, a late peer copy is "
    "refused without an exception, the leader's syncs share one message per variant. "
    "The leader observes only entries with a migration mark, among its open migrations. "
    "Paired runs of the previous commit (`1f76c70`) and this one, alternated on this "
    "machine while it was quiet (the same timing as here): time in c0 2.25 to 2.41 s "
    "before (40,200 to 42,900 events/s, GC 0.25 to 0.32 s), 1.83 to 2.07 s after (46,800 "
    "to 52,800 events/s, GC 0.15 to 0.18 s); timed by the thread's CPU time under other "
    "load: 2.88 to 3.04 s before, 2.21 to 2.31 s after. Memory: 1,003 -> 995 B per vPort "
    "(a VM's flow record lost the slot of its hand-over flows). Then (`528a0d9` to "
    "`6da6b30`): MACs already seen in canonical form skip the regular expression (61 "
    "instead of 482 ns per `parse_mac`), a VM's forwarding flow is built inline, an own "
    "port event's change is the `PortEventSync` it is synced as: c0's thread CPU time "
    "9-14% lower in paired runs. Three runs of this command on the quiet machine "
    "(load average 1.1-1.2, 100% of a core): c0 51,433, 53,233 and 53,406 events/s, "
    "995 B per vPort: **met**, by 3 to 7%. Under other load (load average 2-4 on the 2 "
    "cores) the same code measured c0 40,000 to 47,000 events/s: the margin is thin. "
    "Next levers: the leader's vPort sync to itself (a third of its handshake messages "
    "go through the full merge; applying it in `notify` needs the runtime to barrier the "
    "leader's own flow mods before its sync complete counts), fewer objects per flow mod "
    "(a `Flow` and a `FlowMod` each), the flood rewrites as VMs join and leave (~9% of c0). "
    "Since the store of record carries claim 5's syncs, a controller's events count every "
    "record the store's watch brings it, its own writes included, and its memory is "
    "measured on the `Controller` object as a whole: the figures above are not comparable "
    "one to one with these."
)


def markdown(r: Result) -> str:
    m = r.memory
    mach = r.machine
    out = [
        SECTION,
        "",
        f"Command: {r.command}  ",
        f"Date: {r.date}, commit `{mach['commit']}`  ",
        f"Machine: {mach['platform']}; {mach['cpu']}, {mach['cores']} cores; {mach['python']}; "
        f"load average {mach['load_average']}",
        "",
        "| goal | target | measured | result |",
        "|---|---:|---:|---|",
    ]
    for g in r.goals:
        verdict = "**pass**" if g["pass"] else "**FAIL**"
        out.append(f"| {g['goal']} | {g['target']} | {g['measured']:,} | {verdict} |")
    total_pe = sum(r.port_events.values())
    kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(r.port_events.items()))
    ops = ", ".join(f"{k} {v:,}" for k, v in sorted(r.ops.items(), key=lambda kv: -kv[1]))
    outcomes = ", ".join(f"{k} {v:,}" for k, v in r.outcomes.items())
    errors = ", ".join(f"{k} {v:,}" for k, v in r.errors.items()) or "none"
    out += [
        "",
        "**Set-up.** "
        f"Fabric: {r.fabric}; VMs on hypervisors only. `Topology.precompute()` "
        f"took {r.precompute_seconds:.2f} s and building the cluster (every switch "
        f"connected, base flows) {r.build_seconds:.2f} s, both before timing. "
        f"{r.controllers} `Controller`s in one process (`SimCluster`, no fake data "
        "plane: flow mods are counted, not applied), switches spread round robin, "
        "c0 leading; stored records and the handshake's messages go through the sim's "
        "FIFO queue, delivered "
        f"every {DELIVER_EVERY} workload steps; the clock moves 1 s, with a `tick` "
        f"of every controller, every {TICK_EVERY} steps.",
        "",
        "**Workload** (seed "
        f"{r.seed}, deterministic): a VM manager with up to {CONCURRENCY} operations in "
        f"flight, interleaved one action at a time, {r.steps:,} steps. Operations: {ops}. "
        "Boot = add, modify up; migrate = leader notify, vPort syncs, both sync-complete "
        "answers, then add at the destination, (30%) modify down at the source, modify up "
        "at the destination (activation), delete at the source; flap = modify down, up; "
        "remove = (50%) modify down, delete; abort = notify, answers, (60%) add at the "
        "destination, abort, delete of the destination port; address = modify with a new "
        f"IP. Outcomes: {outcomes}. Refused requests: {errors}.",
        "",
        f"Port events: {total_pe:,} ({kinds}); plus {r.notifies:,} notifies and "
        f"{r.aborts:,} aborts; {r.messages_delivered:,} stored records and messages "
        "delivered; "
        f"{r.flow_mods:,} flow mods generated.",
        "",
        f"Wall time of the run: {r.wall_seconds:.2f} s, i.e. {total_pe / r.wall_seconds:,.0f} "
        "port events/s for the whole cluster on one core (this includes the workload "
        "generator and the message queue). The process used "
        f"{r.cpu_seconds:.2f} s of CPU in that time ({100 * r.cpu_seconds / r.wall_seconds:.0f}% "
        "of a core): the timings are wall-clock (`time.perf_counter`), so other load on "
        "the machine inflates them.",
        "",
        "**Per controller.** Time is measured around each call into the controller "
        "(`port_event`, `stored`, `vport_sync` and `sync_answered`, `notify`, `abort`, "
        "`tick`); its events are the port events of its own switches plus the records "
        "the store's watch brought it, its own writes among them "
        "(handshake messages, notifies and ticks cost time but count no event). "
        f"The cyclic GC paused the run {r.gc_seconds:.2f} s in all (collections per "
        f"generation: {r.gc_collections}); a pause lands in whichever call allocates "
        "when it is due, so it is shown apart. The GC runs with its default "
        "thresholds and nothing frozen (`gc.freeze()` is a daemon's lever, not used "
        "here), and the pauses count in events/s. One process holds the three "
        "controllers and the workload's own objects, so a full collection here scans "
        "all of them, about three times what a controller process of its own would "
        f"scan. Without the pauses, for information only: {_without_gc(r)}.",
        "",
        "| controller | switches | own port events | store updates | handshake msgs "
        "| time in controller | port_event / stored + handshake / notify + abort / tick "
        "| of which GC | events/s | flow mods |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for cid, c in r.per_controller.items():
        lead = " (leader)" if c["leader"] else ""
        by = c["seconds_by_call"]
        split = " / ".join(
            f"{sum(by.get(k, 0.0) for k in keys):.2f}"
            for keys in (
                ("port_event",),
                ("stored", "vport_sync", "sync_answered"),
                ("notify", "abort"),
                ("tick",),
            )
        )
        out.append(
            f"| {cid}{lead} | {c['switches']:,} | {c['own_port_events']:,} | "
            f"{c['store_updates']:,} | {c['handshake_messages']:,} | {c['seconds']:.2f} s | "
            f"{split} | {c['gc_seconds']:.2f} s | {c['events_per_second']:,.0f} | "
            f"{c['flow_mods']:,} |"
        )
    out += [
        "",
        "**Memory.** Measured after the run with `tracemalloc`: the bytes allocated to "
        "rebuild a `Controller` from a pickle of it, its `Topology` and the leader's "
        "coordinator left out (by type): its `table` (vPort records, tombstones included), "
        "`flows` (the flow compiler: installed flows of its switches, a VM's forwarding "
        "flow held as MAC -> port, where each VM's flows are, local ports) and mastership; "
        "`table` leaves the compiler out too, `flows` the table; a controller "
        "process of its own holds exactly those objects. Cross-check: `sys.getsizeof` "
        "summed over the live objects reachable from the same roots (counts dict slack "
        f"too). Per vPort = bytes / live vPorts ({m['live_vports']:,} live, "
        f"{m['tombstones']:,} tombstones of removed VMs). The compiler holds each "
        "VM's current entry (shared with the table), so `flows` alone counts those "
        "records too and table + flows is less than the sum.",
        "",
        "| controller | table | flows | table + flows | per vPort | cross-check "
        "(getsizeof walk) | coordinator |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    live = max(1, m["live_vports"])
    for cid, c in m["per_controller"].items():
        out.append(
            f"| {cid} | {_mib(c['table_traced'])} | {_mib(c['flows_traced'])} | "
            f"{_mib(c['state_traced'])} | {c['state_traced'] / live:,.0f} B | "
            f"{c['state_walked'] / live:,.0f} B | "
            f"{_mib(c['coordinator_traced']) if c['coordinator_traced'] else '-'} |"
        )
    out += [
        "",
        f"Whole cluster in this process (every `Controller` object, records shared "
        f"between the controllers as the sim shares them): {_mib(m['cluster_bytes'])}, "
        f"{m['cluster_bytes_per_vport']:,.0f} B per live vPort, topologies left out; "
        f"one controller's topology (with its caches) another {_mib(m['topology_bytes'])}.",
        "",
        BEFORE,
        "",
    ]
    return "\n".join(out)


def run_bench(events: int, switches: int, controllers: int, output: Path) -> int:
    result = bench(events, switches, controllers)
    print(summary(result))
    write_markdown(output, markdown(result))
    raw = output.parent / RESULTS
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(asdict(result), indent=2) + "\n")
    print(f"  written: {output}, {raw}")
    return 0
