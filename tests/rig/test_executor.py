"""The executor tier on real controllers and fake switches: coalescing, barriers, the codec and
the compiler, as the switches see them (their tables hold the encoded flow mods, applied).

Barriers are counted on the switches (BARRIER_REQUESTs they handled), flows
compared between a switch's table and its master's compiler.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp

from tests.fakes.oftable import SwitchError
from tests.fakes.switch import Channel, FakeSwitch
from tests.rig.cluster import Rig, running
from tests.rig.fabric import VmPort
from tests.rig.http import PEER_AUTH, leader_sync, sync_json, sync_path
from tests.rig.member import Options
from vportd.core.flow import Flow, FlowCommand, FlowMod
from vportd.core.pipeline import arrival_flow
from vportd.southbound.openflow import wire
from vportd.southbound.openflow.flowcodec import encode_flow_mod

BURST = 50


def vms(switch: str, count: int, first: int = 1) -> list[VmPort]:
    return [VmPort(f"02:00:00:02:00:{n:02x}", switch, n) for n in range(first, first + count)]


def barriers(rig: Rig) -> dict[str, int]:
    return {n: rig.fabric.switch(n).handled[ofp.OFPT_BARRIER_REQUEST] for n in rig.fabric.names}


def flow_mods(switch: FakeSwitch) -> int:
    return switch.handled[ofp.OFPT_FLOW_MOD]


def agree(rig: Rig, switch: str) -> bool:
    """The switch holds exactly what its master's compiler believes it holds."""
    believed = set(rig.master(switch).core.installed(switch))
    return rig.fabric.switch(switch).table.core_flows() == believed


def reaches_all(rig: Rig, booted: list[VmPort], sender: VmPort) -> bool:
    return all(
        rig.fabric.deliveries(vm.mac, sender.switch, sender.port) == {(vm.switch, vm.port)}
        for vm in booted
    )


async def test_a_boot_storm_in_one_transaction_takes_few_barriers(rig: Rig) -> None:
    sender = VmPort("02:00:00:02:01:01", "hv2", 1)
    await rig.boot(sender)
    before = barriers(rig)
    booted = vms("hv0", BURST)
    await rig.boot(*booted)  # one OVSDB transaction: 2 port events (add, up) per VM
    events = 2 * BURST
    spent = {n: barriers(rig)[n] - before[n] for n in rig.fabric.names}
    assert 0 < spent["hv0"] < events and all(n < events for n in spent.values()), spent
    for name in rig.fabric.names:
        assert agree(rig, name)
    assert reaches_all(rig, booted, sender)


async def test_queued_outputs_are_coalesced_behind_a_barrier(rig: Rig) -> None:
    """VMs booting one transaction each while their switch holds a barrier unanswered:
    the outputs queue and go out together, under one barrier."""
    sender = VmPort("02:00:00:02:01:01", "hv2", 1)
    await rig.boot(sender)
    switch, master = rig.fabric.switch("hv0"), rig.master("hv0")
    before = barriers(rig)["hv0"]
    switch.pause()
    booted = vms("hv0", BURST)
    for vm in booted:
        rig.fabric.boot(vm)  # a transaction (an OVSDB update, an output) each
    await rig.until(lambda: all(master.core.entry(vm.mac) for vm in booted), "every VM known")
    assert not master.runtime.idle  # its first batch waits for the barrier
    switch.resume()
    await rig.settle()
    assert 0 < barriers(rig)["hv0"] - before < BURST
    assert agree(rig, "hv0")
    assert reaches_all(rig, booted, sender)


def _channel(switch: FakeSwitch, port: int) -> Channel:
    return next(c for c in switch.channels if c.port == port and c.connected)


def _waiting(channel: Channel, msg_type: int) -> bool:
    return any(wire.parse_header(data).msg_type == msg_type for data in channel.inbox)


async def test_a_sync_is_answered_only_once_the_arrival_flow_is_in(rig: Rig) -> None:
    vm = VmPort("02:00:00:02:02:01", "hv0", 1)
    await rig.boot(vm)
    destination, switch = rig.master("hv1"), rig.fabric.switch("hv1")
    sync = leader_sync(rig.stored()[vm.mac], "hv1", rig.leader.id)
    arrival = arrival_flow(vm.mac)
    switch.pause()
    client = rig.client(destination.id, auth=False)
    put = asyncio.create_task(
        client.put(sync_path(vm.mac), json=sync_json(sync), headers=PEER_AUTH)
    )
    channel = _channel(switch, destination.runtime.openflow.port)
    await rig.until(
        lambda: _waiting(channel, ofp.OFPT_BARRIER_REQUEST), "the flow mods and their barrier"
    )
    assert destination.core.vport(vm.mac).migrating  # applied in the core...
    assert arrival in destination.core.installed("hv1")  # ...the flow sent...
    assert arrival not in switch.table.core_flows()  # ...not applied yet
    await asyncio.sleep(0)
    assert not put.done()
    switch.resume()
    got = await put
    assert (got.status_code, got.json()["status"]) == (200, "sync-complete")
    assert arrival in switch.table.core_flows()


class Refusing:
    """A switch's `refuse` hook: an ADD of a flow to `mac` fails (its table is full)."""

    def __init__(self, mac: str) -> None:
        self.mac = mac
        self.refused = 0

    def __call__(self, mod: Any) -> SwitchError | None:  # os-ken's OFPFlowMod
        if mod.command == ofp.OFPFC_ADD and dict(mod.match.items()).get("eth_dst") == self.mac:
            self.refused += 1
            return SwitchError(ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_TABLE_FULL, "table full")
        return None


def _to(mac: str, flows: set[Flow]) -> set[Flow]:
    return {f for f in flows if f.match.eth_dst == mac}


async def test_a_refused_flow_mod_is_read_back(rig: Rig) -> None:
    """The runtime believes what the switch holds, not what it sent."""
    vm = VmPort("02:00:00:02:03:01", "hv2", 7)
    switch, master = rig.fabric.switch("hv2"), rig.master("hv2")
    switch.refuse = refusing = Refusing(vm.mac)
    dumps = switch.handled[ofp.OFPT_MULTIPART_REQUEST]
    await rig.boot(vm)  # settled: the switch's flows are what the compiler believes
    assert refusing.refused > 0
    assert switch.handled[ofp.OFPT_MULTIPART_REQUEST] > dumps  # read back after the refusal
    assert _to(vm.mac, switch.table.core_flows()) == set()
    assert _to(vm.mac, set(master.core.installed("hv2"))) == set()
    # The next change of those flows tries again: the port goes down and up.
    switch.refuse = None
    rig.fabric.set_link(vm, False)
    await rig.until(lambda: not master.core.vport(vm.mac).loc.link_up, "the port down")
    rig.fabric.set_link(vm, True)
    await rig.until(lambda: master.core.vport(vm.mac).loc.link_up, "the port up")
    await rig.settle()
    assert _to(vm.mac, switch.table.core_flows()) != set()


async def test_a_reconnecting_switch_gets_only_the_difference(rig: Rig) -> None:
    await rig.boot(*vms("hv0", 3), *vms("hv1", 3, first=4))
    switch, master = rig.fabric.switch("hv2"), rig.master("hv2")
    switch.disconnect()
    await rig.until(lambda: "hv2" not in master.runtime.switches.adopted, "hv2 to be gone")
    # Meanwhile a VM boots on it, and it loses a flow (its table is its own).
    late = VmPort("02:00:00:02:04:01", "hv2", 9)
    rig.fabric.boot(late)
    await rig.until(lambda: all(m.core.entry(late.mac) for m in rig.live()), "the VM known")
    lost = next(f for f in sorted(switch.table.core_flows(), key=str) if f.table == 1)
    switch.table.apply(encode_flow_mod(FlowMod("hv2", FlowCommand.DELETE, lost)).wire)
    held = switch.table.core_flows()
    mods, adoptions = flow_mods(switch), master.runtime.switches.stats.reconciles["hv2"]
    switch.reconnect()
    await rig.settle()
    assert master.runtime.switches.stats.reconciles["hv2"] == adoptions + 1
    after = switch.table.core_flows()
    difference = {f.key for f in held ^ after}
    assert 0 < len(difference) < len(after)
    assert flow_mods(switch) - mods == len(difference)
    assert agree(rig, "hv2")
    assert rig.fabric.deliveries(late.mac, "hv0", 1) == {("hv2", late.port)}


async def test_a_destination_that_never_confirms_fails_the_migration(tmp_path: Path) -> None:
    """Its switch holds the arrival flow's barrier unanswered past the sync timeout: the
    leader rolls the migration back and tells the VMM (503), and every table follows."""
    async with running(tmp_path, Options(sync_timeout=1.0)) as rig:
        vm = VmPort("02:00:00:02:05:01", "hv0", 1)
        await rig.boot(vm)
        switch = rig.fabric.switch("hv1")
        switch.pause()
        got = await rig.client(rig.leader.id).post(
            "/v1/migrations", json={"vm": vm.mac, "source": "hv0", "destination": "hv1"}
        )
        assert (got.status_code, got.json()["error"]) == (503, "no-controller")
        switch.resume()
        await rig.settle()
        assert [m.state for m in rig.leader.core.migrations()] == ["failed"]
        assert not any(m.core.vport(vm.mac).migrating for m in rig.live())
        assert arrival_flow(vm.mac) not in switch.table.core_flows()


async def test_a_migration_is_answered_while_a_storm_waits_on_another_switch(
    tmp_path: Path,
) -> None:
    """The leader's own switch holds a boot storm's barrier unanswered: the handshake's
    outputs go ahead of the storm's and need no barrier of that switch, so the VMM is
    answered 201 meanwhile; the storm's flows follow once the switch answers."""
    async with running(tmp_path, Options(sync_timeout=2.0)) as rig:
        busy = next(n for n in rig.fabric.names if rig.master(n) is rig.leader)
        source, destination = (n for n in rig.fabric.names if n != busy)
        vm = VmPort("02:00:00:02:06:01", source, 1)
        await rig.boot(vm)
        rig.fabric.switch(busy).pause()
        storm = vms(busy, BURST, first=10)
        for booted in storm:
            rig.fabric.boot(booted)
        await rig.until(lambda: not rig.leader.runtime.idle, "the storm queued on the leader")
        got = await rig.client(rig.leader.id).post(
            "/v1/migrations", json={"vm": vm.mac, "source": source, "destination": destination}
        )
        assert got.status_code == 201, got.text
        assert not rig.leader.runtime.idle  # the storm still waits for its barrier
        rig.fabric.switch(busy).resume()
        await rig.settle()
        for name in rig.fabric.names:
            assert agree(rig, name)
        assert reaches_all(rig, storm, vm)
