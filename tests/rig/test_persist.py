"""Persist before send, on real controllers: nothing a controller announces reaches a peer
before the store holds it.

The leader's vPort syncs leave once the migration's record is durable; a
master's port records reach the other tables only through the store. A
controller cut off from the store (`partition`) can write nothing: a
watcher polls, all along, that no peer ever shows what the store does not.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import httpx

from tests.rig.cluster import Rig
from tests.rig.fabric import VmPort
from tests.rig.http import notify_body
from tests.rig.member import Member
from vportd.core.pipeline import arrival_flow

WATCH = 0.001  # s between the watcher's looks


@contextlib.asynccontextmanager
async def never(what: str, happens: Callable[[], bool]) -> AsyncIterator[None]:
    """Watch, while the block runs, that `happens()` is never true; fail saying `what` if it was."""
    seen: list[bool] = []

    async def watch() -> None:
        while True:
            if happens():
                seen.append(True)
                return
            await asyncio.sleep(WATCH)

    watcher = asyncio.create_task(watch())
    try:
        yield
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    assert not seen, what


def marked_without_the_store(rig: Rig, peers: list[Member], mac: str) -> bool:
    """A peer shows a migration mark for `mac` that the store does not hold."""
    stored = rig.stored().get(mac)
    held = None if stored is None else stored.mig
    return any((e := p.core.entry(mac)) is not None and e.mig != held for p in peers if p.alive)


async def test_a_notify_whose_record_cannot_be_written_sends_no_sync(rig: Rig) -> None:
    old = rig.leader
    src, dst = [s for s in rig.fabric.names if rig.master(s) is not old][:2]
    vm = VmPort("02:00:00:03:00:01", src, 1)
    await rig.boot(vm)
    peers = [m for m in rig.live() if m is not old]
    peer_switches = [rig.fabric.switch(s) for s in rig.fabric.names if rig.master(s) is not old]
    arrival = arrival_flow(vm.mac)
    rig.partition(old.id)
    async with never("a peer showed a mark the store lacks", lambda: marked_without_the_store(
        rig, peers, vm.mac
    )):  # fmt: skip
        notify = asyncio.create_task(
            rig.client(old.id).post("/v1/migrations", json=notify_body(vm.mac, src, dst))
        )
        # The leader decides at once (its own table shows the migration)...
        await rig.until(lambda: old.core.vport(vm.mac).migrating, "the leader to decide")
        # ...but cannot write it: its leadership ends with the lease it cannot renew.
        await rig.until(lambda: not old.core.leading, f"{old.id} to lose its leadership")
        assert [p.served.east_west() for p in peers] == [[], []]  # no sync to anyone
        for p in peers:
            assert p.core.vport(vm.mac).mig is None
        for switch in peer_switches:
            assert arrival not in switch.table.core_flows()
        await rig.crashed(old.id, expire=True)
        rig.heal(old.id)
        await rig.settle()
    answered = await asyncio.gather(notify, return_exceptions=True)
    assert not isinstance(answered[0], httpx.Response) or answered[0].status_code != 201
    stored = rig.stored()
    for m in rig.live():
        assert {r.vm: r for r in m.core.records()} == stored
        assert not m.core.vport(vm.mac).migrating
    new = rig.leader
    assert new is not old
    got = await rig.client(new.id).post("/v1/migrations", json=notify_body(vm.mac, src, dst))
    assert got.status_code == 201


async def test_a_port_record_reaches_the_peers_only_through_the_store(rig: Rig) -> None:
    sender = VmPort("02:00:00:03:00:01", "hv0", 1)
    await rig.boot(sender)
    master = rig.master("hv1")
    peers = [m for m in rig.live() if m is not master]
    vm = VmPort("02:00:00:03:00:02", "hv1", 3)

    def early() -> bool:
        return vm.mac not in rig.stored() and any(p.core.entry(vm.mac) for p in peers)

    async with never("a peer knew the VM before the store", early):
        rig.partition(master.id)
        rig.fabric.boot(vm)
        await rig.until(lambda: master.core.entry(vm.mac) is not None, "its master to see it")
        await rig.until(lambda: master.runtime.idle, "its master's flows")
        assert vm.mac not in rig.stored()
        assert all(p.core.entry(vm.mac) is None for p in peers)
        rig.heal(master.id)  # the write lands
        await rig.until(lambda: all(p.core.entry(vm.mac) for p in peers), "every table")
        await rig.settle()
    assert rig.stored()[vm.mac] == master.core.record(vm.mac)
    assert rig.fabric.deliveries(vm.mac, sender.switch, sender.port) == {("hv1", 3)}


async def test_a_leader_whose_record_was_never_written_reads_its_entry_back(rig: Rig) -> None:
    """The leader applies its decision to its own table at once; when its leadership ends
    before the store holds it, the store's entry replaces its own (no one else saw it)."""
    old = rig.leader
    src, dst = [s for s in rig.fabric.names if rig.master(s) is not old][:2]
    vm = VmPort("02:00:00:03:00:01", src, 1)
    await rig.boot(vm)
    rig.partition(old.id)
    notify = asyncio.create_task(
        rig.client(old.id).post("/v1/migrations", json=notify_body(vm.mac, src, dst))
    )
    await rig.until(lambda: old.core.vport(vm.mac).migrating, "the leader to decide")
    await rig.until(lambda: not old.core.leading, f"{old.id} to lose its leadership")
    rig.heal(old.id)  # it lives on, as a member again
    await rig.settle(timeout=10)
    await asyncio.gather(notify, return_exceptions=True)
    assert old.core.record(vm.mac) == rig.stored()[vm.mac]
    assert not old.core.vport(vm.mac).migrating
    for name in rig.fabric.names:
        assert arrival_flow(vm.mac) not in rig.fabric.switch(name).table.core_flows()
