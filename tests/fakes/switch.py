"""`FakeSwitch`: an asyncio OpenFlow 1.3 switch that connects to controllers as OVS does.

Enough of ovs-vswitchd for the controller's runtime: HELLO with a version
bitmap (1.3 only by default; no common version gets HELLO_FAILED), features
(datapath id, 254 tables), PORT_DESC (its ports and the LOCAL port, up, as
OVS with the dummy datapath shows a bridge's internal port), SET_ASYNC /
GET_ASYNC, role requests with OVS's rules (`_Roles`), echo both ways,
FLOW_MODs applied to its `FakeOFTable` (refused ones answered with the
table's error), barriers, flow stats, PACKET_OUT recorded in `sent`
(OFPP_TABLE runs the frame through the table). A slave's FLOW_MOD or
PACKET_OUT gets OFPBRC_IS_SLAVE; anything else the fake does not know,
OFPBRC_BAD_TYPE.

Every message of a connection is handled in order, each fully before the
next: a barrier is answered only once all before it are applied. `pause()`
stops the handling (messages queue in `Channel.inbox`) until `resume()`,
so a test can hold a switch in the middle of a batch.

Like OVS, the switch keeps one connection per controller (`connect`, a
`Channel` each) and reconnects after `backoff` seconds when a controller
closes it; each connection starts EQUAL with OpenFlow's default async
config. `disconnect()` drops them all and stops reconnecting until
`reconnect()`. Flows and the generation id outlive connections (OVS in
fail_mode=secure keeps its flows). With `tls` (an SSL client context, what
OVS's `set-ssl` gives it) the switch connects over TLS, as to an `ssl:`
target; a failed handshake is a failed connection (it tries again). The
`wait_*` helpers wait for an event, never assert a time; their timeout only
keeps a broken test from hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofpp

from tests.fakes import ofwire
from tests.fakes.oftable import N_TABLES, FakeOFTable, Out, SwitchError, Unmodelled, parse_flow_mod
from tests.fakes.ofwire import Port
from vportd.southbound.openflow import incoming, outgoing, wire

LOG = logging.getLogger("tests.fakes.switch")
WAIT = 10.0  # generous: a wait for an event, never a threshold
_U64 = (1 << 64) - 1
# OpenFlow 1.3's default async config, as OVS sets it on a new connection:
# packet-in (no match, action) to a master only, port status to all, flow removed to a master.
DEFAULT_ASYNC: tuple[int, ...] = (0b011, 0, 0b111, 0b111, 0b1111, 0)
_PACKET_IN, _PORT_STATUS = 0, 1  # indexes of the mask pairs
# What a slave may not send.
_SLAVE_ONLY_TYPES = frozenset({
    ofp.OFPT_FLOW_MOD, ofp.OFPT_PACKET_OUT, ofp.OFPT_GROUP_MOD, ofp.OFPT_PORT_MOD,
    ofp.OFPT_TABLE_MOD, ofp.OFPT_METER_MOD,
})  # fmt: skip


@dataclass(frozen=True)
class PacketOut:
    """A frame the switch sent out because a controller told it to."""

    port: Out
    data: bytes
    in_port: int


def frame_fields(frame: bytes) -> tuple[str, str, int]:
    """(eth_src, eth_dst, eth_type) of an Ethernet frame."""
    if len(frame) < 14:
        raise ValueError(f"a frame of {len(frame)} bytes has no Ethernet header")
    return frame[6:12].hex(":"), frame[0:6].hex(":"), int.from_bytes(frame[12:14], "big")


class Channel:
    """One controller the switch connects to, and the connection of the moment."""

    def __init__(self, switch: FakeSwitch, host: str, port: int, reconnect: bool) -> None:
        self.switch, self.host, self.port, self.reconnect = switch, host, port, reconnect
        self.role = wire.Role.EQUAL
        self.masks = DEFAULT_ASYNC
        self.ready = False  # this connection's handshake is done (PORT_DESC answered)
        self.handshakes = 0  # connections that got that far
        self.inbox: deque[bytes] = deque()  # read, not yet handled
        self._writer: asyncio.StreamWriter | None = None
        self._wanted = asyncio.Event()
        self._wanted.set()
        self._echoes: dict[int, asyncio.Future[bytes]] = {}
        self._xid = 0

    def __repr__(self) -> str:
        return f"<Channel {self.switch.dpid:#x} -> {self.host}:{self.port} {self.role.name}>"

    # -- life ------------------------------------------------------------
    async def run(self) -> None:
        """Connect, serve, and reconnect (module docstring) until cancelled."""
        while True:
            await self._wanted.wait()
            try:
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, ssl=self.switch.tls
                )
            except OSError:
                await asyncio.sleep(self.switch.backoff)
                continue
            if not self._wanted.is_set():  # disconnected while connecting
                writer.transport.abort()
                continue
            try:
                await self._serve(reader, writer)
            finally:
                self._closed(writer)
            if not self.reconnect:
                self._wanted.clear()
            await asyncio.sleep(self.switch.backoff)

    def drop(self) -> None:
        """Close the connection of the moment (it comes back if `reconnect`)."""
        if self._writer is not None:
            self._writer.transport.abort()

    def stop(self) -> None:
        self._wanted.clear()
        self.drop()

    def start(self) -> None:
        self._wanted.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.send(ofwire.hello(self.switch.versions))
        async with asyncio.TaskGroup() as tg:
            handler = tg.create_task(self._handle_loop())
            await self._read_loop(reader)
            handler.cancel()

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readexactly(wire.HEADER_SIZE)
                length = wire.parse_header(head).length
                body = await reader.readexactly(max(length - wire.HEADER_SIZE, 0))
                self.inbox.append(head + body)
                self.switch.poke()

    async def _handle_loop(self) -> None:
        negotiated = False
        switch = self.switch
        while True:
            await switch.wait_until(lambda: bool(self.inbox) and switch.running.is_set(), None)
            data = self.inbox.popleft()
            if not negotiated:
                negotiated = self._hello(data)
                if not negotiated and self._writer is not None:
                    self._writer.close()  # after what was said (a HELLO_FAILED error)
                    return
            else:
                self.switch.handle(self, data)
            self.switch.poke()
            if self._writer is not None:
                with contextlib.suppress(ConnectionError):
                    await self._writer.drain()

    def _hello(self, data: bytes) -> bool:
        header = wire.parse_header(data)
        if header.msg_type != ofp.OFPT_HELLO:
            LOG.warning("%r: first message of type %d, not HELLO", self, header.msg_type)
            return False
        offered = incoming.decode_hello(data).versions or set(range(1, header.version + 1))
        if not offered & set(self.switch.versions):
            text = f"no common version: {sorted(offered)}"
            self.send(ofwire.error(ofp.OFPET_HELLO_FAILED, ofp.OFPHFC_INCOMPATIBLE,
                                   text.encode(), header.xid))  # fmt: skip
            return False
        return True

    def _closed(self, writer: asyncio.StreamWriter) -> None:
        writer.transport.abort()
        self._writer = None
        self.ready, self.role, self.masks = False, wire.Role.EQUAL, DEFAULT_ASYNC
        self.inbox.clear()
        for future in self._echoes.values():
            future.cancel()
        self._echoes.clear()
        self.switch.poke()

    # -- sending ---------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._writer is not None

    def send(self, data: bytes) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(data)

    def wants(self, kind: int, reason: int) -> bool:
        """Whether this connection's role and async config let message `kind` of `reason` go."""
        if not self.ready:
            return False
        mask = self.masks[2 * kind + (self.role is wire.Role.SLAVE)]
        return bool(mask >> reason & 1)

    async def echo(self, data: bytes = b"", timeout: float = WAIT) -> bytes:
        """Send an ECHO_REQUEST to the controller; the data of its reply."""
        self._xid += 1
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._echoes[self._xid] = future
        self.send(wire.serialize(outgoing.echo_request(data), self._xid))
        async with asyncio.timeout(timeout):
            return await future

    def echo_replied(self, xid: int, data: bytes) -> None:
        future = self._echoes.pop(xid, None)
        if future is not None and not future.done():
            future.set_result(data)


class FakeSwitch:
    """One bridge of a fake OVS (module docstring). Use as `async with FakeSwitch(...) as sw`."""

    def __init__(
        self,
        dpid: int,
        ports: Iterable[Port] = (),
        *,
        name: str = "br0",
        n_tables: int = N_TABLES,
        max_flows: int | None = None,
        versions: Iterable[int] = (ofp.OFP_VERSION,),
        backoff: float = 0.05,
        max_part: int = ofwire.MAX_PART,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.dpid, self.name = dpid, name
        self.tls = tls
        self.ports: dict[int, Port] = {p.no: p for p in ports}
        self.table = FakeOFTable(n_tables, max_flows)
        self.versions = tuple(versions)
        self.backoff, self.max_part = backoff, max_part
        self.channels: list[Channel] = []
        self.sent: list[PacketOut] = []  # every frame a controller sent out of a port
        self.handled: Counter[int] = Counter()  # messages handled, by OFPT_ type
        self.errors: list[incoming.ErrorMsg] = []  # errors the controllers sent us
        self.generation_id: int | None = None  # the largest seen (OVS's master election id)
        # Refuse a flow mod (os-ken's OFPFlowMod) with this error, before the table sees it.
        self.refuse: Callable[[Any], SwitchError | None] | None = None
        self.running = asyncio.Event()
        self.running.set()
        self._changed = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def __repr__(self) -> str:
        return f"<FakeSwitch {self.name} {self.dpid:#x}>"

    async def __aenter__(self) -> FakeSwitch:
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for task in self._tasks:
            task.cancel()
        assert self._tg is not None
        await self._tg.__aexit__(kind, exc, tb)
        self._tg = None

    # -- controllers -----------------------------------------------------
    def connect(self, host: str, port: int, *, reconnect: bool = True) -> Channel:
        """Start connecting to a controller (and stay connected: module docstring)."""
        if self._tg is None:
            raise RuntimeError("use the switch in `async with` first")
        channel = Channel(self, host, port, reconnect)
        self.channels.append(channel)
        self._tasks.append(self._tg.create_task(channel.run()))
        return channel

    def disconnect(self) -> None:
        """Drop every connection and stop reconnecting."""
        for channel in self.channels:
            channel.stop()

    def reconnect(self) -> None:
        for channel in self.channels:
            channel.start()

    @property
    def connected(self) -> bool:
        return any(c.ready for c in self.channels)

    def pause(self) -> None:
        """Stop handling messages (they queue) until `resume`."""
        self.running.clear()

    def resume(self) -> None:
        self.running.set()
        self.poke()

    # -- waiting ---------------------------------------------------------
    def poke(self) -> None:
        """Something changed: wake every waiter to look again."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float | None = WAIT) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._changed.wait()

    async def wait_connected(self, count: int = 1, timeout: float = WAIT) -> None:
        """Until `count` connections have finished their handshake."""
        await self.wait_until(lambda: sum(c.ready for c in self.channels) >= count, timeout)

    async def wait_flows(
        self, predicate: Callable[[FakeOFTable], bool], timeout: float = WAIT
    ) -> None:
        await self.wait_until(lambda: predicate(self.table), timeout)

    # -- ports and frames --------------------------------------------------
    def add_port(self, no: int, name: str, mac: str, up: bool = True) -> Port:
        if no in self.ports:
            raise ValueError(f"{self}: port {no} exists")
        port = self.ports[no] = Port(no, name, mac, up)
        self._port_status(ofp.OFPPR_ADD, port)
        return port

    def set_link(self, no: int, up: bool) -> Port:
        port = self.ports[no] = Port(no, self.ports[no].name, self.ports[no].mac, up)
        self._port_status(ofp.OFPPR_MODIFY, port)
        return port

    def delete_port(self, no: int) -> None:
        self._port_status(ofp.OFPPR_DELETE, self.ports.pop(no))

    def _port_status(self, reason: int, port: Port) -> None:
        for channel in self.channels:
            if channel.wants(_PORT_STATUS, reason):
                channel.send(ofwire.port_status(reason, port))

    def packet_in(
        self, in_port: int, frame: bytes, *, reason: int = ofp.OFPR_ACTION, table: int = 0,
        cookie: int = _U64,
    ) -> None:  # fmt: skip
        """Send a frame to every controller that wants it (role and async config)."""
        for channel in self.channels:
            if channel.wants(_PACKET_IN, reason):
                channel.send(ofwire.packet_in(in_port, frame, reason, table, cookie))

    def receive(self, in_port: int, frame: bytes) -> set[Out]:
        """A frame entering on `in_port`: where the table sends it (copies to the controller
        go as packet-ins)."""
        eth_src, eth_dst, eth_type = frame_fields(frame)
        trace = self.table.trace(in_port, eth_src, eth_dst, eth_type=eth_type)
        for punt in trace.punts:
            self.packet_in(in_port, frame[: punt.max_len], table=punt.table, cookie=punt.cookie)
        return set(trace.outputs)

    def local_port(self) -> Port:
        mac = (0x02 << 40 | self.dpid & 0xFF_FFFF_FFFF).to_bytes(6, "big").hex(":")
        return Port(ofp.OFPP_LOCAL, self.name, mac)

    # -- messages ----------------------------------------------------------
    def handle(self, channel: Channel, data: bytes) -> None:
        """One message from a controller, after the HELLO exchange."""
        header = wire.parse_header(data)
        self.handled[header.msg_type] += 1
        try:
            if header.version != ofp.OFP_VERSION:
                raise SwitchError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_VERSION, "version")
            if header.msg_type in _SLAVE_ONLY_TYPES and channel.role is wire.Role.SLAVE:
                raise SwitchError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_IS_SLAVE, "slave")
            handler = _HANDLERS.get(header.msg_type)
            if handler is None:
                raise SwitchError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_TYPE, "unsupported")
            handler(self, channel, header.xid, data)
        except SwitchError as exc:
            LOG.info("%r: refused %s: %s", self, wire.type_name(header.msg_type), exc)
            channel.send(ofwire.refusal(exc, data, header.xid))

    def _echo_request(self, channel: Channel, xid: int, data: bytes) -> None:
        channel.send(wire.serialize(outgoing.echo_reply(data[wire.HEADER_SIZE :]), xid))

    def _echo_reply(self, channel: Channel, xid: int, data: bytes) -> None:
        channel.echo_replied(xid, data[wire.HEADER_SIZE :])

    def _features(self, channel: Channel, xid: int, data: bytes) -> None:
        channel.send(ofwire.features_reply(self.dpid, self.table.n_tables, xid))

    def _get_config(self, channel: Channel, xid: int, data: bytes) -> None:
        channel.send(ofwire.config_reply(xid))

    def _ignore(self, channel: Channel, xid: int, data: bytes) -> None:
        pass

    def _error(self, channel: Channel, xid: int, data: bytes) -> None:
        header = wire.parse_header(data)
        record = incoming.decode_message(header, data)
        if isinstance(record, incoming.ErrorMsg):
            self.errors.append(record)

    def _set_async(self, channel: Channel, xid: int, data: bytes) -> None:
        channel.masks = ofwire.unpack_set_async(data)

    def _get_async(self, channel: Channel, xid: int, data: bytes) -> None:
        channel.send(ofwire.async_reply(channel.masks, xid))

    def _barrier(self, channel: Channel, xid: int, data: bytes) -> None:
        channel.send(wire.serialize(ofpp.OFPBarrierReply(wire.DATAPATH), xid))

    def _role(self, channel: Channel, xid: int, data: bytes) -> None:
        role, generation = ofwire.unpack_role_request(data)
        _Roles(self).request(channel, role, generation)
        reply = _U64 if self.generation_id is None else self.generation_id
        channel.send(ofwire.role_reply(channel.role, reply, xid))

    def _multipart(self, channel: Channel, xid: int, data: bytes) -> None:
        mp_type = ofwire.multipart_type(data)
        if mp_type == ofp.OFPMP_PORT_DESC:
            ports = [*sorted(self.ports.values(), key=lambda p: p.no), self.local_port()]
            entries = [p.wire() for p in ports]
        elif mp_type == ofp.OFPMP_FLOW:
            selection = ofwire.unpack_flow_stats_request(data)
            entries = [ofwire.flow_stats_entry(e) for e in self.table.select(selection)]
        elif mp_type == ofp.OFPMP_DESC:
            entries = [ofwire.desc_entry()]
        else:
            raise SwitchError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_MULTIPART, f"type {mp_type}")
        for part in ofwire.multipart_replies(mp_type, entries, xid, self.max_part):
            channel.send(part)
        if mp_type == ofp.OFPMP_PORT_DESC and not channel.ready:
            channel.ready = True  # the controller's handshake ends with the port list
            channel.handshakes += 1

    def _flow_mod(self, channel: Channel, xid: int, data: bytes) -> None:
        if self.refuse is not None:
            refused = self.refuse(parse_flow_mod(data))
            if refused is not None:
                raise refused
        self.table.apply(data)

    def _packet_out(self, channel: Channel, xid: int, data: bytes) -> None:
        request = ofwire.unpack_packet_out(data)
        for action in request.actions:
            if not isinstance(action, ofpp.OFPActionOutput):
                raise SwitchError(ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_TYPE, f"{action}")
            self._send_out(int(action.port), request.in_port, request.data)

    def _send_out(self, port: int, in_port: int, frame: bytes) -> None:
        if port == ofp.OFPP_TABLE:
            try:
                outputs = self.receive(in_port, frame)
            except (Unmodelled, ValueError) as exc:
                raise SwitchError(ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_ARGUMENT, str(exc)) from exc
            self.sent += [PacketOut(out, frame, in_port) for out in sorted(outputs, key=str)]
            return
        if port == ofp.OFPP_IN_PORT:
            port = in_port
        name = {ofp.OFPP_CONTROLLER: "controller", ofp.OFPP_LOCAL: "local"}.get(port)
        self.sent.append(PacketOut(port if name is None else name, frame, in_port))


class _Roles:
    """OVS's handling of a ROLE_REQUEST (ofproto.c handle_role_request, connmgr.c).

    MASTER and SLAVE carry a generation id: one older than the largest seen
    (compared as a signed 64-bit difference) is refused as stale, else it
    becomes the largest seen. EQUAL and NOCHANGE do not look at it. A new
    MASTER makes every other master a SLAVE. The reply carries the largest
    generation id seen (all ones while there is none).
    """

    def __init__(self, switch: FakeSwitch) -> None:
        self.switch = switch

    def request(self, channel: Channel, role: int, generation: int) -> None:
        try:
            wanted = wire.Role(role)
        except ValueError:
            raise SwitchError(
                ofp.OFPET_ROLE_REQUEST_FAILED, ofp.OFPRRFC_BAD_ROLE, f"role {role}"
            ) from None
        if wanted is wire.Role.NOCHANGE:
            return
        if wanted is not wire.Role.EQUAL:
            self._election(generation)
        if wanted is wire.Role.MASTER:
            for other in self.switch.channels:
                if other is not channel and other.role is wire.Role.MASTER:
                    other.role = wire.Role.SLAVE
        channel.role = wanted

    def _election(self, generation: int) -> None:
        known = self.switch.generation_id
        if known is not None and (generation - known) & _U64 >= 1 << 63:
            raise SwitchError(
                ofp.OFPET_ROLE_REQUEST_FAILED, ofp.OFPRRFC_STALE,
                f"generation {generation} is older than {known}",
            )  # fmt: skip
        self.switch.generation_id = generation


_Handler = Callable[[FakeSwitch, Channel, int, bytes], None]
_HANDLERS: dict[int, _Handler] = {
    ofp.OFPT_ECHO_REQUEST: FakeSwitch._echo_request,
    ofp.OFPT_ECHO_REPLY: FakeSwitch._echo_reply,
    ofp.OFPT_ERROR: FakeSwitch._error,
    ofp.OFPT_FEATURES_REQUEST: FakeSwitch._features,
    ofp.OFPT_GET_CONFIG_REQUEST: FakeSwitch._get_config,
    ofp.OFPT_SET_CONFIG: FakeSwitch._ignore,
    ofp.OFPT_SET_ASYNC: FakeSwitch._set_async,
    ofp.OFPT_GET_ASYNC_REQUEST: FakeSwitch._get_async,
    ofp.OFPT_BARRIER_REQUEST: FakeSwitch._barrier,
    ofp.OFPT_ROLE_REQUEST: FakeSwitch._role,
    ofp.OFPT_MULTIPART_REQUEST: FakeSwitch._multipart,
    ofp.OFPT_FLOW_MOD: FakeSwitch._flow_mod,
    ofp.OFPT_PACKET_OUT: FakeSwitch._packet_out,
}
