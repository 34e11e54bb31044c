"""A real cluster for end-to-end tests: etcd, N `vportd` processes, a dummy-datapath OVS.

`Cluster` writes each controller's config and token files, starts `vportd`
as a process (its log in the test's directory, shown when a test fails),
points every bridge of the fabric at every controller and waits until each
bridge has a master that reconciled it. Helpers talk to the controllers only
through their REST API, as an operator would.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.integration.support import Fabric, free_port, until
from vportd.lab.etcd import PrivateEtcd

TOKEN = "vmm-token-0123456789abcdef"
PEER_TOKEN = "peer-token-0123456789abcdef"


@dataclass
class Node:
    """One `vportd` process."""

    id: str
    dir: Path
    ovsdb: str
    etcd: str
    openflow_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    activation_timeout: float = 10.0

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def target(self) -> str:
        return f"tcp:127.0.0.1:{self.openflow_port}"

    @property
    def log(self) -> Path:
        return self.dir / f"{self.id}.log"

    def config(self) -> str:
        return f"""
[controller]
id = "{self.id}"
[openflow]
listen = "127.0.0.1:{self.openflow_port}"
echo_interval = 1.0
[ovsdb]
remotes = ["{self.ovsdb}"]
[api]
listen = "127.0.0.1:{self.api_port}"
token_file = "{self.dir / "token"}"
peer_token_file = "{self.dir / "peer-token"}"
[store]
kind = "etcd"
endpoints = ["{self.etcd}"]
lease_ttl = 2
[migration]
sync_timeout = 2.0
activation_timeout = {self.activation_timeout}
completion_timeout = 5.0
[topology]
lldp = false
[logging]
level = "debug"
"""

    def start(self) -> None:
        path = self.dir / f"{self.id}.toml"
        path.write_text(self.config())
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vportd.daemon", "--config", str(path)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
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
            base_url=self.api, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=15.0
        )

    async def get(self, path: str) -> Any:
        async with self.client() as c:
            r = await c.get(path)
            r.raise_for_status()
            return r.json()

    async def healthy(self) -> bool:
        try:
            async with self.client() as c:
                r = await c.get("/healthz")
                return r.status_code == 200 and bool(r.json().get("ok", True))
        except httpx.HTTPError:
            return False


@dataclass
class Cluster:
    dir: Path
    fabric: Fabric
    etcd: PrivateEtcd
    size: int = 3
    nodes: list[Node] = field(default_factory=list)

    async def start(self) -> Cluster:
        (self.dir / "token").write_text(TOKEN + "\n")
        (self.dir / "peer-token").write_text(PEER_TOKEN + "\n")
        for i in range(self.size):
            node = Node(f"c{i}", self.dir, self.fabric.ovs.db, self.etcd.endpoint)
            self.nodes.append(node)
            node.start()
        for node in self.nodes:
            await self.until(node.healthy, f"{node.id} to be healthy")
        targets = [n.target for n in self.nodes]
        for name in self.fabric.names:
            await asyncio.to_thread(self.fabric.ovs.set_controllers, name, targets)
        await self.until(self.settled, "every bridge mastered and a leader elected")
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.kill(signal.SIGTERM)

    def live(self) -> list[Node]:
        return [n for n in self.nodes if n.alive]

    async def until(self, condition: Any, what: str, timeout: float = 30.0) -> None:
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

    async def _adopted(self, node: Node) -> bool:
        switches = await node.get("/v1/switches")
        mine = [s for s in switches if s["master"] == node.id]
        return all(s["connected"] for s in mine)

    async def leader(self) -> Node:
        cluster = await self.live()[0].get("/v1/cluster")
        return next(n for n in self.nodes if n.id == cluster["leader"])

    async def vport(self, node: Node, mac: str) -> dict[str, Any] | None:
        async with node.client() as c:
            r = await c.get(f"/v1/vports/{mac}")
            return None if r.status_code == 404 else r.json()

    async def everywhere(self, mac: str) -> list[dict[str, Any] | None]:
        return [await self.vport(n, mac) for n in self.live()]


@contextlib.asynccontextmanager
async def cluster(
    tmp: Path, fabric: Fabric, etcd: PrivateEtcd, size: int = 3
) -> AsyncIterator[Cluster]:
    c = Cluster(tmp, fabric, etcd, size)
    try:
        await c.start()
        yield c
    except BaseException:
        c.show_logs()
        raise
    finally:
        c.stop()
