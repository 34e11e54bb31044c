"""The controller's real runtime on fakes: two FakeSwitches and a FakeOvsdb, no Open vSwitch.

hv0 - hv1 joined by a patch pair (hv0 port 101 - hv1 port 100), VM A on hv0
port 5, VM B on hv1 port 6. What is checked is where frames go in the
switches' tables, and that the tables hold what the compiler believes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from tests.fakes.ofwire import Port
from tests.fakes.ovsdb import FakeOvsdb
from tests.fakes.solo import solo_runtime
from tests.fakes.switch import FakeSwitch
from vportd.core.model import PortState
from vportd.node.runtime import Runtime
from vportd_lab.bed.cluster import until

MAC_A, MAC_B, MAC_C = "02:00:00:00:0a:01", "02:00:00:00:0a:02", "02:00:00:00:0a:03"
BROADCAST = "ff:ff:ff:ff:ff:ff"
PATCH = "02:00:00:00:ff:01"


@contextlib.asynccontextmanager
async def runtime(db: FakeOvsdb) -> AsyncIterator[Runtime]:
    rt = solo_runtime(db.remote)
    task = asyncio.create_task(rt.run())
    try:
        await until(lambda: rt.openflow.ready.is_set() or task.done(), "the runtime to listen")
        yield rt
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def settled(rt: Runtime, names: list[str]) -> bool:
    return all(rt.switches.stats.reconciles[n] for n in names) and rt.idle


async def test_the_runtime_programs_fake_switches_from_a_fake_ovsdb() -> None:
    async with FakeOvsdb() as db:
        db.add_bridge("hv0", 1)
        db.add_bridge("hv1", 2)
        db.add_patch(("hv0", "hv0-hv1", 101), ("hv1", "hv1-hv0", 100))
        db.add_vm_port("hv0", "vma", 5, MAC_A, iface_id="a-iface", vm_id="a-vm")
        db.add_vm_port("hv1", "vmb", 6, MAC_B)
        async with (
            runtime(db) as rt,
            FakeSwitch(1, [Port(5, "vma", MAC_A), Port(101, "hv0-hv1", PATCH)], name="hv0") as s0,
            FakeSwitch(2, [Port(6, "vmb", MAC_B), Port(100, "hv1-hv0", PATCH)], name="hv1") as s1,
        ):
            s0.connect("127.0.0.1", rt.openflow.port)
            s1.connect("127.0.0.1", rt.openflow.port)
            await until(lambda: settled(rt, ["hv0", "hv1"]), "both switches reconciled")
            rec = rt.core.vport(MAC_A)
            assert (rec.loc.ovs, rec.loc.port, rec.port_state) == ("hv0", 5, PortState.UP)
            for name, switch in (("hv0", s0), ("hv1", s1)):
                assert switch.table.core_flows() == set(rt.core.installed(name))
            assert s0.table.lookup(5, MAC_A, MAC_B) == {101}
            assert s1.table.lookup(100, MAC_A, MAC_B) == {6}
            assert s1.table.lookup(6, MAC_B, BROADCAST) == {100}
            assert s0.table.lookup(101, MAC_B, BROADCAST) == {5}

            # A VM comes on hv1: OVSDB names it, the switch tells of its port.
            db.add_vm_port("hv1", "vmc", 7, MAC_C)
            s1.add_port(7, "vmc", MAC_C)
            await s0.wait_flows(lambda t: t.lookup(5, MAC_A, MAC_C) == {101})
            await s1.wait_flows(lambda t: t.lookup(6, MAC_B, MAC_C) == {7})
            # And goes: its flows go everywhere.
            db.delete_port("vmc")
            s1.delete_port(7)
            await s0.wait_flows(lambda t: t.lookup(5, MAC_A, MAC_C) == set())
            await s1.wait_flows(lambda t: t.lookup(100, MAC_A, MAC_C) == set())
            await until(lambda: rt.idle, "the runtime to be idle")
            assert s1.table.core_flows() == set(rt.core.installed("hv1"))
