"""A real cluster as processes: a private etcd, N `vportd` processes, dummy-datapath OVS.

For end-to-end tests and the cluster benchmark. `Cluster` writes each
controller's config and token files into a directory, starts `vportd` as a
process (its log next to its config), points every bridge of the fabric
(`vportd_lab.bed.fabrics`, or the caller's) at every controller and waits
until each bridge has a master that reconciled it. Helpers talk to the
controllers only through their REST API, as an operator would. A traced or
profiled node runs `vportd_lab.bed.traced` instead of `vportd`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import httpx

from vportd.cluster.mastership import everywhere
from vportd_lab.bed import traced
from vportd_lab.bed.etcd import PrivateEtcd
from vportd_lab.bed.ovs import PrivateOVS
from vportd_lab.bed.ports import free_port

TOKEN = "vmm-token-0123456789abcdef"
PEER_TOKEN = "peer-token-0123456789abcdef"
WAIT = 30.0  # generous: a wait for a condition, never a threshold
# httpx sends a request's headers and its body in separate writes: with Nagle's algorithm
# on, the body waits for the controller's delayed ACK of the headers.
NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


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
flap_moves = 1000000
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
            module = traced.__name__
            if self.settings.traced:
                self.trace.unlink(missing_ok=True)  # a restarted node traces afresh
                env[traced.TRACE_ENV] = str(self.trace)
            if self.settings.profile:
                env[traced.PROFILE_ENV] = str(self.profile)
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
            transport=httpx.AsyncHTTPTransport(socket_options=NODELAY),
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
        for name, token in (("token", TOKEN), ("peer-token", PEER_TOKEN)):
            (self.dir / name).write_text(token + "\n")
            (self.dir / name).chmod(0o600)  # vportd refuses a token file others may read
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
        """Settled, and every bridge with the master the cluster picks (handovers done)."""
        if not await self.settled():
            return False
        live = sorted(n.id for n in self.live())
        masters = await self.masters()
        return masters == everywhere(sorted(masters), live)

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
