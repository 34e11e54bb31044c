"""The OpenFlow endpoint against a real, private Open vSwitch (dummy datapath)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp

from tests.southbound.support import WAIT, Event, Recorder, header, hello, running
from vportd.core import segflows
from vportd.core.flow import Flow, FlowCommand, FlowMod
from vportd.core.pipeline import arrival_flow, base_flows, flood_flows, vm_flow
from vportd.core.topology import Topology
from vportd.southbound.openflow.connection import SwitchConnection
from vportd.southbound.openflow.errors import OpenFlowError
from vportd.southbound.openflow.server import OpenFlowServer
from vportd.southbound.openflow.wire import Role
from vportd_lab.bed.ovs import PrivateOVS, temporary_ovs

pytestmark = pytest.mark.ovs

MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
FRAME = bytes.fromhex("ffffffffffff" + MAC_B.replace(":", "") + "0806") + bytes(range(46))


@pytest.fixture(scope="module")
def ovs() -> Iterator[PrivateOVS]:
    if shutil.which("ovs-vswitchd") is None:
        pytest.skip("Open vSwitch is not installed (make env installs it)")
    with temporary_ovs() as switch:
        yield switch


@pytest.fixture(autouse=True)
def _log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vportd.openflow")


class Bridge:
    """One bridge of the private OVS, connected to our server."""

    def __init__(self, ovs: PrivateOVS, name: str, dpid: int) -> None:
        self.ovs, self.name, self.dpid = ovs, name, dpid

    async def vsctl(self, *args: str) -> str:
        return await asyncio.to_thread(self.ovs.vsctl, *args)

    async def appctl(self, *args: str) -> str:
        return await asyncio.to_thread(self.ovs.appctl, *args)

    async def ofctl(self, *args: str) -> str:
        return await asyncio.to_thread(self.ovs.ofctl, *args, bridge=self.name)

    async def add_port(self, name: str, ofport: int, *options: str) -> None:
        await self.vsctl(
            "add-port", self.name, name, "--", "set", "Interface", name, "type=dummy",
            f"ofport_request={ofport}", *options,
        )  # fmt: skip

    async def flows_shown(self) -> list[str]:
        """`ovs-ofctl dump-flows` without statistics, one line per flow."""
        text = await self.ofctl("dump-flows", "--no-stats")
        return sorted(line.strip() for line in text.splitlines() if "cookie=" in line)


@contextlib.asynccontextmanager
async def bridge(
    ovs: PrivateOVS, server: OpenFlowServer, name: str, dpid: int
) -> AsyncIterator[Bridge]:
    br = Bridge(ovs, name, dpid)
    await asyncio.to_thread(ovs.add_bridge, name, dpid, [f"tcp:127.0.0.1:{server.port}"])
    # Reconnect within a second after a controller goes away (default backoff: up to 8 s).
    await br.vsctl("set", "Controller", name, "max_backoff=1000")
    try:
        yield br
    finally:
        await br.vsctl("--no-wait", "--if-exists", "del-br", name)


@contextlib.asynccontextmanager
async def controller(
    ovs: PrivateOVS, name: str, dpid: int, **options: int
) -> AsyncIterator[tuple[Recorder, OpenFlowServer, Bridge, SwitchConnection]]:
    recorder = Recorder()
    server = OpenFlowServer(recorder, port=0, **options)  # type: ignore[arg-type]
    async with running(server), bridge(ovs, server, name, dpid) as br:
        event = await recorder.next("connected")
        yield recorder, server, br, event.conn


async def port_event(recorder: Recorder, reason: str, port_no: int) -> Event:
    """The next port status of `reason` for `port_no` (OVS also sends others: skip them)."""
    async with asyncio.timeout(WAIT):
        while True:
            event = await recorder.next("port_status")
            if event.args[0] == reason and event.args[1].port_no == port_no:
                return event


def compiled(switch: str) -> list[Flow]:
    """Every kind of flow the compiler makes, for `switch` = hv0 of hv0 - hv1 - hv2."""
    topo = Topology()
    for i in range(3):
        topo.add_switch(f"hv{i}", i + 1)
    topo.add_link("hv0", 10, "hv1", 1)
    topo.add_link("hv1", 11, "hv2", 1)
    local = [5, 6]
    return [
        vm_flow(MAC_A, 5), arrival_flow(MAC_B),
        *base_flows(topo, "hv0"), *flood_flows(topo, "hv0", local),
        segflows.port_flow(6, 10), segflows.gate(10),
        segflows.vm_flow(MAC_B, 10, (6,), {10}), segflows.vm_flow(MAC_A, 10, (10, 6), {10}),
        segflows.flood_flow(10, (6, 10), {10}),
        segflows.tunnel_flow((9, 5010), 10), segflows.tunnel_miss(9),
        segflows.vm_flow(MAC_A, 11, (segflows.Remote("192.0.2.7"),), {10}, (9, 5011)),
        segflows.flood_flow(11, (7, segflows.Remote("192.0.2.7"), segflows.Remote("192.0.2.8")),
                            {10}, (9, 5011)),
    ]  # fmt: skip


def ofctl_line(flow: Flow) -> str:
    """How `ovs-ofctl -O OpenFlow13 dump-flows --no-stats` shows a core flow."""
    m = flow.match
    fields = [f"priority={flow.priority}"]
    if m.tunnel_id is not None:
        fields.append(f"tun_id={m.tunnel_id:#x}")
    if m.in_port is not None:
        fields.append(f"in_port={m.in_port}")
    if m.vlan_vid is not None:
        exact = m.vlan_vid_mask is None and m.vlan_vid & 0x1000
        vid = m.vlan_vid & 0xFFF
        bits = 0x1FFF if m.vlan_vid_mask is None else m.vlan_vid_mask
        fields.append(f"dl_vlan={vid}" if exact else f"vlan_tci={m.vlan_vid:#06x}/{bits:#06x}")
    if m.eth_src is not None:
        fields.append(f"dl_src={m.eth_src}")
    if m.eth_dst is not None:
        mask = f"/{m.eth_dst_mask}" if m.eth_dst_mask else ""
        fields.append(f"dl_dst={m.eth_dst}{mask}")
    actions = []
    for a in flow.actions:
        kind = type(a).__name__
        if kind == "Output":
            actions.append(f"output:{a.port}")  # type: ignore[union-attr]
        elif kind == "ToController":
            actions.append(f"CONTROLLER:{a.max_len}")  # type: ignore[union-attr]
        elif kind == "PushVlan":
            actions.append(f"push_vlan:{a.ethertype:#x}")  # type: ignore[union-attr]
        elif kind == "PopVlan":
            actions.append("pop_vlan")
        elif kind == "SetField":
            name = {"tunnel_id": "tun_id", "tun_ipv4_dst": "tun_dst"}.get(a.field, a.field)  # type: ignore[union-attr]
            value = a.value  # type: ignore[union-attr]
            shown = f"{value:#x}" if name == "tun_id" else value
            actions.append(f"set_field:{shown}->{name}")
        else:
            actions.append(f"goto_table:{a.table}")  # type: ignore[union-attr]
    table = f" table={flow.table}," if flow.table else ""
    return (
        f"cookie={flow.cookie:#x},{table} {','.join(fields)} actions={','.join(actions) or 'drop'}"
    )


def adds(flows: list[Flow]) -> list[FlowMod]:
    return [FlowMod("hv0", FlowCommand.ADD, f) for f in flows]


# -- the tests ----------------------------------------------------------------------
async def test_handshake_gives_the_dpid_and_the_bridge_port(ovs: PrivateOVS) -> None:
    async with controller(ovs, "hs0", 0xBEEF) as (_, server, _, conn):
        assert conn.dpid == 0xBEEF
        (local,) = conn.ports.values()
        assert (local.port_no, local.name, local.reserved) == (ofp.OFPP_LOCAL, "hs0", True)
        assert server.connections == {conn}
        await conn.barrier()


async def test_port_add_delete_and_link_down_up_reach_the_handler(ovs: PrivateOVS) -> None:
    async with controller(ovs, "pt0", 0x11) as (recorder, _, br, conn):
        await br.add_port("pt0p1", 7)
        added = (await port_event(recorder, "add", 7)).args[1]
        assert (added.name, added.link_up) == ("pt0p1", True)
        assert conn.ports[7].name == "pt0p1"

        await br.appctl("netdev-dummy/set-admin-state", "pt0p1", "down")
        while (await port_event(recorder, "modify", 7)).args[1].link_up:
            pass  # OVS may report the add's own modifies first
        assert not conn.ports[7].link_up
        await br.appctl("netdev-dummy/set-admin-state", "pt0p1", "up")
        assert (await port_event(recorder, "modify", 7)).args[1].link_up

        await br.vsctl("del-port", "pt0", "pt0p1")
        deleted = (await port_event(recorder, "delete", 7)).args[1]
        assert deleted.name == "pt0p1"
        assert 7 not in conn.ports


async def test_installed_flows_are_what_ovs_shows_and_what_dump_returns(
    ovs: PrivateOVS,
) -> None:
    flows = compiled("hv0")
    async with controller(ovs, "fl0", 0x12) as (_, _, br, conn):
        assert (await conn.dump()).flows == []
        await conn.send_flow_mods(adds(flows))
        assert await br.flows_shown() == sorted(ofctl_line(f) for f in flows)
        assert sorted((await conn.dump()).flows, key=repr) == sorted(flows, key=repr)

        gone = [FlowMod("hv0", FlowCommand.DELETE, f) for f in flows[:2]]
        await conn.send_flow_mods(gone)
        assert sorted((await conn.dump()).flows, key=repr) == sorted(flows[2:], key=repr)
        await conn.barrier()


async def test_foreign_flows_are_reported_and_deleted_exactly(ovs: PrivateOVS) -> None:
    async with controller(ovs, "fo0", 0x13) as (_, _, br, conn):
        await conn.send_flow_mods(adds([vm_flow(MAC_A, 5)]))
        await br.ofctl("add-flow", "table=1,priority=100,ip,nw_dst=10.0.0.1,actions=drop")
        await br.ofctl("add-flow", "table=1,priority=100,dl_dst=02:00:00:00:00:0b,actions=NORMAL")
        dump = await conn.dump()
        assert dump.flows == [vm_flow(MAC_A, 5)]
        assert sorted(f.reason for f in dump.foreign) == [
            "matches on eth_type, ipv4_dst",
            "outputs to reserved port NORMAL",
        ]
        await conn.delete_foreign(dump.foreign)
        assert await br.flows_shown() == [ofctl_line(vm_flow(MAC_A, 5))]


async def test_role_requests(ovs: PrivateOVS) -> None:
    async with controller(ovs, "ro0", 0x14) as (_, _, _, conn):
        assert await conn.role_request(Role.SLAVE, 1) == (Role.SLAVE, 1)
        assert await conn.role_request(Role.MASTER, 2) == (Role.MASTER, 2)
        with pytest.raises(OpenFlowError, match="ROLE_REQUEST_FAILED/STALE"):
            await conn.role_request(Role.MASTER, 1)
        role, _ = await conn.role_request(Role.NOCHANGE, 0)
        assert role is Role.MASTER
        await conn.barrier()


async def test_only_a_master_hears_port_status(ovs: PrivateOVS) -> None:
    """A slave is not told of ports (in a boot storm it decoded every one for nothing)."""
    async with controller(ovs, "ps0", 0x16) as (recorder, _, br, conn):
        assert await conn.role_request(Role.SLAVE, 1) == (Role.SLAVE, 1)
        await br.add_port("ps0p1", 1)
        assert await conn.role_request(Role.MASTER, 2) == (Role.MASTER, 2)
        await br.add_port("ps0p2", 2)
        heard: list[int] = []
        while not heard or heard[-1] != 2:
            heard.append((await recorder.next("port_status")).args[1].port_no)
        assert 1 not in heard and 1 not in conn.ports
        await conn.read_ports()  # what a new master does
        assert {1, 2} <= set(conn.ports)


async def test_packet_in_and_packet_out(ovs: PrivateOVS) -> None:
    pcap = Path(ovs.rundir) / "pio0p2.pcap"
    async with controller(ovs, "pio0", 0x15) as (recorder, _, br, conn):
        await br.add_port("pio0p1", 1)
        await br.add_port("pio0p2", 2, f"options:tx_pcap={pcap}")
        await conn.send_flow_mods(adds([arrival_flow(MAC_B)]))
        await br.appctl("netdev-dummy/receive", "pio0p1", FRAME.hex())
        in_port, data = (await recorder.next("packet_in")).args
        assert (in_port, data) == (1, FRAME)

        await conn.packet_out(2, FRAME)
        await conn.barrier()
        async with asyncio.timeout(WAIT):
            while FRAME not in pcap.read_bytes():
                await asyncio.sleep(0.05)


async def test_a_controller_reconnect_keeps_the_flows(ovs: PrivateOVS) -> None:
    flows = compiled("hv0")
    recorder = Recorder()
    first = OpenFlowServer(recorder, port=0)
    async with running(first), bridge(ovs, first, "rc0", 0x16) as br:
        conn = (await recorder.next("connected")).conn
        await conn.send_flow_mods(adds(flows))
        conn.close("test: drop the switch")
        assert (await recorder.next("disconnected")).args[0] == "test: drop the switch"
        again = (await recorder.next("connected")).conn  # OVS reconnects by itself
        assert again is not conn
        assert sorted((await again.dump()).flows, key=repr) == sorted(flows, key=repr)
        assert await br.flows_shown() == sorted(ofctl_line(f) for f in flows)


async def test_a_vswitchd_restart_reconnects_and_loses_the_flows(ovs: PrivateOVS) -> None:
    flows = compiled("hv0")
    async with controller(ovs, "rs0", 0x17) as (recorder, _, br, conn):
        await br.add_port("rs0p1", 5)
        await conn.send_flow_mods(adds(flows))
        await asyncio.to_thread(ovs.stop_vswitchd)
        reason = (await recorder.next("disconnected")).args[0]
        assert reason.startswith(("connection closed by the peer", "connection lost"))
        await asyncio.to_thread(ovs.start_vswitchd)
        again = (await recorder.next("connected")).conn
        assert again.dpid == 0x17
        assert 5 in again.ports  # ports come back from OVSDB...
        assert (await again.dump()).flows == []  # ...flows do not: vswitchd kept them in memory
        assert await br.flows_shown() == []
        await again.send_flow_mods(adds(flows))
        assert sorted((await again.dump()).flows, key=repr) == sorted(flows, key=repr)


BAD = {
    "garbage": (bytes(range(200, 256)) * 3, "expected HELLO"),
    "truncated": (header(ofp.OFPT_HELLO, 100) + bytes(12), "header says 100 bytes, got 20"),
    "oversized": (hello() + header(ofp.OFPT_ECHO_REQUEST, 60000), "exceeds max_message 4096"),
    "wrong-version hello": (hello(1), "version negotiation failed"),
}


async def test_bad_peers_are_closed_while_the_real_switch_carries_on(
    ovs: PrivateOVS, caplog: pytest.LogCaptureFixture
) -> None:
    async with controller(ovs, "bad0", 0x18, max_message=4096) as (recorder, server, _, conn):
        for case, (data, reason) in BAD.items():
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            host, port = writer.get_extra_info("sockname")
            me = f"{host}:{port}"
            writer.write(data)
            if case == "truncated":
                writer.write_eof()
            async with asyncio.timeout(WAIT):
                while await reader.read(4096):
                    pass
            writer.close()
            closing = [r.getMessage() for r in caplog.records if me in r.getMessage()]
            assert any(reason in text for text in closing), (case, closing)
            await conn.barrier()
            assert await conn.role_request(Role.NOCHANGE, 0) is not None
        assert not conn.closed
        assert recorder.events.empty()  # no disconnect, no phantom switch
