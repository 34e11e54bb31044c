"""A fabric of dummy-datapath bridges on a private Open vSwitch, and a Runtime running on it.

`Fabric` is hv0..hv{n-1} (datapath ids 1..n, secure, OpenFlow 1.3) in a line
joined by patch ports (hv{i}'s port towards hv{j} is OpenFlow port 100+j, as
in the lab), all pointed at one controller address. `running` starts a
`Runtime` as an asyncio task and waits until it has reconciled every bridge.
Waits poll for a condition with a generous timeout; nothing asserts a duration.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from tests.southbound.test_openflow import ofctl_line
from vportd.core.flow import Flow
from vportd.node.config import Config, parse_config
from vportd.node.runtime import Runtime
from vportd_lab.bed.cluster import until
from vportd_lab.bed.ovs import PrivateOVS
from vportd_lab.bed.ports import free_port


def config(fabric: Fabric, *, lldp: bool = False, lldp_interval: float = 5.0) -> Config:
    return parse_config(f"""
[controller]
id = "c0"
[openflow]
listen = "127.0.0.1:{fabric.port}"
[ovsdb]
remotes = ["{fabric.ovs.db}"]
[topology]
lldp = {str(lldp).lower()}
lldp_interval = {lldp_interval}
""")


@dataclass
class Fabric:
    ovs: PrivateOVS
    size: int = 3
    port: int = field(default_factory=free_port)
    pointed: bool = False

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

    async def appctl(self, *args: str) -> str:
        return await asyncio.to_thread(self.ovs.appctl, *args)

    async def ofctl(self, bridge: str, *args: str) -> str:
        return await asyncio.to_thread(self.ovs.ofctl, *args, bridge=bridge)

    async def build(self) -> Fabric:
        for i, name in enumerate(self.names):
            await asyncio.to_thread(self.ovs.add_bridge, name, i + 1)
        for i in range(self.size - 1):
            await self.patch(f"hv{i}", 100 + i + 1, f"hv{i + 1}", 100 + i)
        return self

    async def tear_down(self) -> None:
        for name in self.names:
            await self.vsctl("--if-exists", "del-br", name)

    async def point_at_controller(self) -> None:
        """Point every bridge at the controller (once it listens: OVS's first try connects)."""
        if not self.pointed:
            for name in self.names:
                target = f"tcp:127.0.0.1:{self.port}"
                await asyncio.to_thread(self.ovs.set_controllers, name, [target])
            self.pointed = True

    async def patch(self, a: str, a_port: int, b: str, b_port: int) -> None:
        """A patch-port pair: port `a_port` of `a` leads to port `b_port` of `b`."""
        an, bn = f"{a}-{b}", f"{b}-{a}"
        await self.vsctl(
            "add-port", a, an, "--", "set", "Interface", an, "type=patch",
            f"options:peer={bn}", f"ofport_request={a_port}",
            "--", "add-port", b, bn, "--", "set", "Interface", bn, "type=patch",
            f"options:peer={an}", f"ofport_request={b_port}",
        )  # fmt: skip

    async def add_port(self, bridge: str, name: str, ofport: int, *options: str) -> None:
        await self.vsctl(
            "add-port", bridge, name, "--", "set", "Interface", name, "type=dummy",
            f"ofport_request={ofport}", *options,
        )  # fmt: skip

    async def add_vm(self, bridge: str, name: str, ofport: int, mac: str) -> None:
        """A VM's port as libvirt makes it: attached-mac, iface-id and vm-id."""
        await self.add_port(
            bridge, name, ofport, f"external_ids:attached-mac={mac}",
            f"external_ids:iface-id={name}-iface", f"external_ids:vm-id={name}-vm",
        )  # fmt: skip

    async def flows(self, bridge: str) -> list[str]:
        """`ovs-ofctl -O OpenFlow13 dump-flows --no-stats`, one line per flow, sorted."""
        text = await self.ofctl(bridge, "dump-flows", "--no-stats")
        return sorted(line.strip() for line in text.splitlines() if "cookie=" in line)

    async def flows_with_stats(self, bridge: str) -> list[str]:
        text = await self.ofctl(bridge, "dump-flows")
        return sorted(line.strip() for line in text.splitlines() if "cookie=" in line)


def believed(rt: Runtime, bridge: str, extra: tuple[Flow, ...] = ()) -> list[str]:
    """What the compiler believes `bridge` holds (plus `extra`), as dump-flows shows it."""
    flows = [*rt.core.installed(bridge), *extra]
    return sorted(ofctl_line(f) for f in flows)


def settled(rt: Runtime, fabric: Fabric) -> bool:
    """Every bridge connected and reconciled, and nothing left to send."""
    return (
        all(
            name in rt.switches.adopted and rt.switches.stats.reconciles[name]
            for name in fabric.names
        )
        and rt.idle
    )


async def flows_agree(rt: Runtime, fabric: Fabric, extra: tuple[Flow, ...] = ()) -> bool:
    if not settled(rt, fabric):
        return False
    for name in fabric.names:
        if await fabric.flows(name) != believed(rt, name, extra):
            return False
    return True


async def assert_flows_agree(rt: Runtime, fabric: Fabric, extra: tuple[Flow, ...] = ()) -> None:
    """Poll until every bridge holds exactly what the compiler believes; show the difference."""
    try:
        await until(lambda: flows_agree(rt, fabric, extra), "the switches' flows to agree")
    except AssertionError:
        for name in fabric.names:
            shown, want = set(await fabric.flows(name)), set(believed(rt, name, extra))
            print(f"{name}: only on the switch {sorted(shown - want)}")
            print(f"{name}: only in the compiler {sorted(want - shown)}")
        raise


@contextlib.asynccontextmanager
async def running(fabric: Fabric, cfg: Config | None = None) -> AsyncIterator[Runtime]:
    """A Runtime as a task for the block's duration, once it has reconciled every bridge."""
    rt = Runtime(cfg or config(fabric))
    task = asyncio.create_task(rt.run())
    try:
        await until(lambda: rt.openflow.ready.is_set() or task.done(), "the runtime to listen")
        if task.done():
            await task  # raises what stopped it
        await fabric.point_at_controller()
        await until(lambda: settled(rt, fabric), "every bridge to be reconciled")
        yield rt
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
