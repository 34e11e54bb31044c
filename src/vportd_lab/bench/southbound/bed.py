"""The southbound benchmark's bed: bridges on a private OVS, and a controller runtime in-process.

`Bed` builds S bridges hv0..hv{S-1} in a line of patch ports on a private
dummy-datapath Open vSwitch and adds VM ports as libvirt does; `controller()`
runs a `Runtime` on a fresh OpenFlow port, noting when its OVSDB monitor read
each snapshot and when the first switch connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from vportd.node.config import Config, parse_config
from vportd.node.runtime import Runtime
from vportd.southbound.openflow.connection import SwitchConnection
from vportd.southbound.openflow.incoming import PortInfo, PortReason
from vportd.southbound.ovsdb.monitor import OnSnapshot
from vportd.southbound.ovsdb.snapshot import Snapshot
from vportd_lab.bed.fabrics import VM
from vportd_lab.bed.ovs import PrivateOVS
from vportd_lab.bed.ports import free_port

WAIT = 120.0  # for one condition; generous: the bench fails rather than hangs
PATCH_BASE = 100


async def until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout:g} s")
        await asyncio.sleep(0.0005)


def vm_mac(k: int) -> str:
    return f"02:00:00:{k >> 16 & 0xFF:02x}:{k >> 8 & 0xFF:02x}:{k & 0xFF:02x}"


class FirstConnect:
    """The runtime's switch handler, noting when the first switch finished its handshake."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.at: float | None = None

    async def switch_connected(self, conn: SwitchConnection) -> None:
        if self.at is None:
            self.at = time.monotonic()
        await self.runtime.switch_connected(conn)

    def switch_disconnected(self, conn: SwitchConnection, reason: str) -> None:
        self.runtime.switch_disconnected(conn, reason)

    def port_status(self, conn: SwitchConnection, reason: PortReason, port: PortInfo) -> None:
        self.runtime.port_status(conn, reason, port)

    def packet_in(self, conn: SwitchConnection, in_port: int, data: bytes) -> None:
        self.runtime.packet_in(conn, in_port, data)


@dataclass
class BenchController:
    """A controller runtime the bench started, and what it saw of the port being added."""

    runtime: Runtime
    task: asyncio.Task[None]
    first_connect: FirstConnect
    port: int
    snapshot: Snapshot = field(default_factory=lambda: Snapshot({}, {}))  # being fed
    handed: float = 0.0  # when the loop started on it
    watching: str | None = None  # the port being added
    seen: dict[str, float] = field(default_factory=dict)  # its commit, ofport, link_up


def _watch(ctl: BenchController, snap: Snapshot) -> None:
    """Note when the monitor first read the watched port, its ofport, its link up."""
    row = None if ctl.watching is None else snap.ifaces.get(ctl.watching)
    if row is None:
        return
    ctl.seen.setdefault("commit", snap.taken)
    if row.ofport is not None and not row.pending:
        ctl.seen.setdefault("ofport", snap.taken)
    if row.link_up:
        ctl.seen.setdefault("link_up", snap.taken)


class Bed:
    """S bridges hv0..hv{S-1} in a line of patch ports on a private Open vSwitch."""

    def __init__(self, ovs: PrivateOVS, switches: int) -> None:
        self.ovs = ovs
        self.names = [f"hv{i}" for i in range(switches)]

    async def vsctl(self, *args: str) -> str:
        return await asyncio.to_thread(self.ovs.vsctl, *args)

    async def build(self) -> None:
        for i, name in enumerate(self.names):
            await asyncio.to_thread(self.ovs.add_bridge, name, i + 1)
        for i in range(len(self.names) - 1):
            a, b = f"hv{i}", f"hv{i + 1}"
            await self.vsctl(
                "add-port", a, f"{a}-{b}", "--", "set", "Interface", f"{a}-{b}", "type=patch",
                f"options:peer={b}-{a}", f"ofport_request={PATCH_BASE + i + 1}",
                "--", "add-port", b, f"{b}-{a}", "--", "set", "Interface", f"{b}-{a}",
                "type=patch", f"options:peer={a}-{b}", f"ofport_request={PATCH_BASE + i}",
            )  # fmt: skip

    def port(self, k: int) -> VM:
        """VM port k, as libvirt adds it (a dummy interface, `ofport_request`, external_ids)."""
        return VM(self.names[k % len(self.names)], f"vm{k}", k // len(self.names) + 1, vm_mac(k))

    def add_port_args(self, k: int, wait: bool = True) -> list[str]:
        """`ovs-vsctl add-port` of VM port k; it waits for ovs-vswitchd unless not `wait`."""
        no_wait = [] if wait else ["--no-wait"]
        return [
            "ovs-vsctl",
            f"--db={self.ovs.db}",
            "--timeout=30",
            *no_wait,
            *self.port(k).vsctl_args(),
        ]

    async def point(self, port: int) -> None:
        """Point every bridge at 127.0.0.1:`port`, in one ovs-vsctl call."""
        args: list[str] = []
        for n, name in enumerate(self.names):
            args += [
                "--", f"--id=@c{n}", "create", "Controller",
                f'target="tcp:127.0.0.1:{port}"', "max_backoff=1000",
                "--", "set", "Bridge", name, f"controller=@c{n}",
            ]  # fmt: skip
        await self.vsctl(*args)

    async def wipe_flows(self) -> None:
        for name in self.names:
            await asyncio.to_thread(self.ovs.ofctl, "del-flows", bridge=name)

    async def ofctl_flows(self) -> int:
        total = 0
        for name in self.names:
            text = await asyncio.to_thread(self.ovs.ofctl, "dump-flows", bridge=name)
            total += sum("cookie=" in line for line in text.splitlines())
        return total

    def config(self, port: int) -> Config:
        return parse_config(
            f'[controller]\nid = "bench"\n[openflow]\nlisten = "127.0.0.1:{port}"\n'
            f'[ovsdb]\nremotes = ["{self.ovs.db}"]\n[topology]\nlldp = false\n'
        )

    @contextlib.asynccontextmanager
    async def controller(self, vms: int = 0) -> AsyncIterator[BenchController]:
        """A runtime on a fresh port, listening and holding `vms` VMs; not pointed at yet."""
        port = free_port()
        rt = Runtime(self.config(port))
        first = FirstConnect(rt)
        rt.openflow.handler = first
        ctl = BenchController(rt, asyncio.create_task(rt.run()), first, port)
        for monitor in rt.monitors:
            monitor.on_snapshot = _noting(ctl, monitor.on_snapshot)
        try:
            await until(lambda: rt.openflow.ready.is_set() or ctl.task.done(), "listening")
            if ctl.task.done():
                await ctl.task
            await until(lambda: rt.core.vport_count() >= vms, f"{vms} VMs read from OVSDB")
            yield ctl
        finally:
            ctl.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ctl.task

    def settled(self, rt: Runtime) -> bool:
        return rt.idle and all(
            name in rt.switches.adopted and rt.switches.stats.reconciles[name]
            for name in self.names
        )


def _noting(ctl: BenchController, feed: OnSnapshot) -> OnSnapshot:
    async def on_snapshot(snap: Snapshot) -> None:
        ctl.handed = time.monotonic()
        ctl.snapshot = snap
        _watch(ctl, snap)
        handed = feed(snap)
        if handed is not None:
            await handed

    return on_snapshot


@contextlib.asynccontextmanager
async def private_ovs() -> AsyncIterator[PrivateOVS]:
    rundir = Path(tempfile.mkdtemp(prefix="ovsb"))  # short: unix sockets take 108 chars
    ovs = PrivateOVS(rundir, dummy=True)
    try:
        await asyncio.to_thread(ovs.start)
        yield ovs
    finally:
        await asyncio.to_thread(ovs.stop)
        shutil.rmtree(rundir, ignore_errors=True)


@contextlib.asynccontextmanager
async def fabric(switches: int) -> AsyncIterator[Bed]:
    async with private_ovs() as ovs:
        bed = Bed(ovs, switches)
        await bed.build()
        yield bed
