"""The cluster benchmark's propagation: a port added to one switch → its entry everywhere."""

from __future__ import annotations

import time

from vportd_lab.bed.cluster import Cluster, until
from vportd_lab.bed.fabrics import VM
from vportd_lab.bench.cluster.bed import BenchFabric, everywhere, vm_mac
from vportd_lab.bench.cluster.results import Propagation
from vportd_lab.bench.stats import Dist


async def _one_port(
    c: Cluster[BenchFabric], vm: VM, masters: dict[str, str]
) -> tuple[float, float, float, str]:
    """Add one port; (master's entry → last other, vsctl → last, vsctl → master, first path)."""
    t0 = time.monotonic_ns()
    await c.fabric.add_vms([vm])
    await until(lambda: everywhere(c, {vm.mac}), f"{vm.mac} everywhere", interval=0.002)
    seen = {n.id: n.traced()[vm.mac] for n in c.live()}
    master = seen[masters[vm.bridge]][0]
    others = [seen[i] for i in seen if i != masters[vm.bridge]]
    last = max(t for t, _ in others)
    first_path = min(others)[1]
    return (last - master) / 1e9, (max(last, master) - t0) / 1e9, (master - t0) / 1e9, first_path


async def propagation(c: Cluster[BenchFabric], n: int, base: int) -> Propagation:
    masters = await c.masters()
    names = c.fabric.names
    rows = []
    for k in range(n):
        vm = VM(names[k % len(names)], f"p{base + k}", 1000 + k // len(names), vm_mac(base + k))
        rows.append(await _one_port(c, vm, masters))
    first_by: dict[str, int] = {}
    for *_, path in rows:
        key = "store" if path == "store" else "peer"
        first_by[key] = first_by.get(key, 0) + 1
    return Propagation(
        n, Dist.of([r[0] for r in rows]), Dist.of([r[1] for r in rows]),
        Dist.of([r[2] for r in rows]), first_by,
    )  # fmt: skip
