"""The cluster benchmark's failover: SIGKILL the leader → the first 201 to a notify."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from http import HTTPStatus

import httpx

from vportd_lab.bed.cluster import Cluster
from vportd_lab.bed.fabrics import VM
from vportd_lab.bench.cluster.bed import BenchFabric
from vportd_lab.bench.cluster.results import Failover

RETRY_EVERY = 0.01  # s between notify attempts during a failover

log = logging.getLogger("vportd_lab.bench.cluster")


async def _first_201(c: Cluster[BenchFabric], vm: VM, dst: str) -> tuple[str, int]:
    """Notify the live controllers in turn until one answers 201: its id, the attempts."""
    body = {"vm": vm.mac, "source": vm.bridge, "destination": dst}
    attempts = 0
    while True:
        for node in c.live():
            attempts += 1
            try:
                async with node.client() as client:
                    r = await client.post("/v1/migrations", json=body, timeout=2.0)
            except httpx.HTTPError:
                continue
            if r.status_code == HTTPStatus.CREATED:
                return str(r.json()["id"]), attempts
        await asyncio.sleep(RETRY_EVERY)


async def _elected(c: Cluster[BenchFabric], old: str, t0: float, out: list[float]) -> None:
    """Poll (every 10 ms) until a live controller names a new leader; note when."""
    while True:
        for node in c.live():
            with contextlib.suppress(httpx.HTTPError):
                leader = (await node.get("/v1/cluster"))["leader"]
                if leader not in (None, old):
                    out.append(time.perf_counter() - t0)
                    return
        await asyncio.sleep(0.01)


async def _failover_once(c: Cluster[BenchFabric], vm: VM, dst: str) -> tuple[float, float, int]:
    old = await c.leader()
    elected: list[float] = []
    t0 = time.perf_counter()
    old.kill(signal.SIGKILL)
    watcher = asyncio.create_task(_elected(c, old.id, t0, elected))
    migration, attempts = await _first_201(c, vm, dst)
    took = time.perf_counter() - t0
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(watcher, 5.0)
    async with (await c.leader()).client() as client:
        (await client.delete(f"/v1/migrations/{migration}")).raise_for_status()
    old.start()  # back to 3 controllers for the next run
    await c.until(c.balanced, "the cluster settled again, handovers done", timeout=60)
    return took, elected[0] if elected else float("nan"), attempts


async def failover(c: Cluster[BenchFabric], runs: int, pairs: list[tuple[VM, str]]) -> Failover:
    result = Failover([], [], [])
    for k in range(runs):
        vm, dst = pairs[k % len(pairs)]
        took, elected, attempts = await _failover_once(c, vm, dst)
        log.info("failover %d: %.3f s (elected after %.3f s)", k + 1, took, elected)
        result.seconds.append(took)
        result.elected.append(elected)
        result.attempts.append(attempts)
    return result
