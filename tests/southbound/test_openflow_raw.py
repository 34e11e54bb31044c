"""The OpenFlow endpoint against fake switches and hostile peers on raw sockets (no OVS)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import AsyncIterator

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp

from tests.southbound.support import (
    WAIT,
    FakeSwitch,
    Recorder,
    flow_entry,
    foreign_mod,
    header,
    hello,
    message,
    parse_stream,
    running,
    stats_entry,
)
from vportd.core.flow import FlowCommand, FlowMod
from vportd.core.pipeline import arrival_flow, vm_flow
from vportd.southbound.openflow.connection import SwitchConnection
from vportd.southbound.openflow.errors import FlowModsFailed, OpenFlowError, SwitchClosed
from vportd.southbound.openflow.incoming import PortInfo
from vportd.southbound.openflow.server import OpenFlowServer
from vportd.southbound.openflow.wire import Role

MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


@pytest.fixture(autouse=True)
def _log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vportd.openflow")


@contextlib.asynccontextmanager
async def serving(**options: float) -> AsyncIterator[tuple[OpenFlowServer, Recorder]]:
    recorder = Recorder()
    server = OpenFlowServer(recorder, port=0, **options)  # type: ignore[arg-type]
    async with running(server):
        yield server, recorder


@contextlib.asynccontextmanager
async def switch(
    server: OpenFlowServer, recorder: Recorder, **options: object
) -> AsyncIterator[tuple[FakeSwitch, SwitchConnection]]:
    fake = await FakeSwitch(server.port, **options).start()  # type: ignore[arg-type]
    try:
        event = await recorder.next("connected")
        yield fake, event.conn
    finally:
        await fake.stop()


async def wait_until(predicate: object, timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def test_handshake_gives_dpid_and_ports() -> None:
    async with serving() as (server, recorder), switch(server, recorder, dpid=0xABC) as (_, conn):
        assert conn.dpid == 0xABC
        assert conn.ports == {1: PortInfo(1, "p1", "02:00:00:00:00:01", True)}
        assert conn.connected
        assert server.connections == {conn}


async def test_dump_joins_the_parts_of_a_multipart_reply() -> None:
    a, b, c = vm_flow(MAC_A, 1), vm_flow(MAC_B, 2), arrival_flow(MAC_A)
    parts = [[flow_entry(a), flow_entry(b)], [flow_entry(c), stats_entry(foreign_mod())]]
    async with (
        serving() as (server, recorder),
        switch(server, recorder, flow_parts=parts) as (_, conn),
    ):
        dump = await conn.dump()
        assert dump.flows == [a, b, c]
        assert [f.priority for f in dump.foreign] == [7]
        await conn.delete_foreign(dump.foreign)


async def test_flow_mods_then_barrier_and_refused_ones_are_reported() -> None:
    ok, bad = vm_flow(MAC_A, 1), arrival_flow(MAC_B)
    async with (
        serving() as (server, recorder),
        switch(server, recorder, fail_priority=bad.priority) as (fake, conn),
    ):
        await conn.send_flow_mods([FlowMod("s", FlowCommand.ADD, ok)])
        mods = [FlowMod("s", FlowCommand.ADD, f) for f in (ok, bad)]
        with pytest.raises(FlowModsFailed) as caught:
            await conn.send_flow_mods(mods)
        ((mod, error),) = caught.value.failures
        assert mod.flow == bad
        assert error.describe() == "FLOW_MOD_FAILED/TABLE_FULL"
        assert len(fake.of_type(ofp.OFPT_FLOW_MOD)) == 3
        await conn.barrier()  # still connected


async def test_role_request_returns_the_role_and_a_stale_one_is_an_error() -> None:
    async with serving() as (server, recorder), switch(server, recorder) as (fake, conn):
        assert await conn.role_request(Role.MASTER, 5) == (Role.MASTER, 5)
        fake.stale_role = True
        with pytest.raises(OpenFlowError, match="ROLE_REQUEST_FAILED/STALE"):
            await conn.role_request(Role.SLAVE, 4)


async def test_an_unanswered_barrier_times_out_without_closing() -> None:
    async with (
        serving() as (server, recorder),
        switch(server, recorder, answer_barrier=False) as (_, conn),
    ):
        with pytest.raises(TimeoutError):
            await conn.barrier(timeout=0.05)
        assert not conn.closed


async def test_switch_echo_requests_are_answered() -> None:
    async with serving() as (server, recorder), switch(server, recorder) as (fake, _):
        fake.send(message(ofp.OFPT_ECHO_REQUEST, b"hi", xid=77))
        await wait_until(lambda: any(h.xid == 77 for h in fake.of_type(ofp.OFPT_ECHO_REPLY)))


async def test_answered_echoes_keep_the_switch() -> None:
    async with (
        serving(echo_interval=0.02, echo_misses=2) as (server, recorder),
        switch(server, recorder) as (fake, conn),
    ):
        await wait_until(lambda: len(fake.of_type(ofp.OFPT_ECHO_REQUEST)) >= 10)
        assert not conn.closed


async def test_unanswered_echoes_drop_the_switch(caplog: pytest.LogCaptureFixture) -> None:
    async with (
        serving(echo_interval=0.02, echo_misses=3) as (server, recorder),
        switch(server, recorder, answer_echo=False) as (fake, conn),
    ):
        event = await recorder.next("disconnected")
        assert event.conn is conn
        assert event.args[0] == "no echo reply to 3 echo requests (0.02s apart)"
        assert len(fake.of_type(ofp.OFPT_ECHO_REQUEST)) == 3
        await asyncio.wait_for(fake.eof.wait(), WAIT)
        assert f"openflow peer {conn.peer} (dpid 00000000000000fa): closing: no echo" in caplog.text
        assert not server.connections


async def test_a_switch_that_stops_reading_is_closed_not_waited_for(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with (
        serving(send_queue=8) as (server, recorder),
        switch(server, recorder) as (fake, conn),
    ):
        assert fake.task is not None
        fake.task.cancel()  # the switch stops reading, the socket stays open
        with pytest.raises(SwitchClosed, match="send queue full"):
            for _ in range(10_000):
                await conn.packet_out(1, b"x" * 60_000)
                await asyncio.sleep(0)
        assert (await recorder.next("disconnected")).args[0].startswith("send queue full (8")
        assert "the switch is not reading" in caplog.text
        with pytest.raises(SwitchClosed):
            await conn.barrier()


async def test_a_failing_handler_closes_that_switch_only(caplog: pytest.LogCaptureFixture) -> None:
    async with (
        serving() as (server, recorder),
        switch(server, recorder) as (fake, conn),
        switch(server, recorder, dpid=2) as (_, other),
    ):
        recorder.fail_port_status = True
        body = struct.pack("!B7x", ofp.OFPPR_ADD) + bytes(64)
        fake.send(message(ofp.OFPT_PORT_STATUS, body))
        reason = (await recorder.next("disconnected")).args[0]
        assert reason.startswith("port_status handler failed: RuntimeError")
        assert "port_status handler failed" in caplog.text
        assert conn.closed and not other.closed
        await other.barrier()


async def test_a_switch_that_hangs_up_is_disconnected_at_once() -> None:
    async with serving() as (server, recorder), switch(server, recorder) as (fake, conn):
        assert fake.writer is not None
        fake.writer.close()
        event = await recorder.next("disconnected")
        assert (event.conn, event.args) == (conn, ("connection closed by the peer",))
        await wait_until(lambda: not server.connections)
        with pytest.raises(SwitchClosed, match="closed by the peer"):
            await conn.send_flow_mods([FlowMod("s", FlowCommand.ADD, vm_flow(MAC_A, 1))])


async def test_a_silent_peer_fails_the_handshake(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(echo_interval=0.02, echo_misses=2) as (server, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(hello())  # and then never answers FEATURES_REQUEST
        async with asyncio.timeout(WAIT):
            while await reader.read(4096):
                pass
        assert "handshake not complete within 0.04s" in caplog.text
        writer.close()


async def test_shutdown_closes_every_switch_and_tells_the_handler() -> None:
    recorder = Recorder()
    server = OpenFlowServer(recorder, port=0)
    task = asyncio.create_task(server.serve())
    await asyncio.wait_for(server.ready.wait(), WAIT)
    fake = await FakeSwitch(server.port).start()
    await recorder.next("connected")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await recorder.next("disconnected")).args[0] == "controller shutting down"
    await asyncio.wait_for(fake.eof.wait(), WAIT)
    await fake.stop()


# -- hostile peers, while a good switch carries on -----------------------------------
BAD_PEERS = {
    "garbage": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "expected HELLO, got version 0x47"),
    "short header length": (header(ofp.OFPT_HELLO, 4), "bad header: length 4 < 8"),
    "truncated message": (
        header(ofp.OFPT_HELLO, 100) + b"\0" * 12,
        "truncated message: header says 100 bytes, got 20 then end of stream",
    ),
    "truncated header": (b"\x04\x00\x00", "truncated message: 3 of 8 header bytes"),
    "oversized message": (header(ofp.OFPT_HELLO, 5000), "5000 bytes exceeds max_message 1024"),
    "wrong-version hello": (hello(1), "version negotiation failed"),
    "wrong-version bitmap": (hello(6, [5, 6]), "the peer offers [5, 6]"),
    "unknown version after hello": (
        hello() + message(ofp.OFPT_ECHO_REQUEST, version=5),
        "unknown version 0x05 after negotiating OpenFlow 1.3",
    ),
    "unparsable body": (
        hello() + message(ofp.OFPT_PORT_STATUS, b"\0" * 10),
        "bad PORT_STATUS message",
    ),
    "unknown message type": (hello() + message(99), "unknown message type 99"),
    "second hello": (hello() + hello(), "a second HELLO"),
}


@pytest.mark.parametrize("case", list(BAD_PEERS))
async def test_a_bad_peer_is_closed_with_a_logged_reason_while_others_carry_on(
    case: str, caplog: pytest.LogCaptureFixture
) -> None:
    data, reason = BAD_PEERS[case]
    async with (
        serving(max_message=1024) as (server, recorder),
        switch(server, recorder) as (fake, good),
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        host, port = writer.get_extra_info("sockname")
        me = f"{host}:{port}"
        writer.write(data)
        if case.startswith("truncated"):
            writer.write_eof()
        received = bytearray()
        async with asyncio.timeout(WAIT):  # the server closes the connection
            while chunk := await reader.read(4096):
                received += chunk
        writer.close()
        assert f"openflow peer {me}: closing: " in caplog.text
        assert reason in caplog.text
        if case.startswith("wrong-version"):
            kinds = [(h.msg_type, m[8:12]) for h, m in parse_stream(received)]
            failed = struct.pack("!HH", ofp.OFPET_HELLO_FAILED, ofp.OFPHFC_INCOMPATIBLE)
            assert (ofp.OFPT_ERROR, failed) in kinds
        await good.barrier()
        fake.send(message(ofp.OFPT_ECHO_REQUEST, b"still", xid=4242))
        await wait_until(lambda: any(h.xid == 4242 for h in fake.of_type(ofp.OFPT_ECHO_REPLY)))
        assert not good.closed
        assert recorder.events.empty()  # the bad peer never became a switch
