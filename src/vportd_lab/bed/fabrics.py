"""Fabrics of dummy-datapath Open vSwitch bridges for the cluster harness and the benchmarks.

Two fabrics, both a line of bridges hv0..hv{n-1}: `DummyFabric` on one OVS,
joined by patch ports; `HostsFabric` with an OVS per hypervisor, as in
production, joined by links declared in OVSDB (each controller then reads
one OVSDB server per hypervisor). A `VM` is a VM's port: a dummy interface
with libvirt's external_ids, added with `ovs-vsctl` or in one raw OVSDB
transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vportd_lab.bed.ovs import OVSError, PrivateOVS


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
        checks over every port of the database, whose cost grows with the
        ports already there.
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
    every hypervisor costs the square of all their ports.
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
