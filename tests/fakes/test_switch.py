"""FakeSwitch against the controller's real OpenFlow endpoint (`OpenFlowServer`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp

from tests.fakes.oftable import SwitchError
from tests.fakes.ofwire import Port
from tests.fakes.switch import FakeSwitch, PacketOut
from tests.southbound.support import Recorder, foreign_mod, running
from vportd.core.flow import Flow, FlowCommand, FlowMod, Match, Output
from vportd.core.pipeline import arrival_flow, base_flows, flood_flows, vm_flow
from vportd.core.topology import Topology
from vportd.southbound.openflow.connection import SwitchConnection
from vportd.southbound.openflow.errors import FlowModsFailed, OpenFlowError
from vportd.southbound.openflow.incoming import PortInfo
from vportd.southbound.openflow.server import OpenFlowServer
from vportd.southbound.openflow.wire import Role

VM1, VM2, VM3 = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"
BROADCAST = "ff:ff:ff:ff:ff:ff"
PORTS = [Port(1, "vm1", VM1), Port(2, "vm2", VM2), Port(3, "vm3", VM3, up=False)]
LOCAL = ofp.OFPP_LOCAL


def pipeline(*vms: tuple[str, int]) -> list[Flow]:
    topo = Topology()
    topo.add_switch("s", 1)
    flows = [*base_flows(topo, "s"), *flood_flows(topo, "s", [port for _, port in vms])]
    return flows + [vm_flow(mac, port) for mac, port in vms]


def adds(flows: list[Flow]) -> list[FlowMod]:
    return [FlowMod("s", FlowCommand.ADD, f) for f in flows]


@contextlib.asynccontextmanager
async def controller(recorder: Recorder | None = None) -> AsyncIterator[OpenFlowServer]:
    async with running(OpenFlowServer(recorder or Recorder(), port=0)) as server:
        yield server


async def connection(recorder: Recorder) -> SwitchConnection:
    return (await recorder.next("connected")).conn


# -- handshake, flows, barrier, dump ----------------------------------------------------
async def test_the_handshake_gives_the_controller_the_datapath_id_and_ports() -> None:
    recorder = Recorder()
    async with controller(recorder) as server, FakeSwitch(0xA1, PORTS, name="hv1") as switch:
        channel = switch.connect("127.0.0.1", server.port)
        conn = await connection(recorder)
        await switch.wait_connected()
        assert channel.ready and switch.connected
        assert conn.dpid == 0xA1
        local = PortInfo(LOCAL, "hv1", switch.local_port().mac, True)
        assert conn.ports == {
            1: PortInfo(1, "vm1", VM1, True), 2: PortInfo(2, "vm2", VM2, True),
            3: PortInfo(3, "vm3", VM3, False), LOCAL: local,
        }  # fmt: skip
        # The controller's SET_ASYNC: port status to a master only.
        assert channel.masks[2:4] == (0b111, 0)


async def test_flow_mods_land_in_the_table_and_frames_go_where_they_say() -> None:
    recorder = Recorder()
    flows = [*pipeline((VM1, 1), (VM2, 2), (VM3, 3)), arrival_flow("02:00:00:00:00:09")]
    async with controller(recorder) as server, FakeSwitch(1, PORTS) as switch:
        switch.connect("127.0.0.1", server.port)
        conn = await connection(recorder)
        await conn.send_flow_mods(adds(flows))
        assert switch.table.core_flows() == set(flows)  # the barrier came after all of them
        assert switch.table.lookup(1, VM1, VM2) == {2}
        assert switch.table.lookup(3, VM3, BROADCAST) == {1, 2}
        assert switch.table.lookup(1, VM1, "02:00:00:00:00:42") == set()
        assert switch.table.lookup(9, "02:00:00:00:00:09", VM1) == {"controller", 1}
        await conn.send_flow_mods([FlowMod("s", FlowCommand.DELETE, vm_flow(VM2, 2))])
        assert switch.table.lookup(1, VM1, VM2) == set()


async def test_a_barrier_is_answered_only_after_every_flow_mod_before_it() -> None:
    recorder = Recorder()
    flows = pipeline((VM1, 1), (VM2, 2))
    async with controller(recorder) as server, FakeSwitch(1, PORTS) as switch:
        channel = switch.connect("127.0.0.1", server.port)
        conn = await connection(recorder)
        switch.pause()
        sending = asyncio.create_task(conn.send_flow_mods(adds(flows)))
        await switch.wait_until(lambda: len(channel.inbox) == len(flows) + 1)  # and a barrier
        assert not sending.done() and len(switch.table) == 0
        switch.resume()
        await sending
        assert switch.table.core_flows() == set(flows)


async def test_a_dump_reads_back_the_same_flows_over_several_parts() -> None:
    recorder = Recorder()
    flows = pipeline(*((f"02:00:00:00:01:{n:02x}", n) for n in range(1, 60)))
    async with controller(recorder) as server, FakeSwitch(1, PORTS, max_part=2048) as switch:
        switch.connect("127.0.0.1", server.port)
        conn = await connection(recorder)
        await conn.send_flow_mods(adds(flows))
        await conn.send(foreign_mod(in_port=7))  # someone else's flow (NORMAL)
        dump = await conn.dump()
        assert set(dump.flows) == set(flows) and len(dump.flows) == len(flows)
        (foreign,) = dump.foreign
        assert (foreign.priority, foreign.cookie) == (7, 0x99)
        await conn.delete_foreign(dump.foreign)
        assert switch.table.core_flows() == set(flows) and len(switch.table) == len(flows)


async def test_a_flow_mod_the_switch_cannot_apply_fails_with_its_error() -> None:
    recorder = Recorder()
    async with controller(recorder) as server, FakeSwitch(1, PORTS, max_flows=2) as switch:
        switch.connect("127.0.0.1", server.port)
        conn = await connection(recorder)
        flows = [vm_flow(VM1, 1), vm_flow(VM2, 2), vm_flow(VM3, 3)]
        with pytest.raises(FlowModsFailed) as info:
            await conn.send_flow_mods(adds(flows))
        ((failed, error),) = info.value.failures
        assert (failed.flow, error.describe()) == (flows[2], "FLOW_MOD_FAILED/TABLE_FULL")

        def refuse(msg: object) -> SwitchError | None:
            bad = getattr(msg, "priority", None) == 100
            return SwitchError(ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_EPERM, "no") if bad else None

        switch.refuse = refuse
        with pytest.raises(FlowModsFailed):
            await conn.send_flow_mods([FlowMod("s", FlowCommand.DELETE, flows[0])])
        assert len(switch.table) == 2


# -- roles ------------------------------------------------------------------------------
async def test_roles_follow_openflows_rules_across_two_controllers() -> None:
    rec_a, rec_b = Recorder(), Recorder()
    async with (
        controller(rec_a) as a, controller(rec_b) as b, FakeSwitch(1, PORTS) as switch,
    ):  # fmt: skip
        chan_a, chan_b = switch.connect("127.0.0.1", a.port), switch.connect("127.0.0.1", b.port)
        conn_a, conn_b = await connection(rec_a), await connection(rec_b)
        assert await conn_a.role_request(Role.NOCHANGE, 0) == (Role.EQUAL, 2**64 - 1)
        assert await conn_a.role_request(Role.MASTER, 5) == (Role.MASTER, 5)
        assert await conn_b.role_request(Role.SLAVE, 5) == (Role.SLAVE, 5)
        with pytest.raises(OpenFlowError, match="ROLE_REQUEST_FAILED/STALE"):
            await conn_b.role_request(Role.MASTER, 4)
        assert await conn_b.role_request(Role.MASTER, 6) == (Role.MASTER, 6)
        assert (chan_a.role, chan_b.role) == (Role.SLAVE, Role.MASTER)  # the old master demoted
        assert await conn_a.role_request(Role.EQUAL, 1) == (Role.EQUAL, 6)  # EQUAL: no check

        assert await conn_a.role_request(Role.SLAVE, 6) == (Role.SLAVE, 6)
        with pytest.raises(FlowModsFailed) as info:
            await conn_a.send_flow_mods(adds([vm_flow(VM1, 1)]))
        assert info.value.failures[0][1].describe() == "BAD_REQUEST/IS_SLAVE"
        await conn_b.send_flow_mods(adds([vm_flow(VM1, 1)]))
        assert switch.table.core_flows() == {vm_flow(VM1, 1)}


async def test_port_status_reaches_a_master_not_a_slave() -> None:
    rec_a, rec_b = Recorder(), Recorder()
    async with controller(rec_a) as a, controller(rec_b) as b, FakeSwitch(1, PORTS) as switch:
        switch.connect("127.0.0.1", a.port)
        switch.connect("127.0.0.1", b.port)
        conn_a, conn_b = await connection(rec_a), await connection(rec_b)
        await conn_a.role_request(Role.MASTER, 1)
        await conn_b.role_request(Role.SLAVE, 1)
        switch.add_port(4, "vm4", "02:00:00:00:00:04", up=False)
        switch.set_link(4, True)
        switch.delete_port(4)
        for reason, up in (("add", False), ("modify", True), ("delete", True)):
            event = await rec_a.next("port_status")
            assert event.args == (reason, PortInfo(4, "vm4", "02:00:00:00:00:04", up))
        await conn_b.read_ports()  # a slave reads ports when it needs them
        assert 4 not in conn_b.ports and 4 not in conn_a.ports
        assert rec_b.events.empty()


# -- frames -----------------------------------------------------------------------------
async def test_packet_in_reaches_the_handler_and_packet_out_is_recorded() -> None:
    recorder = Recorder()
    frame = bytes.fromhex(VM2.replace(":", "") + VM1.replace(":", "")) + b"\x88\xcc" + b"x" * 46
    async with controller(recorder) as server, FakeSwitch(1, PORTS) as switch:
        switch.connect("127.0.0.1", server.port)
        conn = await connection(recorder)
        switch.packet_in(1, frame)
        assert (await recorder.next("packet_in")).args == (1, frame)
        await conn.send_flow_mods(adds([arrival_flow(VM1)]))
        assert switch.receive(1, frame) == {"controller"}  # the arrival flow's copy, no table 1
        assert (await recorder.next("packet_in")).args == (1, frame[:128])
        await conn.packet_out(2, frame)
        await conn.barrier()
        assert switch.sent == [PacketOut(2, frame, ofp.OFPP_CONTROLLER)]


async def test_echo_goes_both_ways() -> None:
    recorder = Recorder()
    async with controller(recorder) as server, FakeSwitch(1, PORTS) as switch:
        channel = switch.connect("127.0.0.1", server.port)
        await connection(recorder)
        assert await channel.echo(b"ping") == b"ping"


# -- connections --------------------------------------------------------------------------
async def test_a_switch_disconnects_reconnects_and_keeps_its_flows() -> None:
    recorder = Recorder()
    async with controller(recorder) as server, FakeSwitch(1, PORTS) as switch:
        channel = switch.connect("127.0.0.1", server.port)
        conn = await connection(recorder)
        await conn.role_request(Role.MASTER, 3)
        await conn.send_flow_mods(adds([vm_flow(VM1, 1)]))
        switch.disconnect()
        await recorder.next("disconnected")
        await switch.wait_until(lambda: not switch.connected)
        switch.reconnect()
        again = await connection(recorder)
        assert again is not conn and channel.role is Role.EQUAL and channel.handshakes == 2
        assert await again.role_request(Role.NOCHANGE, 0) == (Role.EQUAL, 3)
        assert set((await again.dump()).flows) == {vm_flow(VM1, 1)}


async def test_a_switch_the_controller_closes_comes_back() -> None:
    recorder = Recorder()
    async with controller(recorder) as server, FakeSwitch(1, PORTS) as switch:
        switch.connect("127.0.0.1", server.port)
        conn = await connection(recorder)
        conn.close("test: closing")
        assert (await recorder.next("disconnected")).conn is conn
        assert (await recorder.next("connected")).conn is not conn


async def test_many_switches_to_several_controllers_in_one_loop() -> None:
    recs = [Recorder(), Recorder()]
    async with (
        controller(recs[0]) as a,
        controller(recs[1]) as b,
        contextlib.AsyncExitStack() as stack,
    ):
        switches = [await stack.enter_async_context(FakeSwitch(n, PORTS)) for n in range(1, 6)]
        for switch in switches:
            switch.connect("127.0.0.1", a.port)
            switch.connect("127.0.0.1", b.port)
        conns = {(i, (await rec.next("connected")).conn.dpid) for i, rec in enumerate(recs)
                 for _ in switches}  # fmt: skip
        assert conns == {(i, n) for i in (0, 1) for n in range(1, 6)}
        for conn in a.connections:
            assert conn.dpid is not None
            await conn.send_flow_mods(adds([Flow(0, 1, Match(), (Output(conn.dpid),), 0)]))
        for n, switch in enumerate(switches, 1):
            assert switch.table.lookup(99, VM1, VM2) == {n}
