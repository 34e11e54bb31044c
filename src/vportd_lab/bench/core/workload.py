"""The core benchmark's VM manager: a seeded mix of VM operations, interleaved step by step."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from vportd.core.errors import CoreError
from vportd.core.messages import EventKind, PortEvent
from vportd_lab.bench.core.timed import TimedCluster

SEED = 20140101
CONCURRENCY = 32  # VMM operations in flight at once
DELIVER_EVERY = 8  # scheduler steps between two deliveries of every queued message
TICK_EVERY = 1000  # scheduler steps per simulated second (and tick)

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

FIRST_VM_PORT = 2  # a hypervisor's port 1 is its uplink
MAX_OFPORT = 0xFEFF


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
