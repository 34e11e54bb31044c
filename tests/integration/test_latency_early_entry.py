"""A VM port is an entry from the committed OVSDB row, corrected by what ovs-vswitchd does.

The controller (`Runtime`) on a private Open vSwitch whose ovs-vswitchd is
stopped while ports are added: what the table holds then comes from the
committed rows alone (`ofport_request`, port state down). Once ovs-vswitchd
runs again, its numbering and its failures decide: the entry comes up, moves
to the number it granted, or goes. One case writes `ofport` itself, as
ovs-vswitchd does, to move a port without depending on which of two requests
ovs-vswitchd grants.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.integration.support import Fabric, assert_flows_agree, running
from vportd.core.messages import EventKind, Output, PortEvent
from vportd.core.model import PortState
from vportd.node.runtime import Runtime
from vportd_lab.bed.cluster import until
from vportd_lab.bed.ovs import PrivateOVS, temporary_ovs

pytestmark = [
    pytest.mark.ovs,
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="Open vSwitch not installed"),
]

MAC_A, MAC_B, MAC_C, MAC_D = (f"02:00:00:00:0b:0{i}" for i in range(1, 5))


@pytest.fixture(scope="module")
def ovs() -> Iterator[PrivateOVS]:
    with temporary_ovs() as switch:
        yield switch


@pytest.fixture
async def fabric(ovs: PrivateOVS) -> AsyncIterator[Fabric]:
    fab = await Fabric(ovs, size=2).build()
    try:
        yield fab
    finally:
        if ovs.running("ovs-vswitchd") is None:
            await asyncio.to_thread(ovs.start_vswitchd)
        await fab.tear_down()


@pytest.fixture(autouse=True)
def _log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vportd")


def vm_args(name: str, ofport: int, mac: str, *extra: str) -> list[str]:
    """A VM port as libvirt adds it, not waiting for ovs-vswitchd (it is stopped)."""
    return [
        "--no-wait", "add-port", "hv0", name, "--", "set", "Interface", name, "type=dummy",
        f"ofport_request={ofport}", f"external_ids:attached-mac={mac}",
        f"external_ids:iface-id={name}-iface", *extra,
    ]  # fmt: skip


def spy_on_port_events(rt: Runtime, events: list[PortEvent]) -> None:
    """Keep every port event the runtime takes from OVSDB in `events`."""
    take = rt.port_event

    def spy(ev: PortEvent) -> Output[None]:
        events.append(ev)
        return take(ev)

    rt.port_event = spy  # type: ignore[method-assign]


def at(rt: Runtime, mac: str, port: int, state: PortState) -> bool:
    rec = rt.core.entry(mac)
    return rec is not None and (rec.loc.ovs, rec.loc.port, rec.port_state) == ("hv0", port, state)


async def read(rt: Runtime, name: str) -> None:
    """Wait until the monitor has handed the runtime a snapshot with interface `name`."""
    await until(lambda: any(r.name == name for r in rt.feed.rows()), f"the row of {name}")


async def test_an_entry_from_the_request_comes_up_when_ovs_vswitchd_numbers_the_port(
    fabric: Fabric,
) -> None:
    events: list[PortEvent] = []
    async with running(fabric) as rt:
        spy_on_port_events(rt, events)
        await asyncio.to_thread(fabric.ovs.stop_vswitchd)
        await fabric.vsctl(*vm_args("vma", 5, MAC_A))
        await until(lambda: at(rt, MAC_A, 5, PortState.DOWN), "vma's entry at 5, down")

        await asyncio.to_thread(fabric.ovs.start_vswitchd)
        await until(lambda: at(rt, MAC_A, 5, PortState.UP), "vma's entry up at 5")
        assert [e.kind for e in events if e.mac == MAC_A] == [EventKind.ADD, EventKind.MODIFY]
        await assert_flows_agree(rt, fabric)


async def test_a_number_held_by_another_port_waits_for_ovs_vswitchd(fabric: Fabric) -> None:
    await fabric.add_vm("hv0", "vma", 5, MAC_A)
    async with running(fabric) as rt:
        await asyncio.to_thread(fabric.ovs.stop_vswitchd)
        await fabric.vsctl(*vm_args("vmb", 5, MAC_B))
        await read(rt, "vmb")
        assert rt.core.entry(MAC_B) is None  # 5 is vma's: vmb gets another number

        await asyncio.to_thread(fabric.ovs.start_vswitchd)
        await until(lambda: rt.core.entry(MAC_B) is not None, "vmb's entry")
        await until(lambda: at(rt, MAC_A, 5, PortState.UP), "vma still up at 5")
        rec = rt.core.entry(MAC_B)
        assert rec is not None and rec.loc.port not in (None, 5)
        await assert_flows_agree(rt, fabric)


async def test_a_port_ovs_vswitchd_fails_loses_its_entry(fabric: Fabric) -> None:
    async with running(fabric) as rt:
        await asyncio.to_thread(fabric.ovs.stop_vswitchd)
        await fabric.vsctl(
            *vm_args("vmc", 8, MAC_C), "--", "set", "Interface", "vmc", "type=nowhere"
        )
        await until(lambda: at(rt, MAC_C, 8, PortState.DOWN), "vmc's entry at 8, down")

        await asyncio.to_thread(fabric.ovs.start_vswitchd)
        await until(lambda: rt.core.entry(MAC_C) is None, "vmc's entry to go")
        rows = await asyncio.to_thread(fabric.ovs.rows, "Interface", "name", "ofport", "error")
        assert {r["name"]: r["ofport"] for r in rows}["vmc"] == -1
        await assert_flows_agree(rt, fabric)


async def test_an_entry_moves_to_the_number_ovs_vswitchd_writes(fabric: Fabric) -> None:
    events: list[PortEvent] = []
    async with running(fabric) as rt:
        spy_on_port_events(rt, events)
        await asyncio.to_thread(fabric.ovs.stop_vswitchd)
        await fabric.vsctl(*vm_args("vmd", 9, MAC_D))
        await until(lambda: at(rt, MAC_D, 9, PortState.DOWN), "vmd's entry at 9")
        await fabric.vsctl("--no-wait", "set", "Interface", "vmd", "ofport=11")  # as it would
        await until(lambda: at(rt, MAC_D, 11, PortState.DOWN), "vmd's entry moved to 11")
        moves = [(e.kind, e.port) for e in events if e.mac == MAC_D]
        assert moves == [(EventKind.ADD, 9), (EventKind.DELETE, 9), (EventKind.ADD, 11)]

        await asyncio.to_thread(fabric.ovs.start_vswitchd)  # it grants the request: 9
        await until(lambda: at(rt, MAC_D, 9, PortState.UP), "vmd's entry up at 9")
        await assert_flows_agree(rt, fabric)
