"""A real cluster as processes: a private etcd, N `vportd` processes, dummy-datapath OVS.

For end-to-end tests and the cluster benchmark. `Cluster` writes each
controller's config and token files into a directory, starts `vportd` as a
process (its log next to its config), points every bridge of the fabric at
every controller and waits until each bridge has a master that reconciled it.
Helpers talk to the controllers only through their REST API, as an operator
would. Two fabrics, both a line of dummy-datapath bridges: `DummyFabric` on
one OVS, joined by patch ports; `HostsFabric` with an OVS per hypervisor, as
in production, joined by links declared in OVSDB (each controller then reads
one OVSDB server per hypervisor).

Run as `python -m vportd_lab.bed.cluster --config FILE`, this module is `vportd`
with two optional instruments for measurements, switched on by environment
variables so that the controller's code stays as it ships:

- `VPORTD_TRACE=FILE`: one line `MONOTONIC_NS MAC ORIGIN` the first time each
  VM's entry is in this controller's table (ORIGIN: `own` from its OVS, a
  peer's id, or `store` from the etcd watch); CLOCK_MONOTONIC is one clock for
  every process of the machine, so a benchmark compares these times with its own.
- `VPORTD_PROFILE=FILE`: cProfile over the whole run, its stats written to FILE
  when the process ends on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, Protocol, TypeVar

import httpx

from vportd.cluster.http import async_transport
from vportd_lab.bed.etcd import PrivateEtcd
from vportd_lab.bed.ovs import OVSError, PrivateOVS
from vportd_lab.bed.ports import free_port

TOKEN = "vmm-token-0123456789abcdef"
PEER_TOKEN = "peer-token-0123456789abcdef"
WAIT = 30.0  # generous: a wait for a condition, never a threshold
TRACE_ENV = "VPORTD_TRACE"
PROFILE_ENV = "VPORTD_PROFILE"


async def until(
    condition: Callable[[], bool | Awaitable[bool]],
    what: str,
    timeout: float = WAIT,
    interval: float = 0.05,
) -> None:
    """Poll `condition` (plain or async) until it holds; fail naming `what` after `timeout` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


class FabricLike(Protocol):
    """What a cluster needs of a fabric: its bridges, their OVS, the OVSDB servers to read."""

    @property
    def names(self) -> list[str]: ...

    @property
    def remotes(self) -> list[str]: ...

    def ovs_of(self, bridge: str) -> PrivateOVS: ...


F = TypeVar("F", bound=FabricLike)


@dataclass
class NodeSettings:
    """What every controller of a cluster is configured with (beyond its addresses)."""

    log_level: str = "debug"
    activation_timeout: float = 10.0
    sync_timeout: float = 2.0
    lease_ttl: int = 3  # the controller's default (config.StoreSection)
    traced: bool = False  # run the instrumented entry point with a trace file
    profile: bool = False  # and cProfile (stats in {id}.prof)


@dataclass
class Node:
    """One `vportd` process."""

    id: str
    dir: Path
    ovsdb: list[str]
    etcd: str
    openflow_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    activation_timeout: float = 10.0
    settings: NodeSettings = field(default_factory=NodeSettings)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def target(self) -> str:
        return f"tcp:127.0.0.1:{self.openflow_port}"

    @property
    def log(self) -> Path:
        return self.dir / f"{self.id}.log"

    @property
    def trace(self) -> Path:
        return self.dir / f"{self.id}.trace"

    @property
    def profile(self) -> Path:
        return self.dir / f"{self.id}.prof"

    def config(self) -> str:
        s = self.settings
        return f"""
[controller]
id = "{self.id}"
[openflow]
listen = "127.0.0.1:{self.openflow_port}"
[ovsdb]
remotes = {json.dumps(self.ovsdb)}
[api]
listen = "127.0.0.1:{self.api_port}"
token_file = "{self.dir / "token"}"
peer_token_file = "{self.dir / "peer-token"}"
[store]
kind = "etcd"
endpoints = ["{self.etcd}"]
lease_ttl = {s.lease_ttl}
[migration]
sync_timeout = {s.sync_timeout}
activation_timeout = {self.activation_timeout}
completion_timeout = 5.0
[topology]
lldp = false
[logging]
level = "{s.log_level}"
"""

    def start(self) -> None:
        path = self.dir / f"{self.id}.toml"
        path.write_text(self.config())
        module, env = "vportd.node.daemon", dict(os.environ)
        if self.settings.traced or self.settings.profile:
            module = "vportd_lab.bed.cluster"
            if self.settings.traced:
                self.trace.unlink(missing_ok=True)  # a restarted node traces afresh
                env[TRACE_ENV] = str(self.trace)
            if self.settings.profile:
                env[PROFILE_ENV] = str(self.profile)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", module, "--config", str(path)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=env,
            )  # fmt: skip

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                self.proc.wait(10)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.api, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=15.0,
            transport=async_transport(),
        )  # fmt: skip

    async def get(self, path: str) -> Any:
        async with self.client() as c:
            r = await c.get(path)
            r.raise_for_status()
            return r.json()

    async def healthy(self) -> bool:
        try:
            async with self.client() as c:
                r = await c.get("/healthz")
                return r.status_code == 200 and bool(r.json().get("ok", True))  # noqa: PLR2004
        except httpx.HTTPError:
            return False

    def traced(self) -> dict[str, tuple[int, str]]:
        """From the trace file: each VM's first time (ns, CLOCK_MONOTONIC) in the table, origin."""
        seen: dict[str, tuple[int, str]] = {}
        if not self.trace.exists():
            return seen
        for line in self.trace.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:  # noqa: PLR2004 (a line cut by a kill is skipped)
                seen.setdefault(parts[1], (int(parts[0]), parts[2]))
        return seen


@dataclass
class Cluster(Generic[F]):
    dir: Path
    fabric: F
    etcd: PrivateEtcd
    size: int = 3
    nodes: list[Node] = field(default_factory=list)
    settings: NodeSettings = field(default_factory=NodeSettings)

    async def start(self) -> Cluster[F]:
        (self.dir / "token").write_text(TOKEN + "\n")
        (self.dir / "peer-token").write_text(PEER_TOKEN + "\n")
        for i in range(self.size):
            node = Node(
                f"c{i}", self.dir, self.fabric.remotes, self.etcd.endpoint,
                activation_timeout=self.settings.activation_timeout, settings=self.settings,
            )  # fmt: skip
            self.nodes.append(node)
            node.start()
        for node in self.nodes:
            await self.until(node.healthy, f"{node.id} to be healthy")
        targets = [n.target for n in self.nodes]
        await asyncio.gather(*(
            asyncio.to_thread(self.fabric.ovs_of(name).set_controllers, name, targets)
            for name in self.fabric.names
        ))  # fmt: skip
        await self.until(self.settled, "every bridge mastered and a leader elected")
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.kill(signal.SIGTERM)

    def live(self) -> list[Node]:
        return [n for n in self.nodes if n.alive]

    async def until(self, condition: Any, what: str, timeout: float = WAIT) -> None:
        try:
            await until(condition, what, timeout)
        except AssertionError:
            self.show_logs()
            raise

    def show_logs(self, lines: int = 60) -> None:
        for node in self.nodes:
            text = node.log.read_text(errors="replace").splitlines() if node.log.exists() else []
            print(f"----- {node.id} log (last {lines} lines) -----")
            print("\n".join(text[-lines:]))

    async def settled(self) -> bool:
        """A leader, every live member known, and every bridge mastered and adopted."""
        views = []
        for node in self.live():
            try:
                views.append((await node.get("/v1/cluster"), await node.get("/v1/switches")))
            except httpx.HTTPError:
                return False
        live = {n.id for n in self.live()}
        for cluster, switches in views:
            if cluster["leader"] not in live:
                return False
            if {m["id"] for m in cluster["members"] if m["healthy"]} != live:
                return False
            if any(s["master"] not in live for s in switches):
                return False
        return all([await self._adopted(n) for n in self.live()])

    async def balanced(self) -> bool:
        """Settled, and every bridge with the master rendezvous hashing picks (handovers done)."""
        from vportd.cluster.node import chosen_master  # noqa: PLC0415 (only needed here)

        if not await self.settled():
            return False
        live = sorted(n.id for n in self.live())
        masters = await self.masters()
        return all(m == chosen_master(s, live) for s, m in masters.items())

    async def _adopted(self, node: Node) -> bool:
        switches = await node.get("/v1/switches")
        mine = [s for s in switches if s["master"] == node.id]
        return all(s["connected"] for s in mine)

    async def leader(self) -> Node:
        cluster = await self.live()[0].get("/v1/cluster")
        return next(n for n in self.nodes if n.id == cluster["leader"])

    async def masters(self) -> dict[str, str]:
        """Each bridge's master, as the first live controller sees it."""
        switches = await self.live()[0].get("/v1/switches")
        return {s["name"]: s["master"] for s in switches}

    async def vport(self, node: Node, mac: str) -> dict[str, Any] | None:
        async with node.client() as c:
            r = await c.get(f"/v1/vports/{mac}")
            return None if r.status_code == 404 else r.json()  # noqa: PLR2004

    async def everywhere(self, mac: str) -> list[dict[str, Any] | None]:
        return [await self.vport(n, mac) for n in self.live()]


@contextlib.asynccontextmanager
async def cluster(
    tmp: Path, fabric: F, etcd: PrivateEtcd, size: int = 3, settings: NodeSettings | None = None
) -> AsyncIterator[Cluster[F]]:
    c = Cluster(tmp, fabric, etcd, size, settings=settings or NodeSettings())
    try:
        await c.start()
        yield c
    except BaseException:
        c.show_logs()
        raise
    finally:
        c.stop()


# -- a fabric of dummy-datapath bridges -------------------------------------
@dataclass
class DummyFabric:
    """hv0..hv{n-1} (datapath ids 1..n) in a line of patch ports (hv{i}'s port to hv{j}: 100+j)."""

    ovs: PrivateOVS
    size: int = 3

    @property
    def names(self) -> list[str]:
        return [f"hv{i}" for i in range(self.size)]

    @property
    def remotes(self) -> list[str]:
        return [self.ovs.db]

    def ovs_of(self, bridge: str) -> PrivateOVS:
        return self.ovs

    async def vsctl(self, *args: str) -> str:
        return await asyncio.to_thread(self.ovs.vsctl, *args)

    async def build(self) -> DummyFabric:
        for i, name in enumerate(self.names):
            await asyncio.to_thread(self.ovs.add_bridge, name, i + 1)
        for i in range(self.size - 1):
            a, b = f"hv{i}", f"hv{i + 1}"
            await self.vsctl(*_patch(a, 100 + i + 1, b, 100 + i))
        return self

    async def tear_down(self) -> None:
        # One transaction: deleting bridges one by one reconfigures the rest each time.
        args: list[str] = []
        for name in self.names:
            args += ["--", "--if-exists", "del-br", name]
        await self.vsctl(*args)

    async def transact(self, vms: Iterable[VM]) -> None:
        """Every VM's port in one raw OVSDB transaction (`ovsdb-client transact`).

        The rows `ovs-vsctl add-port` would write, without its per-command
        checks over every port of the database, which make a 500-port
        `ovs-vsctl` call take tens of seconds once thousands of ports exist.
        """
        await _transact(self.ovs, vms)

    async def add_vms(self, vms: Iterable[VM]) -> None:
        """Every VM's port in one `ovs-vsctl` transaction (as libvirt names them)."""
        args: list[str] = []
        for vm in vms:
            args += vm.vsctl_args()
        if args:
            await self.vsctl(*args)


def add_port_ops(vms: Iterable[VM]) -> list[dict[str, Any]]:
    """The OVSDB operations that add the VMs' ports: their Interface and Port rows, then
    each bridge's new ports. ovs-vsctl rewrites a bridge's whole `ports` set, guarded by
    a `wait` on every Port row it read; a mutate, as ovsdbapp sends, needs neither."""
    ops: list[dict[str, Any]] = []
    ports: dict[str, list[list[str]]] = {}
    for k, vm in enumerate(vms):
        ops += vm.ovsdb_ops(k)
        ports.setdefault(vm.bridge, []).append(["named-uuid", f"p{k}"])
    for bridge, refs in ports.items():
        mutation = ["ports", "insert", ["set", refs]]
        where = [["name", "==", bridge]]
        ops.append({"op": "mutate", "table": "Bridge", "where": where, "mutations": [mutation]})
    return ops


async def _transact(ovs: PrivateOVS, vms: Iterable[VM]) -> None:
    """The VMs' ports in one transaction (`add_port_ops`), with `ovsdb-client transact`."""
    body = json.dumps(["Open_vSwitch", *add_port_ops(vms)])
    args = ["ovsdb-client", "transact", ovs.db, body]
    done = await asyncio.to_thread(
        subprocess.run, args, env=ovs.env, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0 or '"error"' in done.stdout:
        raise OVSError(f"ovsdb-client transact: {done.stderr.strip()} {done.stdout[:300]}")


# -- a fabric of hypervisors, each with an OVS of its own ---------------------
@dataclass
class HostsFabric:
    """hv0..hv{n-1} in a line, each bridge on a private OVS of its own, as on real hypervisors.

    Every hypervisor runs its own ovsdb-server and ovs-vswitchd (dummy
    datapath), so the controllers read n OVSDB servers, and no ovs-vswitchd
    carries the ports of the others: the userspace datapath reconfigures
    every one of its ports when one is added, so a single ovs-vswitchd playing
    20 hypervisors with 10,000 ports between them costs the square of that.
    A link is a pair of dummy interfaces (hv{i}'s port towards hv{j} is
    OpenFlow port 100+j) declared with `external_ids:vportd-peer`, as a
    tunnel port to another hypervisor would be.
    """

    root: Path
    size: int = 3
    hosts: list[PrivateOVS] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [f"hv{i}" for i in range(self.size)]

    @property
    def remotes(self) -> list[str]:
        return [host.db for host in self.hosts]

    def ovs_of(self, bridge: str) -> PrivateOVS:
        return self.hosts[self.names.index(bridge)]

    async def build(self) -> HostsFabric:
        self.hosts = [PrivateOVS(self.root / name) for name in self.names]
        await asyncio.gather(*(asyncio.to_thread(self._host, i) for i in range(self.size)))
        return self

    def _host(self, i: int) -> None:
        host, name = self.hosts[i].start(), self.names[i]
        host.add_bridge(name, i + 1)
        args: list[str] = []
        for j in (i - 1, i + 1):
            if 0 <= j < self.size:
                args += _tunnel(name, self.names[j], 100 + j)
        if args:
            host.vsctl(*args)

    def stop(self) -> None:
        for host in self.hosts:
            host.stop()

    async def add_vms(self, vms: Iterable[VM]) -> None:
        """Each VM's port with `ovs-vsctl` on its own hypervisor (as libvirt names them)."""
        for bridge, on in _by_bridge(vms).items():
            args = [arg for vm in on for arg in vm.vsctl_args()]
            await asyncio.to_thread(self.ovs_of(bridge).vsctl, *args)

    async def transact(self, vms: Iterable[VM]) -> None:
        """The VMs' ports in one raw OVSDB transaction per hypervisor (see `DummyFabric`)."""
        for bridge, on in _by_bridge(vms).items():
            await _transact(self.ovs_of(bridge), on)


@contextlib.asynccontextmanager
async def hosts_fabric(size: int) -> AsyncIterator[HostsFabric]:
    """A `HostsFabric` in a fresh short temp dir (unix socket paths are short), removed after."""
    root = Path(tempfile.mkdtemp(prefix="hv"))
    fabric = HostsFabric(root, size)
    try:
        yield await fabric.build()
    finally:
        await asyncio.to_thread(fabric.stop)
        shutil.rmtree(root, ignore_errors=True)


def _by_bridge(vms: Iterable[VM]) -> dict[str, list[VM]]:
    on: dict[str, list[VM]] = {}
    for vm in vms:
        on.setdefault(vm.bridge, []).append(vm)
    return on


def _tunnel(a: str, b: str, port: int) -> list[str]:
    """`a`'s end of a link to `b`: a dummy port declaring its peer, `b`'s end towards `a`."""
    name = f"{a}-{b}"
    return [
        "--", "add-port", a, name, "--", "set", "Interface", name, "type=dummy",
        f"ofport_request={port}", f"external_ids:vportd-peer={b}/{b}-{a}",
    ]  # fmt: skip


@dataclass(frozen=True)
class VM:
    """A VM's port: a dummy interface with libvirt's external_ids."""

    bridge: str
    name: str
    ofport: int
    mac: str

    def vsctl_args(self) -> list[str]:
        return [
            "--", "add-port", self.bridge, self.name, "--", "set", "Interface", self.name,
            "type=dummy", f"ofport_request={self.ofport}",
            f"external_ids:attached-mac={self.mac}", f"external_ids:iface-id={self.name}-iface",
            f"external_ids:vm-id={self.name}-vm",
        ]  # fmt: skip

    def ovsdb_ops(self, k: int) -> list[dict[str, Any]]:
        """Insert this port's Interface and Port rows (named i{k}, p{k} in the transaction)."""
        ids = [["attached-mac", self.mac], ["iface-id", f"{self.name}-iface"],
               ["vm-id", f"{self.name}-vm"]]  # fmt: skip
        iface = {"name": self.name, "type": "dummy", "ofport_request": self.ofport,
                 "external_ids": ["map", ids]}  # fmt: skip
        port = {"name": self.name, "interfaces": ["named-uuid", f"i{k}"]}
        return [
            {"op": "insert", "table": "Interface", "row": iface, "uuid-name": f"i{k}"},
            {"op": "insert", "table": "Port", "row": port, "uuid-name": f"p{k}"},
        ]


def _patch(a: str, a_port: int, b: str, b_port: int) -> list[str]:
    an, bn = f"{a}-{b}", f"{b}-{a}"
    return [
        "add-port", a, an, "--", "set", "Interface", an, "type=patch",
        f"options:peer={bn}", f"ofport_request={a_port}",
        "--", "add-port", b, bn, "--", "set", "Interface", bn, "type=patch",
        f"options:peer={an}", f"ofport_request={b_port}",
    ]  # fmt: skip


# -- the instrumented entry point -------------------------------------------
class _Tracer:
    """Writes the first time each VM's entry is in the table (see the module doc)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.seen: set[str] = set()
        self.lines: list[str] = []

    def check(self, runtime: Any, vm: str, origin: str) -> None:
        if vm not in self.seen and runtime.core.table.get(vm) is not None:
            self.seen.add(vm)
            if not self.lines:
                asyncio.get_running_loop().call_soon(self.flush)
            self.lines.append(f"{time.monotonic_ns()} {vm} {origin}\n")

    def flush(self) -> None:
        # Once per step of the loop, not once per entry (a boot storm makes
        # thousands in one step): a benchmark reads the file while the controller runs.
        self.out.write("".join(self.lines))
        self.out.flush()
        self.lines.clear()


def _install_tracer(path: str) -> None:
    from vportd.node.runtime import Runtime  # noqa: PLC0415 (after the env is read)

    tracer = _Tracer(open(path, "a"))  # noqa: SIM115 (lives as long as the process)
    feed, receive = Runtime.feed, Runtime.receive

    def traced_feed(self: Runtime, ev: Any) -> None:
        feed(self, ev)
        tracer.check(self, ev.mac, "own")

    def traced_receive(self: Runtime, message: Any) -> None:
        receive(self, message)
        record = getattr(message, "record", None)
        if record is not None:
            tracer.check(self, record.vm, str(getattr(message, "origin", "peer")))

    # Wrapping the two inputs that can create an entry, only in this entry point.
    Runtime.feed = traced_feed  # type: ignore[method-assign]
    Runtime.receive = traced_receive  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    """`vportd` with the instruments the environment asks for."""
    from vportd.node.daemon import main as daemon_main  # noqa: PLC0415

    trace, profile = os.environ.get(TRACE_ENV), os.environ.get(PROFILE_ENV)
    if trace:
        _install_tracer(trace)
    if not profile:
        return daemon_main(argv)
    import cProfile  # noqa: PLC0415

    profiler = cProfile.Profile()
    try:
        rc: int = profiler.runcall(daemon_main, argv)
    finally:
        profiler.dump_stats(profile)
    return rc


if __name__ == "__main__":
    sys.exit(main())
