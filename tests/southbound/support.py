"""Test helpers: a recording handler, wire builders and a scriptable fake switch."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofpp

from vportd.core.flow import (
    Flow,
    FlowCommand,
    FlowMod,
    GotoTable,
    Output,
    PopVlan,
    PushVlan,
    SetField,
    ToController,
)
from vportd.southbound.openflow import flowcodec, wire
from vportd.southbound.openflow.connection import SwitchConnection
from vportd.southbound.openflow.incoming import PortInfo, PortReason
from vportd.southbound.openflow.server import OpenFlowServer

WAIT = 10.0  # generous: a wait for an event, never a threshold


# -- handler ------------------------------------------------------------------
@dataclass
class Event:
    kind: str
    conn: SwitchConnection
    args: tuple[Any, ...] = ()


@dataclass
class Recorder:
    """A SwitchHandler that queues what it hears."""

    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    on_connect: Callable[[SwitchConnection], None] | None = None
    fail_port_status: bool = False

    async def switch_connected(self, conn: SwitchConnection) -> None:
        if self.on_connect is not None:
            self.on_connect(conn)
        self.events.put_nowait(Event("connected", conn))

    def switch_disconnected(self, conn: SwitchConnection, reason: str) -> None:
        self.events.put_nowait(Event("disconnected", conn, (reason,)))

    def port_status(self, conn: SwitchConnection, reason: PortReason, port: PortInfo) -> None:
        if self.fail_port_status:
            raise RuntimeError("handler bug")
        self.events.put_nowait(Event("port_status", conn, (reason, port)))

    def packet_in(self, conn: SwitchConnection, in_port: int, data: bytes) -> None:
        self.events.put_nowait(Event("packet_in", conn, (in_port, data)))

    async def next(self, kind: str | None = None, timeout: float = WAIT) -> Event:
        """The next event (of `kind`, skipping others)."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.events.get()
                if kind is None or event.kind == kind:
                    return event


@contextlib.asynccontextmanager
async def running(server: OpenFlowServer) -> AsyncIterator[OpenFlowServer]:
    """Serve in a task for the block's duration; cancel and await it after."""
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(WAIT):
            await server.ready.wait()
        yield server
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# -- wire builders --------------------------------------------------------------
def header(msg_type: int, length: int, xid: int = 0, version: int = 4) -> bytes:
    return struct.pack("!BBHI", version, msg_type, length, xid)


def message(msg_type: int, body: bytes = b"", xid: int = 0, version: int = 4) -> bytes:
    return header(msg_type, 8 + len(body), xid, version) + body


def os_ken_flow_mod(mod: FlowMod) -> Any:
    """os-ken's own OFPFlowMod for a core flow mod: the oracle packed flow mods are held to."""
    flow, m = mod.flow, mod.flow.match
    eth_dst = m.eth_dst if m.eth_dst_mask is None else (m.eth_dst, m.eth_dst_mask)
    vid = m.vlan_vid if m.vlan_vid_mask is None else (m.vlan_vid, m.vlan_vid_mask)
    fields = {
        "in_port": m.in_port, "eth_dst": eth_dst, "eth_src": m.eth_src, "vlan_vid": vid,
        "tunnel_id": m.tunnel_id,
    }  # fmt: skip
    match = ofpp.OFPMatch(**{k: v for k, v in fields.items() if v is not None})
    common = {"table_id": flow.table, "priority": flow.priority, "match": match,
              "buffer_id": ofp.OFP_NO_BUFFER, "out_port": ofp.OFPP_ANY,
              "out_group": ofp.OFPG_ANY}  # fmt: skip
    if mod.command is FlowCommand.DELETE:
        return ofpp.OFPFlowMod(wire.DATAPATH, command=ofp.OFPFC_DELETE_STRICT, **common)
    outputs: list[Any] = []
    goto: list[Any] = []
    for action in flow.actions:
        match action:
            case Output(port=port):
                outputs.append(ofpp.OFPActionOutput(port))
            case ToController(max_len=max_len):
                outputs.append(ofpp.OFPActionOutput(ofp.OFPP_CONTROLLER, max_len))
            case GotoTable(table=table):
                goto.append(ofpp.OFPInstructionGotoTable(table))
            case PushVlan(ethertype=ethertype):
                outputs.append(ofpp.OFPActionPushVlan(ethertype))
            case PopVlan():
                outputs.append(ofpp.OFPActionPopVlan())
            case SetField(field=name, value=value):
                outputs.append(ofpp.OFPActionSetField(**{name: value}))
    apply = [ofpp.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, outputs)] if outputs else []
    return ofpp.OFPFlowMod(
        wire.DATAPATH,
        cookie=flow.cookie,
        command=ofp.OFPFC_ADD,
        instructions=apply + goto,
        **common,
    )


def read_flow_mod(mod: Any) -> Any:
    """A flow mod (os-ken's or `Packed`) as a switch reads it: its bytes, parsed by os-ken."""
    buf = wire.serialize(mod, 1)
    return ofpp.OFPFlowMod.parser(None, *struct.unpack_from("!BBHI", buf), buf)


def stats_entry(mod: Any, *, idle: int = 0, hard: int = 0) -> bytes:
    """The flow stats entry a switch would report for a flow mod (ADD)."""
    tail = wire.serialize(mod, 0)[ofp.OFP_FLOW_MOD_SIZE - ofp.OFP_MATCH_SIZE :]
    read = read_flow_mod(mod)
    head = struct.pack(
        ofp.OFP_FLOW_STATS_0_PACK_STR,
        ofp.OFP_FLOW_STATS_0_SIZE + len(tail), read.table_id, 1, 2, read.priority,
        idle, hard, 0, read.cookie, 3, 4,
    )  # fmt: skip
    return head + tail


def flow_entry(flow: Flow) -> bytes:
    return stats_entry(flowcodec.encode_flow_mod(FlowMod("s", FlowCommand.ADD, flow)))


def multipart_reply(mp_type: int, entries: bytes, xid: int, more: bool = False) -> bytes:
    flags = ofp.OFPMPF_REPLY_MORE if more else 0
    return message(ofp.OFPT_MULTIPART_REPLY, struct.pack("!HH4x", mp_type, flags) + entries, xid)


def port_entry(port_no: int, name: str, *, config: int = 0, state: int = 0) -> bytes:
    mac = bytes([0x02, 0, 0, 0, 0, port_no & 0xFF])
    return struct.pack(
        ofp.OFP_PORT_PACK_STR, port_no, mac, name.encode(), config, state, 0, 0, 0, 0, 0, 0
    )


def hello(version: int = 4, versions: list[int] | None = None) -> bytes:
    if versions is None:
        return message(ofp.OFPT_HELLO, version=version)
    bitmap = sum(1 << v for v in versions)
    return message(ofp.OFPT_HELLO, struct.pack("!HHI", 1, 8, bitmap), version=version)


def parse_stream(buf: bytearray) -> list[tuple[wire.Header, bytes]]:
    """Take whole messages off the front of `buf`."""
    out = []
    while len(buf) >= 8:
        head = wire.parse_header(bytes(buf[:8]))
        if len(buf) < head.length:
            break
        out.append((head, bytes(buf[: head.length])))
        del buf[: head.length]
    return out


# -- a fake switch --------------------------------------------------------------
@dataclass
class FakeSwitch:
    """A scriptable OpenFlow 1.3 switch on a raw socket, built with the os-ken codec."""

    port: int
    dpid: int = 0xFA
    ports: list[bytes] = field(default_factory=lambda: [port_entry(1, "p1")])
    answer_echo: bool = True
    flow_parts: list[list[bytes]] = field(default_factory=list)  # flow stats, per part
    fail_priority: int | None = None  # flow mods of this priority are refused
    answer_barrier: bool = True
    stale_role: bool = False
    received: list[tuple[wire.Header, bytes]] = field(default_factory=list)
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    task: asyncio.Task[None] | None = None
    eof: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self, reading: bool = True) -> FakeSwitch:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(hello(versions=[1, 4]))
        if reading:
            self.task = asyncio.create_task(self._serve())
        return self

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.writer is not None:
            self.writer.transport.abort()

    def send(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)

    def of_type(self, msg_type: int) -> list[wire.Header]:
        return [h for h, _ in self.received if h.msg_type == msg_type]

    async def _serve(self) -> None:
        assert self.reader is not None
        buf = bytearray()
        while True:
            data = await self.reader.read(65536)
            if not data:
                self.eof.set()
                return
            buf += data
            for head, msg in parse_stream(buf):
                self.received.append((head, msg))
                self._answer(head, msg)

    def _answer(self, head: wire.Header, msg: bytes) -> None:
        xid, t = head.xid, head.msg_type
        if t == ofp.OFPT_FEATURES_REQUEST:
            body = struct.pack(ofp.OFP_SWITCH_FEATURES_PACK_STR, self.dpid, 0, 254, 0, 0x4F, 0)
            self.send(message(ofp.OFPT_FEATURES_REPLY, body, xid))
        elif t == ofp.OFPT_MULTIPART_REQUEST:
            (mp_type,) = struct.unpack_from("!H", msg, 8)
            if mp_type == ofp.OFPMP_PORT_DESC:
                self.send(multipart_reply(mp_type, b"".join(self.ports), xid))
            else:
                parts = self.flow_parts or [[]]
                for i, part in enumerate(parts):
                    more = i < len(parts) - 1
                    self.send(multipart_reply(mp_type, b"".join(part), xid, more))
        elif t == ofp.OFPT_ECHO_REQUEST and self.answer_echo:
            self.send(message(ofp.OFPT_ECHO_REPLY, msg[8:], xid))
        elif t == ofp.OFPT_BARRIER_REQUEST and self.answer_barrier:
            self.send(message(ofp.OFPT_BARRIER_REPLY, b"", xid))
        elif t == ofp.OFPT_ROLE_REQUEST and self.stale_role:
            self.error(ofp.OFPET_ROLE_REQUEST_FAILED, ofp.OFPRRFC_STALE, msg, xid)
        elif t == ofp.OFPT_ROLE_REQUEST:
            self.send(message(ofp.OFPT_ROLE_REPLY, msg[8:], xid))
        elif t == ofp.OFPT_FLOW_MOD and struct.unpack_from("!H", msg, 30)[0] == self.fail_priority:
            self.error(ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_TABLE_FULL, msg, xid)

    def error(self, etype: int, code: int, msg: bytes, xid: int) -> None:
        self.send(message(ofp.OFPT_ERROR, struct.pack("!HH", etype, code) + msg[:64], xid))


def foreign_mod(**match: Any) -> Any:
    """Someone else's flow: a NORMAL action on whatever match."""
    actions = [ofpp.OFPActionOutput(ofp.OFPP_NORMAL)]
    inst = [ofpp.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)]
    return ofpp.OFPFlowMod(
        wire.DATAPATH, cookie=0x99, table_id=0, command=ofp.OFPFC_ADD, priority=7,
        match=ofpp.OFPMatch(**match), instructions=inst,
    )  # fmt: skip
