"""The cluster benchmark's handshake: notify → 201, then abort, over a rotation of VMs."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import aiohttp

from vportd_lab.bed.cluster import TOKEN, Cluster, until
from vportd_lab.bed.fabrics import VM
from vportd_lab.bench.cluster.bed import BenchFabric, vm_mac, vms_on
from vportd_lab.bench.cluster.results import Handshake
from vportd_lab.bench.stats import Dist

ROTATION = 8  # VMs the handshake part rotates over


async def rotation(
    c: Cluster[BenchFabric], base: int, name: str = "mig", port: int = 200
) -> list[tuple[VM, str]]:
    """ROTATION VMs, each with a destination mastered by another controller than its source
    (interfaces `{name}{k}` at OpenFlow port `port + k`)."""
    masters = await c.masters()
    names = c.fabric.names
    pairs: list[tuple[VM, str]] = []
    for k in range(ROTATION):
        src = names[k % len(names)]
        dst = next((n for n in names if masters[n] != masters[src]), names[(k + 1) % len(names)])
        pairs.append((VM(src, f"{name}{k}", port + k, vm_mac(base + k)), dst))
    await vms_on(c, [vm for vm, _ in pairs])
    return pairs


VMM_HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


@dataclass
class Vmm:
    """The VMM's side of the handshake: kept-alive requests to one controller, timed."""

    session: aiohttp.ClientSession
    api: str

    async def call(self, method: str, path: str, body: object = None) -> tuple[float, int, Any]:
        data = b"" if body is None else json.dumps(body).encode()
        t0 = time.perf_counter()
        async with self.session.request(
            method, self.api + path, data=data, headers=VMM_HEADERS, allow_redirects=False
        ) as response:
            content = await response.read()
        dt = time.perf_counter() - t0
        return dt, response.status, json.loads(content) if content else None


async def _migrate_once(vmm: Vmm, vm: VM, dst: str) -> tuple[float, str, int]:
    """Notify until 201 (a 409 while the VM's last roll-back ends is retried): time, id, 409s."""
    body = {"vm": vm.mac, "source": vm.bridge, "destination": dst}
    conflicts = 0
    while True:
        dt, status, answer = await vmm.call("POST", "/v1/migrations", body)
        if status == HTTPStatus.CREATED:
            return dt, str(answer["id"]), conflicts
        if status != HTTPStatus.CONFLICT:
            raise RuntimeError(f"notify {vm.mac}: HTTP {status}: {answer}")
        conflicts += 1
        await asyncio.sleep(0.005)


async def _abort(vmm: Vmm, migration: str) -> float:
    dt, status, answer = await vmm.call("DELETE", f"/v1/migrations/{migration}")
    if status != HTTPStatus.OK:
        raise RuntimeError(f"abort {migration}: HTTP {status}: {answer}")
    return dt


async def _rolled_back(c: Cluster[BenchFabric], mac: str) -> bool:
    """Every controller shows the VM not migrating: the abort's roll-back is over."""
    views = await c.everywhere(mac)
    return all(v is not None and v["migration_state"] == "not-migrating" for v in views)


async def handshake(
    c: Cluster[BenchFabric], via: str, pairs: list[tuple[VM, str]], n: int
) -> Handshake:
    leader = await c.leader()
    node = leader if via == "leader" else next(x for x in c.nodes if x is not leader)
    notify: list[float] = []
    aborts: list[float] = []
    conflicts = 0
    # aiohttp, a lean client a VMM could well use: the figure is the cluster's, not an
    # HTTP library's (httpx costs its caller several times aiohttp's CPU per request).
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15.0))
    vmm = Vmm(session, node.api)
    try:
        for i in range(n):
            vm, dst = pairs[i % len(pairs)]
            dt, migration, refused = await _migrate_once(vmm, vm, dst)
            notify.append(dt)
            conflicts += refused
            aborts.append(await _abort(vmm, migration))
            done = functools.partial(_rolled_back, c, vm.mac)
            await until(done, "the roll-back", interval=0.002)
    finally:
        await session.close()
    return Handshake(via, n, Dist.of(notify), Dist.of(aborts), conflicts)
