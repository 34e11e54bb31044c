"""The rig's fake fabric: one `FakeOvsdb`, one `FakeSwitch` per bridge, patch ports between them.

With `per_hypervisor`, each bridge has an OVSDB server of its own (`dbs`), as
each hypervisor has in production, and the ports between two bridges declare
their link with `external_ids:vportd-peer` instead of being patch ports.

Laid out as the lab's patch fabric (`vportd_lab.bed.plan`): bridge `hv{i}` is
datapath i+1; every pair of bridges is joined by a patch pair, `p{i}-{j}` on
hv{i} with OpenFlow port 100+j; VM ports are numbered below 100. The OVSDB
holds what ovs-vsctl and ovs-vswitchd would write; each switch shows the
same ports over OpenFlow and connects to every controller it is told of
(over TLS with `tls`, the switches' client context).

A VM's port is its tap: an OVSDB row with `attached-mac` plus the switch's
port, up (`boot`). What a VMM's live migration shows the switches is the
destination's port added and up (`arrive`), then the source's deleted
(`leave`). `deliveries` walks the switches' tables across the patch links to
say where a frame ends.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass
from types import TracebackType

from tests.fakes.ofwire import Port
from tests.fakes.ovsdb import FakeOvsdb
from tests.fakes.switch import FakeSwitch

PATCH_BASE = 100  # hv{i}'s patch port to hv{j} is PATCH_BASE + j
STRANGER = "02:00:00:00:ee:01"  # the sender `deliveries` puts in a frame: a MAC of no VM
_TO_CONTROLLER = "controller"  # a copy of the frame for the controller: not a delivery


@dataclass(frozen=True)
class VmPort:
    """A VM's tap on a switch."""

    mac: str
    switch: str
    port: int
    tag: int | None = None  # its OVS port's VLAN tag: the VM's segment

    @property
    def name(self) -> str:
        """Its interface name: unique in the OVSDB (names are global there) and short."""
        return f"{self.switch}-{self.port}"


def patch_mac(i: int, j: int) -> str:
    return f"02:00:00:ff:{i:02x}:{j:02x}"


class Fabric:
    """Bridges hv0..hv{H-1} (module docstring). `async with Fabric(3) as fabric`."""

    def __init__(
        self,
        hypervisors: int = 3,
        *,
        tls: ssl.SSLContext | None = None,
        per_hypervisor: bool = False,
    ) -> None:
        if not 1 <= hypervisors < PATCH_BASE:
            raise ValueError(f"{hypervisors} hypervisors: 1 to {PATCH_BASE - 1}")
        self.names = [f"hv{i}" for i in range(hypervisors)]
        self.tls = tls
        self.db = FakeOvsdb()  # every bridge's, or (per_hypervisor) hv0's
        self.dbs = {name: self.db for name in self.names}  # each bridge's OVSDB server
        if per_hypervisor:
            self.dbs |= {name: FakeOvsdb() for name in self.names[1:]}
        self.switches: dict[str, FakeSwitch] = {}
        # (switch, port) -> (switch, port) at the other end of a patch pair, both ways.
        self.links: dict[tuple[str, int], tuple[str, int]] = {}
        self.ports: dict[tuple[str, int], VmPort] = {}  # the VM ports there are
        self.up: dict[tuple[str, int], bool] = {}  # their links
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Fabric:
        await self._stack.__aenter__()
        try:
            for db in self.servers:
                await self._stack.enter_async_context(db)
            await self._build()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.__aexit__(kind, exc, tb)

    @property
    def servers(self) -> list[FakeOvsdb]:
        """The OVSDB servers, one per hypervisor or one for all."""
        return list({id(db): db for db in self.dbs.values()}.values())

    @property
    def remotes(self) -> list[str]:
        return [db.remote for db in self.servers]

    async def _build(self) -> None:
        count = len(self.names)
        with self._transaction(self.names):
            for i, name in enumerate(self.names):
                self.dbs[name].add_bridge(name, i + 1)
            for i in range(count):
                for j in range(i + 1, count):
                    self._join(self._end(i, j), self._end(j, i))
        for i, name in enumerate(self.names):
            patches = [
                Port(PATCH_BASE + j, f"p{i}-{j}", patch_mac(i, j)) for j in range(count) if j != i
            ]
            switch = FakeSwitch(i + 1, patches, name=name, tls=self.tls)
            self.switches[name] = await self._stack.enter_async_context(switch)

    def _join(self, a: tuple[str, str, int], b: tuple[str, str, int]) -> None:
        """A patch pair, or between two servers, two ports that name each other."""
        if self.dbs[a[0]] is self.dbs[b[0]]:
            self.dbs[a[0]].add_patch(a, b)
            return
        for (bridge, name, ofport), (peer, iface, _) in ((a, b), (b, a)):
            hint = {"vportd-peer": f"{peer}/{iface}"}
            self.dbs[bridge].add_port(bridge, name, ofport, ofport_request=ofport,
                                      external_ids=hint)  # fmt: skip

    def _transaction(self, switches: Iterable[str]) -> ExitStack:
        """One transaction on each server of `switches`."""
        stack = ExitStack()
        for db in {id(self.dbs[s]): self.dbs[s] for s in switches}.values():
            stack.enter_context(db.transaction())
        return stack

    def _end(self, i: int, j: int) -> tuple[str, str, int]:
        """hv{i}'s end of its patch pair with hv{j}: (bridge, interface, OpenFlow port)."""
        self.links[f"hv{i}", PATCH_BASE + j] = (f"hv{j}", PATCH_BASE + i)
        return (f"hv{i}", f"p{i}-{j}", PATCH_BASE + j)

    # -- the switches and their controllers ---------------------------------------------
    def switch(self, name: str) -> FakeSwitch:
        return self.switches[name]

    def connect(self, host: str, port: int) -> None:
        """Every switch connects to the controller at host:port (and stays connected)."""
        for switch in self.switches.values():
            switch.connect(host, port)

    # -- VMs -------------------------------------------------------------------------------
    def boot(self, *vms: VmPort) -> None:
        """VMs' taps appear, up: their OVSDB rows in one transaction, then their switch ports."""
        for n, vm in enumerate(vms):
            self._check_free(vm, vms[:n])
        with self._transaction(vm.switch for vm in vms):
            for vm in vms:
                self.dbs[vm.switch].add_vm_port(
                    vm.switch, vm.name, vm.port, vm.mac, iface_id=f"iface-{vm.name}",
                    vm_id=f"vm-{vm.mac}", tag=vm.tag,
                )  # fmt: skip
        for vm in vms:
            self.ports[vm.switch, vm.port] = vm
            self.up[vm.switch, vm.port] = True
            self.switches[vm.switch].add_port(vm.port, vm.name, vm.mac)

    def arrive(self, vm: VmPort) -> None:
        """A live migration's destination port is added and comes up."""
        self.boot(vm)

    def leave(self, vm: VmPort) -> None:
        """A VM's port is deleted (the source's, once the VM runs at the destination)."""
        if self.ports.pop((vm.switch, vm.port), None) != vm:
            raise ValueError(f"{vm} is not on the fabric")
        del self.up[vm.switch, vm.port]
        self.dbs[vm.switch].delete_port(vm.name)
        self.switches[vm.switch].delete_port(vm.port)

    def migrate(self, vm: VmPort, to: VmPort) -> None:
        """What a VMM's live migration shows the switches: `to` added and up, then `vm` gone."""
        if to.mac != vm.mac:
            raise ValueError(f"{vm.mac} cannot move to {to.mac}'s port")
        self.arrive(to)
        self.leave(vm)

    def set_link(self, vm: VmPort, up: bool) -> None:
        """The tap's link goes down or up (OVSDB and the switch's port status)."""
        self.up[vm.switch, vm.port] = up
        self.dbs[vm.switch].set_link(vm.name, up)
        self.switches[vm.switch].set_link(vm.port, up)

    def _check_free(self, vm: VmPort, also: Iterable[VmPort]) -> None:
        if vm.switch not in self.switches:
            raise ValueError(f"no switch {vm.switch}")
        if not 1 <= vm.port < PATCH_BASE:
            raise ValueError(f"VM ports are 1 to {PATCH_BASE - 1}, not {vm.port}")
        taken = {(x.switch, x.port) for x in also} | self.ports.keys()
        if (vm.switch, vm.port) in taken:
            raise ValueError(f"{vm.switch} port {vm.port} is taken")

    # -- the data plane ---------------------------------------------------------------------
    def deliveries(
        self, mac: str, switch: str, in_port: int, *, src: str = STRANGER
    ) -> set[tuple[str, int]]:
        """Where a frame for `mac` entering `switch` by `in_port` ends: (switch, port) pairs
        that are not patch ports. Copies to a controller are not deliveries."""
        ends: set[tuple[str, int]] = set()
        seen: set[tuple[str, int]] = set()
        todo = [(switch, in_port, 0)]  # (and the frame's vlan_vid: a tagged segment's tag)
        while todo:
            name, port, vid = todo.pop()
            if (name, port) in seen:
                raise AssertionError(f"a frame for {mac} loops: it enters {name, port} twice")
            seen.add((name, port))
            trace = self.switches[name].table.trace(port, src, mac, vlan_vid=vid)
            for out, headers in zip(trace.outputs, trace.headers, strict=True):
                if out == _TO_CONTROLLER:
                    continue
                if not isinstance(out, int):
                    raise AssertionError(f"a frame for {mac} goes to {out!r} on {name}")
                peer = self.links.get((name, out))
                tag = dict(headers)["vlan_vid"]
                if peer is None:
                    assert not tag, f"a frame for {mac} leaves {name} port {out} tagged"
                    ends.add((name, out))
                else:
                    todo.append((*peer, tag))
        return ends
