"""What the fuzzers found, each reduced to the input that showed it (regression tests)."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import weakref
from typing import Any

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp

from tests.fakes import ofwire
from tests.fakes.ovsdb import FakeOvsdb
from tests.fakes.solo import in_task, solo_runtime
from tests.fakes.switch import FakeSwitch
from tests.fuzz.ovsdbserver import Conn, ScriptedOvsdb
from tests.southbound.support import WAIT, Recorder, hello, parse_stream, running
from vportd.core.controller import Controller
from vportd.core.topology import Link
from vportd.node.feed import OvsdbFeed
from vportd.southbound.openflow.server import OpenFlowServer
from vportd.southbound.ovsdb.monitor import Backoff, OvsdbMonitor
from vportd.southbound.ovsdb.snapshot import IfaceRow, Snapshot
from vportd.southbound.ovsdb.wire import Framer

pytestmark = pytest.mark.fuzz

MAC = "02:00:00:00:0a:01"
FAST = Backoff(0.001, 0.001)  # the monitor's waits between sessions


async def _features_request_xid(reader: asyncio.StreamReader) -> int:
    received = bytearray()
    async with asyncio.timeout(WAIT):
        while True:
            received += await reader.read(4096)
            for header, _ in parse_stream(received):
                if header.msg_type == ofp.OFPT_FEATURES_REQUEST:
                    return header.xid


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (
            lambda xid: ofwire.error(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_IS_SLAVE, b"", xid),
            "handshake refused: switch refused the request: BAD_REQUEST/IS_SLAVE",
        ),
        (
            lambda xid: ofwire.role_reply(ofp.OFPCR_ROLE_MASTER, 1, xid),
            "handshake refused: expected FeaturesReply, got RoleReply",
        ),
    ],
    ids=["an error", "another reply"],
)
async def test_a_handshake_request_answered_wrongly_closes_with_a_reason_no_traceback(
    answer: object, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by the OpenFlow fuzzer: an ERROR (or a reply of another type) with the xid of
    the FEATURES_REQUEST was logged as "connect failed" with a traceback."""
    caplog.set_level(logging.INFO, logger="vportd.openflow")
    server = OpenFlowServer(Recorder(), port=0)
    async with running(server):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        host, port = writer.get_extra_info("sockname")[:2]
        writer.write(hello())
        writer.write(answer(await _features_request_xid(reader)))  # type: ignore[operator]
        async with asyncio.timeout(WAIT):
            while await reader.read(4096):
                pass
        writer.close()
    assert f"openflow peer {host}:{port}: closing: {reason}" in caplog.text
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


class _Sessions:
    """A scripted server's driver that sends one message, then an echo request, in every
    session."""

    def __init__(self, message: bytes) -> None:
        self.message, self.count = message, 0

    async def __call__(self, conn: Conn, request: Any) -> None:
        self.count += 1
        conn.send({"id": request.get("id"), "result": {}, "error": None})
        conn.send(self.message)
        conn.send({"id": "echo", "method": "echo", "params": []})


async def _monitor_survives(message: bytes, caplog: pytest.LogCaptureFixture) -> None:
    """The monitor ends the session that brought `message`, logs why, and reconnects."""
    caplog.set_level(logging.DEBUG, logger="vportd.ovsdb")
    driver = _Sessions(message)
    async with ScriptedOvsdb({}) as server:
        server.drive(driver)
        monitor = OvsdbMonitor(server.remote, lambda snap: None, backoff=FAST)
        async with in_task(monitor.run()) as task:
            async with asyncio.timeout(WAIT):
                while driver.count < 3 and not task.done():
                    await asyncio.sleep(0.01)
            assert not task.done(), task.exception()
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


async def test_a_message_nested_too_deep_ends_the_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Found by the OVSDB fuzzer: the C json decoder's RecursionError left the monitor's
    task, and the runtime's TaskGroup with it (the whole controller stopped)."""
    deep = b'{"id": null, "method": "update2", "params": ' + b"[" * 100_000 + b"]" * 100_000
    await _monitor_survives(deep + b"}", caplog)
    assert "a JSON message nested too deep to decode" in caplog.text


@pytest.mark.parametrize("garbage", [b"xyz}", b"{'a': 1}", b'{"a" 1}', b'{"id": "cut'])
async def test_text_that_cannot_become_json_ends_the_session(
    garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by the OVSDB fuzzer: the framer took any text that failed to decode for an
    incomplete message and waited for the rest, so the monitor read nothing more from
    that server (its updates, its echo requests) for as long as it kept talking."""
    await _monitor_survives(garbage, caplog)
    assert "not JSON" in caplog.text


def test_a_message_split_anywhere_is_still_decoded_whole() -> None:
    text = json.dumps({"id": None, "method": "update2", "params": ["x", {"a}": 'b"} {'}]})
    data = (text + " " + text).encode()
    for cut in range(1, len(data)):
        framer = Framer()
        assert framer.feed(data[:cut]) + framer.feed(data[cut:]) == [json.loads(text)] * 2


async def test_a_patch_pair_on_one_bridge_is_no_link_and_stops_nothing() -> None:
    """Found by the OVSDB fuzzer: a patch pair (or a `vportd-peer` hint) joining two ports
    of one bridge was declared a link; the core refused it (a link from a switch to
    itself) and the refusal stopped the OVSDB monitor's task and the whole runtime."""
    async with FakeOvsdb() as db:
        db.add_bridge("hv0", 1)
        db.add_bridge("hv1", 2)
        db.add_patch(("hv0", "hv0-hv1", 101), ("hv1", "hv1-hv0", 100))
        db.add_patch(("hv0", "loop-a", 102), ("hv0", "loop-b", 103))
        rt = solo_runtime(db.remote)
        async with in_task(rt.run()) as task:
            async with asyncio.timeout(WAIT):
                while not rt.feed.declared and not task.done():
                    await asyncio.sleep(0.01)
            db.set_peer_hint("hv0-hv1", "hv0/loop-a")
            await db.probe()  # (answered once the monitor has read and handed on the hint)
            assert not task.done(), task.exception()
            assert rt.feed.declared == {Link("hv0", 101, "hv1", 100)}


def _reply_with(iface: dict[str, Any]) -> dict[str, Any]:
    """A monitor reply: bridge hv0 (datapath 1), one port, its interface's columns `iface`."""
    uuid = "00000000-0000-0000-0000-00000000000{}".format
    return {
        "Bridge": {uuid(1): {"initial": {
            "name": "hv0", "datapath_id": "0000000000000001", "ports": ["uuid", uuid(2)],
        }}},
        "Port": {uuid(2): {"initial": {"name": "vma", "interfaces": ["uuid", uuid(3)]}}},
        "Interface": {uuid(3): {"initial": iface}},
    }  # fmt: skip


@pytest.mark.parametrize(
    "iface",
    [
        {"name": "vma", "ofport": 5, "external_ids": ["map", [["vportd-peer", 1.5]]]},
        {"name": 5, "ofport": 5},
        {"name": "vma", "ofport": "5", "external_ids": ["map", [["attached-mac", MAC]]]},
        {"name": "vma", "ofport": True},
        {"name": "vma", "options": ["set", [["peer", "x"]]], "ofport": 5},
    ],
    ids=[
        "a float in a map",
        "a number for a name",
        "a string for a number",
        "a boolean",
        "a set for a map",
    ],
)
async def test_an_atom_of_the_wrong_type_ends_the_session_and_stops_nothing(
    iface: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Found by the OVSDB fuzzer: values of another type than the schema's went into the
    snapshot, and the runtime's feed failed on them (a float `vportd-peer` hint has no
    `rpartition`), which stopped the monitor's task and the whole runtime."""
    caplog.set_level(logging.DEBUG, logger="vportd.ovsdb")
    driver = _Replies(_reply_with(iface))
    async with ScriptedOvsdb({}) as server:
        server.drive(driver)
        rt = solo_runtime(server.remote)
        (monitor,) = rt.monitors
        rt.monitors = [OvsdbMonitor(server.remote, monitor.on_snapshot, backoff=FAST)]
        async with in_task(rt.run()) as task:
            async with asyncio.timeout(WAIT):
                while driver.count < 3 and not task.done():
                    await asyncio.sleep(0.01)
            assert not task.done(), task.exception()
    assert "expected an OVSDB" in caplog.text
    assert not rt.core.vports()


class _Replies:
    """A scripted server's driver that answers every session with one monitor reply."""

    def __init__(self, reply: dict[str, Any]) -> None:
        self.reply, self.count = reply, 0

    async def __call__(self, conn: Conn, request: Any) -> None:
        self.count += 1
        conn.send({"id": request.get("id"), "result": self.reply, "error": None})


async def test_a_closed_connection_of_an_unnamed_datapath_is_not_kept() -> None:
    """Found reading the OpenFlow fuzz run: the connection of a datapath OVSDB had not
    named waited in the runtime for its name after it closed, one per datapath id ever
    seen, so that peers naming new datapath ids grew the controller without bound."""
    async with FakeOvsdb() as db:
        rt = solo_runtime(db.remote)
        async with in_task(rt.run()):
            async with asyncio.timeout(WAIT):
                await rt.openflow.ready.wait()
            gone = []
            for dpid in (0xF0, 0xF1, 0xF2):
                async with FakeSwitch(dpid) as switch:
                    switch.connect("127.0.0.1", rt.openflow.port, reconnect=False)
                    await switch.wait_connected()
                    (conn,) = rt.openflow.connections
                    gone.append(weakref.ref(conn))
                    del conn
                    switch.disconnect()
                async with asyncio.timeout(WAIT):
                    while rt.openflow.connections:
                        await asyncio.sleep(0.01)
            gc.collect()
            assert [ref() for ref in gone] == [None, None, None]


def test_a_port_moved_to_another_bridge_under_its_name_and_number_moves_the_vport() -> None:
    """One transaction moves a VM's interface to another bridge, where it gets the same
    OpenFlow number: the VM left its old port (a delete there), then came back to it.
    Taken for a change of the same port, the move made the return a duplicate MAC whose
    old port never went (found by the OVSDB fuzzer: the table kept the port OVSDB no
    longer had)."""
    feed, core = OvsdbFeed(), Controller("c0")
    for name, dpid in (("hv0", 1), ("hv1", 2)):
        core.switch_seen(name, dpid)
        core.gain_switch(name, [], 0.0)

    def at(bridge: str) -> Snapshot:
        row = IfaceRow("vma", bridge, 5, True, MAC, "a-iface", "a-vm")
        return Snapshot({"hv0": 1, "hv1": 2}, {"vma": row})

    for n, bridge in enumerate(("hv0", "hv1", "hv0")):
        for ev in feed.snapshot("tcp:hv", at(bridge), lambda _: True).events:
            core.port_event(ev, float(n))
        (vport,) = core.vports()
        assert (vport.loc.ovs, vport.loc.port, vport.loc.link_up) == (bridge, 5, True)
        assert core.conflicts() == []
