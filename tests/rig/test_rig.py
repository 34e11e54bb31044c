"""The rig itself: what it starts, what `settled` means, where frames go, and what a VMM's
live migration does to the switches' tables."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.rig.cluster import Rig, running
from tests.rig.fabric import PATCH_BASE, Fabric, VmPort
from tests.rig.member import Options

A = VmPort("02:00:00:00:01:0a", "hv0", 1)
B = VmPort("02:00:00:00:01:0b", "hv1", 2)
C = VmPort("02:00:00:00:01:0c", "hv2", 3)


async def test_three_controllers_each_master_a_switch(rig: Rig) -> None:
    assert [m.id for m in rig.live()] == ["c0", "c1", "c2"]
    assert rig.settled()
    masters = {rig.master(s).id for s in rig.fabric.names}
    assert masters == {"c0", "c1", "c2"}  # (a bounded load spreads hv0..hv2 so)
    for name in rig.fabric.names:
        switch = rig.fabric.switch(name)
        assert sum(c.ready for c in switch.channels) == 3
        assert switch.table.core_flows() == set(rig.master(name).core.installed(name))


async def test_frames_reach_the_vms_across_the_patch_links(rig: Rig) -> None:
    await rig.boot(A, B, C)
    for vm in (A, B, C):
        for sender in (A, B, C):
            if sender is not vm:
                assert rig.fabric.deliveries(vm.mac, sender.switch, sender.port) == {
                    (vm.switch, vm.port)
                }
    # A frame for an unknown MAC ends nowhere; one from a patch port is not sent back.
    assert rig.fabric.deliveries("02:00:00:00:01:99", "hv0", A.port) == set()
    assert rig.fabric.deliveries(A.mac, "hv0", PATCH_BASE + 1) == {("hv0", A.port)}


async def test_a_live_migration_moves_the_vm_in_every_table(rig: Rig) -> None:
    await rig.boot(A, B)
    client = rig.client(rig.followers()[0].id)
    got = await client.post("/v1/migrations", json={"vm": A.mac, "source": "hv0",
                                                     "destination": "hv2"})  # fmt: skip
    assert got.status_code == 201
    there = VmPort(A.mac, "hv2", 4)
    await rig.arrive(there)  # the destination's port comes up: the VM runs there
    await rig.settle()
    assert rig.fabric.deliveries(A.mac, B.switch, B.port) == {(there.switch, there.port)}
    rig.fabric.leave(A)  # then the source's port goes
    await rig.until(
        lambda: rig.leader.core.migration(got.json()["id"]).state == "completed", "completion"
    )
    await rig.settle()
    assert rig.fabric.deliveries(A.mac, B.switch, B.port) == {(there.switch, there.port)}
    for m in rig.live():
        entry = m.core.vport(A.mac)
        assert (entry.loc.ovs, entry.loc.port, entry.migrating) == ("hv2", 4, False)
    # And back, in one go as the switches see it.
    back = await client.post("/v1/migrations", json={"vm": A.mac, "source": "hv2",
                                                      "destination": "hv0"})  # fmt: skip
    assert back.status_code == 201
    await rig.live_migrate(there, A)
    assert rig.fabric.deliveries(A.mac, B.switch, B.port) == {(A.switch, A.port)}
    await rig.until(
        lambda: rig.leader.core.migration(back.json()["id"]).state == "completed", "completion"
    )


async def test_alone_with_the_memory_store(tmp_path: Path) -> None:
    async with running(tmp_path, Options(controllers=1, store="memory")) as rig:
        assert rig.server is None and rig.leader.node is None
        await rig.boot(A, B)
        assert rig.fabric.deliveries(A.mac, B.switch, B.port) == {(A.switch, A.port)}
        got = await rig.client("c0").post(
            "/v1/migrations", json={"vm": A.mac, "source": "hv0", "destination": "hv1"}
        )
        assert got.status_code == 201


async def test_a_crashed_controller_is_replaced(rig: Rig) -> None:
    await rig.boot(A, B, C)
    old = rig.leader
    await rig.crashed(old.id, expire=True)
    await rig.settle()
    assert rig.leader is not old and old not in rig.live()
    for vm, sender in ((A, B), (B, C), (C, A)):
        assert rig.fabric.deliveries(vm.mac, sender.switch, sender.port) == {(vm.switch, vm.port)}


async def test_a_rig_that_cannot_settle_says_why(rig: Rig) -> None:
    rig.fabric.switch("hv1").pause()
    rig.fabric.boot(B)
    with pytest.raises(AssertionError, match="not within"):
        await rig.settle(timeout=0.3)
    rig.fabric.switch("hv1").resume()
    await rig.settle()


def test_the_fabric_refuses_a_port_it_cannot_have() -> None:
    async def run() -> None:
        async with Fabric(2) as fabric:
            twice = [VmPort("02:00:00:00:01:01", "hv0", 1), VmPort("02:00:00:00:01:02", "hv0", 1)]
            with pytest.raises(ValueError, match="taken"):
                fabric.boot(*twice)
            with pytest.raises(ValueError, match="VM ports"):
                fabric.boot(VmPort("02:00:00:00:01:03", "hv0", PATCH_BASE))

    asyncio.run(run())
