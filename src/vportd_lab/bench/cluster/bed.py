"""The cluster benchmark's bed: the fabric, etcd and 3 traced controllers, and VMs on it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from vportd_lab.bed.cluster import Cluster, NodeSettings, until
from vportd_lab.bed.etcd import temporary_etcd
from vportd_lab.bed.fabrics import VM, DummyFabric, HostsFabric, hosts_fabric
from vportd_lab.bed.ovs import temporary_ovs
from vportd_lab.bench.cluster.results import Sizes

CONTROLLERS = 3
BenchFabric = DummyFabric | HostsFabric


@contextlib.asynccontextmanager
async def bench_fabric(sizes: Sizes) -> AsyncIterator[BenchFabric]:
    if not sizes.one_ovs:
        async with hosts_fabric(sizes.switches) as hosts:
            yield hosts
        return
    with temporary_ovs() as ovs:
        fabric = await DummyFabric(ovs, sizes.switches).build()
        try:
            yield fabric
        finally:
            with contextlib.suppress(Exception):
                await fabric.tear_down()


@contextlib.asynccontextmanager
async def bed(sizes: Sizes, workdir: Path) -> AsyncIterator[Cluster[BenchFabric]]:
    """OVS, etcd, the fabric and 3 traced controllers at info level, torn down after."""
    async with bench_fabric(sizes) as fabric:
        with temporary_etcd(workdir) as etcd:
            settings = NodeSettings(log_level="info", activation_timeout=300.0, traced=True)
            c = Cluster(workdir, fabric, etcd, CONTROLLERS, settings=settings)
            try:
                await c.start()
                yield c
            except BaseException:
                c.show_logs(20)
                raise
            finally:
                c.stop()


def vm_mac(k: int) -> str:
    return "02:00:" + ":".join(f"{(k >> s) & 255:02x}" for s in (24, 16, 8, 0))


async def everywhere(c: Cluster[BenchFabric], macs: set[str]) -> bool:
    return all(macs <= set(n.traced()) for n in c.live())


async def vms_on(c: Cluster[BenchFabric], vms: list[VM]) -> None:
    await c.fabric.add_vms(vms)
    await until(lambda: everywhere(c, {v.mac for v in vms}), "the VMs on every controller")
