"""The cluster benchmark's boot storm: thousands of VM ports at once → every controller holds all.

Also the storm's floor: the same OVSDB transactions on a fabric with no
controller and no etcd, what the OVS processes cost by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import math
import os
import time
from http import HTTPStatus
from pathlib import Path

import aiohttp
import httpx
from prometheus_client.parser import text_string_to_metric_families

from vportd_lab.bed.cluster import Cluster, Node, until
from vportd_lab.bed.fabrics import VM
from vportd_lab.bed.procs import rss
from vportd_lab.bench.cluster.bed import BenchFabric, bench_fabric, vm_mac
from vportd_lab.bench.cluster.handshake import ROTATION, Vmm, rotation
from vportd_lab.bench.cluster.results import Sizes, Storm, StormCalm, StormFloor
from vportd_lab.bench.stats import Dist

STORM_TRANSACTION = 250  # ports per OVSDB transaction in the boot storm (argv stays < 128 KiB)
STORM_POLL = 0.05  # s between looks at /healthz while the storm converges
MEANWHILE_PAUSE = 0.05  # s between the migrations notified during the storm
FLOOR_QUIET = 0.5  # s: the storm floor's OVS processes are quiet when, over this long,
FLOOR_IDLE_CPU = 0.02  # s: they used less CPU than this


def storm_vms(n: int, switches: list[str], base: int) -> list[VM]:
    return [
        VM(switches[k % len(switches)], f"s{k}", 2000 + k // len(switches), vm_mac(base + k))
        for k in range(n)
    ]


async def _table_size(node: Node) -> int:
    health = await node.get("/healthz")
    return int(health["detail"]["vports"])


async def _holds(node: Node, n: int) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return await _table_size(node) >= n
    return False


def _processes(c: Cluster[BenchFabric]) -> dict[str, list[int]]:
    """The pids of every process of the bed, by what they are (controllers one by one)."""
    out: dict[str, list[int]] = {n.id: [n.proc.pid] for n in c.live() if n.proc is not None}
    out["etcd"] = [pid] if (pid := c.etcd.pid) is not None else []
    return {**out, **_ovs_processes(c.fabric)}


def _ovs_processes(fabric: BenchFabric) -> dict[str, list[int]]:
    """Every ovs-vswitchd and ovsdb-server of the fabric (one of each per OVS)."""
    hosts = {str(ovs.rundir): ovs for ovs in map(fabric.ovs_of, fabric.names)}.values()
    return {
        daemon: [pid for ovs in hosts if (pid := ovs.pid(daemon)) is not None]
        for daemon in ("ovs-vswitchd", "ovsdb-server")
    }


def _cpu(pids: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds (user + system) each kind of process has used so far."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for kind, mine in pids.items():
        total = 0
        for pid in mine:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                total += int(fields[11]) + int(fields[12])
        out[kind] = total / tick
    return out


async def storm(c: Cluster[BenchFabric], n: int, base: int) -> Storm:
    vms = storm_vms(n, c.fabric.names, base)
    pairs = await rotation(c, base - ROTATION, "busy", 300)
    before = await _table_size(c.live()[0])
    chunks = _storm_transactions(vms)
    pids = _processes(c)
    roles, lags = await _roles(c), {node.id: await _lag_buckets(node) for node in c.live()}
    cpu0 = _cpu(pids)
    rss0 = {node.id: rss(node.proc.pid) for node in c.live() if node.proc is not None}
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        meanwhile = tg.create_task(migrations_meanwhile(c, pairs, stop))
        t0 = time.monotonic_ns()
        try:
            vsctl = await _converge(c, chunks, before + n, t0)
        finally:
            stop.set()
    cpu = {k: v - cpu0[k] for k, v in _cpu(pids).items()}
    grown = {n.id: rss(n.proc.pid) - rss0[n.id] for n in c.live() if n.proc and n.id in rss0}
    calm = await _calm(c, roles, lags)
    latencies, failures = meanwhile.result()
    calm.handshakes = Dist.of(latencies) if latencies else None
    calm.handshake_failures = failures
    macs = {vm.mac for vm in vms}
    per = {}
    for node in c.live():
        seen = node.traced()
        per[node.id] = (max(seen[m][0] for m in macs) - t0) / 1e9
    seconds = max(per.values())
    return Storm(n, len(c.fabric.names), len(chunks), seconds, vsctl, per, cpu, calm, grown)


async def _converge(c: Cluster[BenchFabric], chunks: list[list[VM]], total: int, t0: int) -> float:
    """Make the storm's transactions, then wait until every controller holds `total`
    ports; the seconds the transactions took."""
    for chunk in chunks:
        await c.fabric.transact(chunk)
    vsctl = (time.monotonic_ns() - t0) / 1e9
    for node in c.live():
        held = functools.partial(_holds, node, total)
        await until(held, f"{node.id} holds every port", timeout=600, interval=STORM_POLL)
    return vsctl


async def migrations_meanwhile(
    c: Cluster[BenchFabric], pairs: list[tuple[VM, str]], stop: asyncio.Event
) -> tuple[list[float], list[str]]:
    """Notify migrations one after another until `stop`, via the leader and a follower in
    turn, each aborted before the next: notify -> 201 times (s), and what failed."""
    leader = await c.leader()
    via = [leader, next(x for x in c.live() if x is not leader)]
    latencies: list[float] = []
    failures: list[str] = []
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30.0))
    try:
        for k in itertools.count():
            if stop.is_set():
                break
            vm, dst = pairs[k % len(pairs)]
            vmm = Vmm(session, via[k % 2].api)
            body = {"vm": vm.mac, "source": vm.bridge, "destination": dst}
            dt, status, answer = await vmm.call("POST", "/v1/migrations", body)
            if status == HTTPStatus.CONFLICT:  # the VM's last roll-back is not over yet
                await asyncio.sleep(MEANWHILE_PAUSE)
                continue
            if status != HTTPStatus.CREATED:
                failures.append(f"HTTP {status} after {dt:.2f} s: {answer}")
                await asyncio.sleep(MEANWHILE_PAUSE)
                continue
            latencies.append(dt)
            await vmm.call("DELETE", f"/v1/migrations/{answer['id']}")
            await asyncio.sleep(MEANWHILE_PAUSE)
    finally:
        await session.close()
    return latencies, failures


async def _roles(c: Cluster[BenchFabric]) -> tuple[str | None, dict[str, str]]:
    """The leader (None mid-election) and each bridge's master."""
    cluster = await c.live()[0].get("/v1/cluster")
    return cluster["leader"], await c.masters()


async def _lag_buckets(node: Node) -> dict[float, float]:
    """The controller's event-loop lag histogram: samples at or under each bound, cumulative."""
    async with node.client() as client:
        text = (await client.get("/metrics")).text
    return {
        float(sample.labels["le"]): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "vportd_event_loop_lag_seconds"
        for sample in family.samples
        if sample.name.endswith("_bucket")
    }


async def _calm(
    c: Cluster[BenchFabric],
    roles: tuple[str | None, dict[str, str]],
    lags: dict[str, dict[float, float]],
) -> StormCalm:
    leader, masters = await _roles(c)
    moved = sum(1 for bridge, master in masters.items() if roles[1].get(bridge) != master)
    bound, over = {}, {}
    for node in c.live():
        before, after = lags[node.id], await _lag_buckets(node)
        new = {le: count - before.get(le, 0.0) for le, count in after.items()}
        bound[node.id] = min(le for le, count in new.items() if count == new[math.inf])
        over[node.id] = int(new[math.inf] - new[1.0])
    return StormCalm(moved, leader == roles[0], bound, over)


def _storm_transactions(vms: list[VM]) -> list[list[VM]]:
    """Each bridge's VMs in transactions of `STORM_TRANSACTION`, the bridges taken in turn."""
    on: dict[str, list[VM]] = {}
    for vm in vms:
        on.setdefault(vm.bridge, []).append(vm)
    per_bridge = [
        [mine[k : k + STORM_TRANSACTION] for k in range(0, len(mine), STORM_TRANSACTION)]
        for mine in on.values()
    ]
    return [chunk for turn in itertools.zip_longest(*per_bridge) for chunk in turn if chunk]


async def storm_floor(sizes: Sizes) -> StormFloor:
    """The storm's transactions on a fabric of its own, nothing else running; CPU counted
    until ovs-vswitchd has numbered every port (its CPU stops growing)."""
    async with bench_fabric(sizes) as fabric:
        chunks = _storm_transactions(storm_vms(sizes.storm, fabric.names, 0x100000))
        pids = _ovs_processes(fabric)
        cpu0 = _cpu(pids)
        t0 = time.monotonic()
        for chunk in chunks:
            await fabric.transact(chunk)
        seconds = time.monotonic() - t0
        await _quiet(pids)
        settled = time.monotonic() - t0 - FLOOR_QUIET
        cpu = {k: v - cpu0[k] for k, v in _cpu(pids).items()}
    return StormFloor(sizes.storm, len(chunks), seconds, settled, cpu)


async def _quiet(pids: dict[str, list[int]]) -> None:
    """Until the processes used almost no CPU for `FLOOR_QUIET` (at most a minute)."""
    before = sum(_cpu(pids).values())
    for _ in range(int(60 / FLOOR_QUIET)):
        await asyncio.sleep(FLOOR_QUIET)
        now = sum(_cpu(pids).values())
        if now - before < FLOOR_IDLE_CPU:
            return
        before = now
