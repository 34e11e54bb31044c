"""The controller (`Runtime`: core + OpenFlow + OVSDB + LLDP) on a real private Open vSwitch.

One dummy-datapath OVS for the module; each test builds hv0 - hv1 - hv2
(patch ports, secure, OpenFlow 1.3) and runs a Runtime in-process as a task,
or `vportd` itself as a process. What is checked is what OVS shows
(`ovs-vsctl`, `ovs-ofctl -O OpenFlow13 dump-flows`) against what the core
holds (`runtime.core.vports()`, `runtime.core.installed(switch)`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.support import (
    Fabric,
    assert_flows_agree,
    config,
    running,
)
from vportd.core.model import PortState
from vportd.core.pipeline import vm_flow
from vportd.core.topology import Link
from vportd.node.runtime import Runtime
from vportd.node.switches import LLDP_PUNT
from vportd_lab.bed.cluster import until
from vportd_lab.bed.ovs import PrivateOVS, temporary_ovs
from vportd_lab.bed.ports import free_port

pytestmark = [
    pytest.mark.ovs,
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="Open vSwitch not installed"),
]

MAC_A, MAC_B, MAC_C = "02:00:00:00:0a:01", "02:00:00:00:0a:02", "02:00:00:00:0a:03"


@pytest.fixture(scope="module")
def ovs() -> Iterator[PrivateOVS]:
    with temporary_ovs() as switch:
        yield switch


@pytest.fixture
async def fabric(ovs: PrivateOVS) -> AsyncIterator[Fabric]:
    fab = await Fabric(ovs).build()
    try:
        yield fab
    finally:
        await fab.tear_down()


@pytest.fixture(autouse=True)
def _log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vportd")


async def with_vms(fabric: Fabric) -> None:
    """A VM on each end of the line (hv0 port 5, hv2 port 6) and one on the middle."""
    await fabric.add_vm("hv0", "vma", 5, MAC_A)
    await fabric.add_vm("hv2", "vmb", 6, MAC_B)
    await fabric.add_vm("hv1", "vmc", 7, MAC_C)


async def vms_known(rt: Runtime) -> None:
    await until(
        lambda: all(
            (rec := rt.core.entry(mac)) is not None and rec.port_state is PortState.UP
            for mac in (MAC_A, MAC_B, MAC_C)
        ),
        "the three VMs to be in the table, up",
    )


async def no_normal(fabric: Fabric) -> None:
    for name in fabric.names:
        text = await fabric.ofctl(name, "dump-flows")
        assert "NORMAL" not in text.upper(), text
        fail_mode = await fabric.vsctl("get-fail-mode", name)
        assert fail_mode.strip() == "secure"


# -- handshake -------------------------------------------------------------------------
async def test_every_bridge_becomes_a_switch(fabric: Fabric) -> None:
    async with running(fabric) as rt:
        assert set(rt.switches.adopted) == {"hv0", "hv1", "hv2"}
        for i, name in enumerate(fabric.names):
            assert rt.switches.adopted[name].dpid == i + 1
            assert rt.core.dpid(name) == i + 1
        # the patch ports, read from OVSDB: hv0 port 101 - hv1 port 100 - hv1 port 102 - hv2
        assert rt.core.links() == {Link("hv0", 101, "hv1", 100), Link("hv1", 102, "hv2", 101)}
        await assert_flows_agree(rt, fabric)
        await no_normal(fabric)
        assert rt.switches.stats.foreign_flows_deleted == 0


# -- port events -----------------------------------------------------------------------
async def test_vm_port_add_link_down_up_and_delete_reach_the_table(fabric: Fabric) -> None:
    async with running(fabric) as rt:
        await fabric.add_vm("hv0", "vma", 5, MAC_A)
        await until(lambda: rt.core.entry(MAC_A) is not None, "the VM's entry")
        await until(lambda: rt.core.vport(MAC_A).port_state is PortState.UP, "link up")
        rec = rt.core.vport(MAC_A)
        loc = rec.loc
        assert (loc.ovs, loc.port, loc.port_name) == ("hv0", 5, "vma")
        assert (loc.iface_id, loc.vm_id) == ("vma-iface", "vma-vm")
        assert rec.migration_state == "not-migrating"
        await assert_flows_agree(rt, fabric)
        assert "dl_dst=02:00:00:00:0a:01 actions=output:5" in " ".join(await fabric.flows("hv0"))

        await fabric.appctl("netdev-dummy/set-admin-state", "vma", "down")
        await until(lambda: rt.core.vport(MAC_A).port_state is PortState.DOWN, "down")
        await fabric.appctl("netdev-dummy/set-admin-state", "vma", "up")
        await until(lambda: rt.core.vport(MAC_A).port_state is PortState.UP, "up again")
        assert rt.core.vport(MAC_A).loc.port == 5

        await fabric.vsctl("del-port", "hv0", "vma")
        await until(lambda: rt.core.entry(MAC_A) is None, "the entry to go")
        await assert_flows_agree(rt, fabric)
        assert "02:00:00:00:0a:01" not in " ".join(await fabric.flows("hv0"))
        await no_normal(fabric)


async def test_ports_without_attached_mac_are_not_vports_and_patch_ports_are_links(
    fabric: Fabric,
) -> None:
    async with running(fabric) as rt:
        await fabric.add_vm("hv0", "vma", 5, MAC_A)
        await fabric.add_vm("hv2", "vmb", 6, MAC_B)
        await until(lambda: rt.core.vport_count() == 2, "the VMs' entries")
        await assert_flows_agree(rt, fabric)
        line = await fabric.flows("hv0")

        # a plain port (an uplink, say) and a patch pair closing the ring hv0 - hv2
        await fabric.add_port("hv0", "up0", 9, "external_ids:iface-id=not-a-vm")
        await fabric.patch("hv0", 102, "hv2", 100)
        await until(lambda: rt.core.is_link("hv0", 102), "the new patch link")
        assert Link("hv0", 102, "hv2", 100) in rt.core.links()
        assert sorted(rec.vm for rec in rt.core.vports()) == [MAC_A, MAC_B]
        await assert_flows_agree(rt, fabric)
        ring = await fabric.flows("hv0")
        # hv0 now reaches vmb (on hv2) over the new link
        assert any(f"dl_dst={MAC_B} actions=output:102" in f for f in ring)
        assert not any("in_port=9" in f or "output:9" in f for f in ring)

        # the link goes: the flows go back to those of the line
        await fabric.vsctl("del-port", "hv0", "hv0-hv2", "--", "del-port", "hv2", "hv2-hv0")
        await until(lambda: not rt.core.is_link("hv0", 102), "the link to go")
        await assert_flows_agree(rt, fabric)
        assert await fabric.flows("hv0") == line
        await no_normal(fabric)


# -- restarts --------------------------------------------------------------------------
async def test_a_vswitchd_restart_gets_the_same_flows_back(fabric: Fabric) -> None:
    await with_vms(fabric)
    async with running(fabric) as rt:
        await vms_known(rt)
        await assert_flows_agree(rt, fabric)
        before = {name: await fabric.flows(name) for name in fabric.names}
        table = {rec.vm: rec.loc.seq for rec in rt.core.vports()}
        rounds, sent = dict(rt.switches.stats.reconciles), rt.switches.stats.flow_mods_sent

        await asyncio.to_thread(fabric.ovs.stop_vswitchd)
        await asyncio.to_thread(fabric.ovs.start_vswitchd)
        await until(
            lambda: all(rt.switches.stats.reconciles[n] > rounds[n] for n in fabric.names),
            "every switch to reconnect and be reconciled",
        )
        await assert_flows_agree(rt, fabric)
        after = {name: await fabric.flows(name) for name in fabric.names}
        assert after == before
        for name, lines in after.items():
            assert len(lines) == len(set(lines)) == len(rt.core.installed(name))
        # vswitchd came back empty: every flow was sent again, once
        assert rt.switches.stats.flow_mods_sent - sent == sum(
            len(lines) for lines in after.values()
        )
        assert {rec.vm: rec.loc.seq for rec in rt.core.vports()} == table
        await no_normal(fabric)


async def test_a_controller_restart_sends_no_flow_mod_and_wipes_nothing(fabric: Fabric) -> None:
    await with_vms(fabric)
    async with running(fabric) as first:
        await vms_known(first)
        await assert_flows_agree(first, fabric)
        assert first.switches.stats.flow_mods_sent > 0
    before = {name: await fabric.flows(name) for name in fabric.names}
    # A frame from vma to vmb while no controller runs: secure mode forwards it with the
    # flows held, and hv2's flow for vmb counts it.
    frame = "020000000a02" "020000000a01" "0800" + "00" * 46  # fmt: skip
    await fabric.appctl("netdev-dummy/receive", "vma", frame)
    await until(lambda: counted(fabric, "hv2", f"dl_dst={MAC_B}"), "the frame to be counted")

    async with running(fabric) as second:
        await vms_known(second)
        await assert_flows_agree(second, fabric)
        assert second.switches.stats.flow_mods_sent == 0
        assert second.switches.stats.foreign_flows_deleted == 0
        assert {name: await fabric.flows(name) for name in fabric.names} == before
        # the very same flow: a deleted and re-added one would have lost its count
        assert await counted(fabric, "hv2", f"dl_dst={MAC_B}")


async def counted(fabric: Fabric, bridge: str, match: str) -> bool:
    """The flow of `bridge` with `match` has counted a packet."""
    lines = [line for line in await fabric.flows_with_stats(bridge) if match in line]
    assert len(lines) == 1, lines
    return "n_packets=0," not in lines[0]


async def test_a_controller_restart_corrects_only_the_difference(fabric: Fabric) -> None:
    await with_vms(fabric)
    async with running(fabric) as first:
        await vms_known(first)
        await assert_flows_agree(first, fabric)
        held = {name: await fabric.flows(name) for name in fabric.names}
    assert any(f"dl_dst={MAC_B}" in f for f in held["hv2"])

    # While no controller runs, someone edits the switches by hand:
    await fabric.ofctl("hv0", "add-flow", "table=1,priority=5,actions=NORMAL")  # foreign
    stray = "cookie=0x100020000000a99,table=1,priority=100,dl_dst=02:00:00:00:0a:99,actions=7"
    await fabric.ofctl("hv0", "add-flow", stray)  # looks like ours: a VM that does not exist
    await fabric.ofctl("hv0", "mod-flows", f"table=1,dl_dst={MAC_A},actions=output:9")
    await fabric.ofctl("hv2", "del-flows", "--strict", f"table=1,priority=100,dl_dst={MAC_B}")

    async with running(fabric) as second:
        await vms_known(second)
        await assert_flows_agree(second, fabric)
        # one delete of the foreign flow, one of the stray, two adds (altered, missing)
        assert second.switches.stats.foreign_flows_deleted == 1
        assert second.switches.stats.flow_mods_sent == 4
        assert {name: await fabric.flows(name) for name in fabric.names} == held
        assert vm_flow(MAC_A, 5) in second.core.installed("hv0")
        await no_normal(fabric)


# -- topology --------------------------------------------------------------------------
async def test_lldp_finds_a_link_that_ovsdb_does_not_declare(fabric: Fabric) -> None:
    """hv0 port 50 and hv2 port 50 are dummy ports joined by a unix stream socket
    (netdev-dummy's `pstream`/`stream` options): frames sent out of one arrive
    at the other, and nothing in OVSDB says that they form a link."""
    sock = fabric.ovs.rundir / "lldp.sock"
    await fabric.add_port("hv0", "lk0", 50, f"options:pstream=punix:{sock}")
    async with running(fabric, config(fabric, lldp=True, lldp_interval=0.2)) as rt:
        await fabric.add_vm("hv0", "vma", 5, MAC_A)
        await fabric.add_vm("hv2", "vmb", 6, MAC_B)
        await until(lambda: rt.core.vport_count() == 2, "the VMs' entries")
        await assert_flows_agree(rt, fabric, (LLDP_PUNT,))
        line = await fabric.flows("hv0")
        assert not rt.core.is_link("hv0", 50)

        await fabric.add_port("hv2", "lk2", 50, f"options:stream=unix:{sock}")
        await until(lambda: rt.core.is_link("hv0", 50), "LLDP to find hv0 port 50")
        assert Link("hv0", 50, "hv2", 50) in rt.core.links()
        # the patch links are found by LLDP as well, and agree with OVSDB
        assert {x for x in rt.core.links() if "hv1" in (x.a, x.b)} == {
            Link("hv0", 101, "hv1", 100),
            Link("hv1", 102, "hv2", 101),
        }
        await assert_flows_agree(rt, fabric, (LLDP_PUNT,))
        ring = await fabric.flows("hv0")
        assert any(f"dl_dst={MAC_B} actions=output:50" in f for f in ring)

        await fabric.vsctl("del-port", "hv2", "lk2")
        await until(lambda: not rt.core.is_link("hv0", 50), "the link to go")
        await assert_flows_agree(rt, fabric, (LLDP_PUNT,))
        assert await fabric.flows("hv0") == line
        await no_normal(fabric)


async def test_lldp_off_removes_a_punt_flow_left_by_an_earlier_run(fabric: Fabric) -> None:
    async with running(fabric, config(fabric, lldp=True, lldp_interval=0.2)) as rt:
        await assert_flows_agree(rt, fabric, (LLDP_PUNT,))
    async with running(fabric) as rt:
        await assert_flows_agree(rt, fabric)
        assert rt.switches.stats.flow_mods_sent == len(fabric.names)  # one delete per switch
        for name in fabric.names:
            assert not any("CONTROLLER" in line for line in await fabric.flows(name))


# -- the daemon ------------------------------------------------------------------------
async def test_the_daemon_installs_the_flows_and_stops_on_sigterm(
    fabric: Fabric, tmp_path: Path
) -> None:
    await with_vms(fabric)
    cfg = tmp_path / "c0.toml"
    cfg.write_text(
        f'[controller]\nid = "c0"\n[openflow]\nlisten = "127.0.0.1:{fabric.port}"\n'
        f'[ovsdb]\nremotes = ["{fabric.ovs.db}"]\n[topology]\nlldp = false\n'
        f'[api]\nlisten = "127.0.0.1:{free_port()}"\n'
    )
    log = tmp_path / "c0.log"
    vportd = Path(sys.executable).parent / "vportd"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(vportd), "--config", str(cfg)], stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    try:
        await until(lambda: "openflow: listening" in log.read_text(), "vportd to listen")
        await fabric.point_at_controller()
        for name, mac, port in (("hv0", MAC_A, 5), ("hv2", MAC_B, 6), ("hv1", MAC_C, 7)):
            await until(
                shown(fabric, name, f"dl_dst={mac} actions=output:{port}"),
                f"vportd to install the flow of {mac} on {name}",
            )
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert code == 0, text
    assert "controller c0 stopped" in text and "Traceback" not in text
    await no_normal(fabric)
    # What the daemon installed is exactly what the compiler wants: nothing to correct.
    async with running(fabric) as rt:
        await vms_known(rt)
        await assert_flows_agree(rt, fabric)
        assert rt.switches.stats.flow_mods_sent == 0


def shown(fabric: Fabric, bridge: str, text: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return any(text in line for line in await fabric.flows(bridge))

    return check
