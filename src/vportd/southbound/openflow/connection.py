"""One switch's OpenFlow 1.3 channel (`SwitchConnection`): handshake, keepalive, requests.

A connection's life:

1. Both sides send HELLO; we offer OpenFlow 1.3 only. A peer without it gets an
   OFPET_HELLO_FAILED error and is closed.
2. FEATURES_REQUEST gives the datapath id, a PORT_DESC multipart the ports.
   Steps 1 and 2 must finish within `echo_interval * echo_misses` seconds.
3. The handler's `switch_connected` is awaited; from then on PORT_STATUS and
   PACKET_IN go to the handler (during the handshake a port status only updates
   `ports`). When the connection ends, `switch_disconnected` is called once, if
   `switch_connected` was.

Keepalive: an ECHO_REQUEST every `echo_interval` seconds; the connection is
closed when `echo_misses` in a row go by without any message from the switch
(an echo reply or anything else: a switch busy answering a flow dump or
barriers is alive, and ovs-vswitchd answers echoes late while it creates
many ports). The switch's own echo requests are answered.

Replies: a barrier, flow dump or role request not answered within
`reply_timeout` seconds fails with TimeoutError (the caller closes the switch,
and reconnecting reconciles it). It bounds the switch's work on everything
queued before the request, so it is long: ovs-vswitchd takes seconds over
thousands of flow mods behind a barrier while it is busy with a boot storm.

Sending: messages go through an `Outbox` drained by a writer task. `send`
never blocks: a full queue means the switch has stopped reading and the
connection is closed as stuck. Bulk sends (`send_flow_mods`,
`delete_foreign`) wait for room instead, up to `echo_interval * echo_misses`
seconds without progress, then close as stuck; they encode in slices of
`SLICE` and let the event loop run between them, so that its other work (the
etcd lease keepalive first) does not wait for a whole batch.

Input hygiene: a header shorter than 8 bytes, a first message that is not
HELLO, another version after the handshake, a message longer than
`max_message`, a body that does not parse, or a stream that ends inside a
message closes the connection with a logged reason (logger `vportd.openflow`,
naming the peer address). The header alone decides when it can, so garbage is
refused without waiting for the body its length field announces.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from vportd.core.flow import Flow, FlowMod
from vportd.southbound.openflow import incoming, outgoing, wire
from vportd.southbound.openflow.errors import FlowModsFailed, OpenFlowError, SwitchClosed
from vportd.southbound.openflow.flowcodec import (
    ForeignFlow,
    encode_delete_foreign,
    encode_flow_mod,
)
from vportd.southbound.openflow.incoming import ErrorMsg, PortInfo, PortReason
from vportd.southbound.openflow.outbox import Outbox
from vportd.southbound.openflow.replies import Replies
from vportd.southbound.openflow.wire import Role

LOG = logging.getLogger("vportd.openflow")
# Flow mods encoded or queued between two looks at the event loop: a reconcile runs one
# such task per switch at once, and all of them go before the loop's timers.
SLICE = 64
READ_SLICE = 16  # messages read between two looks (a flow-stats part is slow to decode)

R = TypeVar("R")


class SwitchHandler(Protocol):
    """What the daemon implements to hear from switches."""

    async def switch_connected(self, conn: SwitchConnection) -> None: ...

    def switch_disconnected(self, conn: SwitchConnection, reason: str) -> None: ...

    def port_status(self, conn: SwitchConnection, reason: PortReason, port: PortInfo) -> None: ...

    def packet_in(self, conn: SwitchConnection, in_port: int, data: bytes) -> None: ...


@dataclass(frozen=True)
class FlowDump:
    """What a switch holds: the flows the core can stand for, and the others."""

    flows: list[Flow]
    foreign: list[ForeignFlow]


@dataclass(frozen=True)
class Limits:
    echo_interval: float = 2.0
    echo_misses: int = 3
    max_message: int = 65535
    send_queue: int = 4096
    reply_timeout: float = 10.0

    @property
    def patience(self) -> float:
        """How long the handshake, or a bulk send without progress, may take."""
        return self.echo_interval * self.echo_misses


class _Bad(Exception):
    """Input that ends the connection; the message is the logged reason."""


def _check_header(header: wire.Header, negotiated: bool, max_message: int) -> None:
    """Refuse a header before its body is read (module doc: Input hygiene)."""
    if header.length < wire.HEADER_SIZE:
        raise _Bad(f"bad header: length {header.length} < {wire.HEADER_SIZE}")
    if not negotiated:
        if header.msg_type != wire.OFPT_HELLO:
            raise _Bad(f"expected HELLO, got version {header.version:#04x} type {header.msg_type}")
    elif header.version != wire.OFP_VERSION:
        raise _Bad(f"unknown version {header.version:#04x} after negotiating OpenFlow 1.3")
    if header.length > max_message:
        raise _Bad(f"message of {header.length} bytes exceeds max_message {max_message}")


class SwitchConnection:
    """One switch's OpenFlow channel. Public state: `peer`, `dpid`, `ports`, `connected`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        handler: SwitchHandler,
        limits: Limits,
    ) -> None:
        self._reader, self._writer = reader, writer
        self._handler, self._limits = handler, limits
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.dpid: int | None = None
        self.ports: dict[int, PortInfo] = {}
        self.connected = False  # switch_connected has been called
        self.close_reason: str | None = None
        self._outbox = Outbox(limits.send_queue)
        self._xid = 0
        self._negotiated = False
        self._hello = asyncio.Event()
        self._closed = asyncio.Event()
        self._stuck = False
        self._replies = Replies()
        self._unanswered = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._tg: asyncio.TaskGroup | None = None

    def __repr__(self) -> str:
        dpid = "?" if self.dpid is None else f"{self.dpid:016x}"
        return f"<SwitchConnection {self.peer} dpid {dpid}>"

    @property
    def closed(self) -> bool:
        return self.close_reason is not None

    # -- life ------------------------------------------------------------
    async def run(self) -> None:
        """Serve the connection until it closes (or the task is cancelled)."""
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                self._spawn("reader", self._read_loop)
                self._spawn("writer", lambda: self._outbox.drain(self._writer))
                self._spawn("connect", self._lifecycle)
                await self._closed.wait()
                for task in self._tasks:
                    task.cancel()
        except asyncio.CancelledError:
            self.close("controller shutting down", level=logging.INFO)
            raise
        finally:
            self._tg = None
            await self._shut_transport()
            if self.connected:
                self._notify_disconnected()

    def _spawn(self, what: str, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        # The coroutine is made inside the task: a task cancelled before it
        # starts (the connection closing meanwhile) leaves none unawaited.
        assert self._tg is not None
        self._tasks.append(self._tg.create_task(self._guard(what, job)))

    async def _guard(self, what: str, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run one of the connection's tasks: whatever it raises closes the connection."""
        try:
            await job()
        except SwitchClosed:
            pass
        except _Bad as exc:
            self.close(str(exc))
        except TimeoutError:
            self.close(f"{what} timed out")
        except ConnectionError as exc:
            self.close(f"connection lost: {exc!r}", level=logging.INFO)
        except Exception as exc:
            LOG.exception("openflow peer %s: %s failed", self.peer, what)
            self.close(f"{what} failed: {exc!r}")

    def close(self, reason: str, *, level: int = logging.WARNING) -> None:
        """Close the connection (once), logging why. Pending requests get SwitchClosed."""
        if self.close_reason is not None:
            return
        self.close_reason = reason
        dpid = "" if self.dpid is None else f" (dpid {self.dpid:016x})"
        LOG.log(level, "openflow peer %s%s: closing: %s", self.peer, dpid, reason)
        self._replies.fail_all(SwitchClosed(reason))
        # What was said gets said (a HELLO_FAILED error, say), unless the switch is stuck.
        self._outbox.flush(self._writer.transport, discard=self._stuck)
        self._closed.set()

    async def _shut_transport(self) -> None:
        writer = self._writer
        if self._stuck:
            writer.transport.abort()
            return
        writer.close()
        try:
            async with asyncio.timeout(1.0):
                await writer.wait_closed()
        except (TimeoutError, OSError):
            writer.transport.abort()

    def _notify_disconnected(self) -> None:
        try:
            self._handler.switch_disconnected(self, self.close_reason or "closed")
        except Exception:
            LOG.exception("openflow peer %s: switch_disconnected handler failed", self.peer)

    async def _lifecycle(self) -> None:
        self._enqueue_bytes(outgoing.encode_hello())
        try:
            async with asyncio.timeout(self._limits.patience):
                await self._handshake()
        except TimeoutError:
            raise _Bad(f"handshake not complete within {self._limits.patience:g}s") from None
        except OpenFlowError as err:  # an error, or another reply, for a handshake request
            raise _Bad(f"handshake refused: {err}") from None
        self.connected = True
        LOG.info("openflow peer %s: switch %016x connected", self.peer, self.dpid)
        self._spawn("keepalive", self._keepalive)
        await self._handler.switch_connected(self)

    async def _handshake(self) -> None:
        await self._hello.wait()
        request = outgoing.features_request()
        features = await self._request(request, incoming.FeaturesReply, None)
        self.dpid = features.dpid
        self._enqueue(outgoing.set_async())
        await self._multipart(outgoing.port_desc_request(), incoming.PortDescReply, None)

    async def _keepalive(self) -> None:
        limits = self._limits
        while True:
            await asyncio.sleep(limits.echo_interval)
            if self._unanswered >= limits.echo_misses:
                raise _Bad(
                    f"no echo reply to {self._unanswered} echo requests "
                    f"({limits.echo_interval:g}s apart)"
                )
            self._unanswered += 1
            self._enqueue(outgoing.echo_request())

    # -- reading ---------------------------------------------------------
    async def _read_loop(self) -> None:
        read = 0
        while True:
            read += 1
            if not read % READ_SLICE:
                # readexactly does not yield while its buffer holds data: a flow dump of
                # megabytes would be decoded in one go, the loop's other work waiting.
                await asyncio.sleep(0)
            header, buf = await self._read_message()
            self._unanswered = 0  # the switch is alive, whatever it sent
            try:
                record = incoming.decode_message(header, buf)
            except wire.CodecError as exc:
                raise _Bad(f"bad {wire.type_name(header.msg_type)} message: {exc}") from None
            self._dispatch(header, record)

    async def _read_message(self) -> tuple[wire.Header, bytes]:
        reader, size = self._reader, wire.HEADER_SIZE
        try:
            head = await reader.readexactly(size)
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                self.close("connection closed by the peer", level=logging.INFO)
                raise SwitchClosed("connection closed by the peer") from None
            raise _Bad(
                f"truncated message: {len(exc.partial)} of {size} header bytes, then end of stream"
            ) from None
        header = wire.parse_header(head)
        _check_header(header, self._negotiated, self._limits.max_message)
        try:
            body = await reader.readexactly(header.length - size)
        except asyncio.IncompleteReadError as exc:
            got = size + len(exc.partial)
            raise _Bad(
                f"truncated message: header says {header.length} bytes, "
                f"got {got} then end of stream"
            ) from None
        return header, head + body

    def _dispatch(self, header: wire.Header, record: incoming.Incoming) -> None:
        match record:
            case incoming.Hello():
                self._on_hello(header, record)
            case incoming.EchoRequest(data=data):
                self._enqueue(outgoing.echo_reply(data), header.xid)
            case incoming.EchoReply():
                pass  # (any message shows the switch alive: see _read_loop)
            case incoming.PortStatus(reason=reason, port=port):
                self._on_port_status(reason, port)
            case incoming.PacketIn(in_port=in_port, data=data):
                if self.connected:
                    self._tell("packet_in", self._handler.packet_in, in_port, data)
            case incoming.ErrorMsg():
                self._on_error(header.xid, record)
            case incoming.Unhandled(msg_type=msg_type):
                LOG.debug("openflow peer %s: ignored %s", self.peer, wire.type_name(msg_type))
            case _:
                self._on_reply(header.xid, record)

    def _on_hello(self, header: wire.Header, hello: incoming.Hello) -> None:
        if self._negotiated:
            raise _Bad("a second HELLO")
        if not incoming.negotiate(header.version, hello):
            offered = sorted(hello.versions) if hello.versions is not None else [header.version]
            text = f"OpenFlow 1.3 (wire version 4) only; the peer offers {offered}"
            self._enqueue(outgoing.hello_failed(text), header.xid)
            raise _Bad(f"version negotiation failed: {text}")
        self._negotiated = True
        self._hello.set()

    def _on_port_status(self, reason: PortReason, port: PortInfo) -> None:
        if reason == "delete":
            self.ports.pop(port.port_no, None)
        else:
            self.ports[port.port_no] = port
        if self.connected:
            self._tell("port_status", self._handler.port_status, reason, port)

    def _tell(self, what: str, method: Callable[..., None], *args: object) -> None:
        """Call a handler method; its failure closes the connection (a resync follows)."""
        try:
            method(self, *args)
        except Exception as exc:
            LOG.exception("openflow peer %s: %s handler failed", self.peer, what)
            raise _Bad(f"{what} handler failed: {exc!r}") from exc

    def _on_error(self, xid: int, error: ErrorMsg) -> None:
        if not self._replies.error(xid, error):
            LOG.warning("openflow peer %s: error from the switch: %s", self.peer, error.describe())

    def _on_reply(self, xid: int, record: incoming.Incoming) -> None:
        if not self._replies.awaited(xid):
            LOG.debug("openflow peer %s: unsolicited %s", self.peer, type(record).__name__)
            return
        parts = self._replies.reply(xid, record)
        if isinstance(record, incoming.PortDescReply) and parts is not None:
            # The whole description, in order with the port status messages around it.
            self.ports = {p.port_no: p for part in parts for p in part.ports}

    # -- writing ---------------------------------------------------------
    def _next_xid(self) -> int:
        self._xid = self._xid % 0xFFFF_FFFF + 1
        return self._xid

    def _encode(self, msg: object, xid: int | None) -> tuple[bytes, int]:
        if isinstance(msg, bytes | bytearray):
            header = wire.parse_header(bytes(msg))
            if header.length != len(msg):
                raise ValueError(f"header says {header.length} bytes, message has {len(msg)}")
            return bytes(msg), header.xid
        xid = self._next_xid() if xid is None else xid
        return wire.serialize(msg, xid), xid

    def _check_open(self) -> None:
        if self.close_reason is not None:
            raise SwitchClosed(self.close_reason)

    def _enqueue(self, msg: object, xid: int | None = None) -> int:
        self._check_open()
        data, xid = self._encode(msg, xid)
        self._enqueue_bytes(data)
        return xid

    def _enqueue_bytes(self, data: bytes) -> None:
        if not self._outbox.put(data):
            self._close_stuck()

    def _close_stuck(self) -> None:
        self._check_open()
        reason = f"send queue full ({self._outbox.size} messages): the switch is not reading"
        self._stuck = True
        self.close(reason)
        raise SwitchClosed(reason)

    async def _enqueue_waiting(self, msg: object, xid: int | None = None) -> int:
        """Like `_enqueue`, but wait for room (bounded: no room in time means stuck)."""
        self._check_open()
        data, xid = self._encode(msg, xid)
        if not self._outbox.put(data):
            if not await self._outbox.put_waiting(data, self._limits.patience):
                self._close_stuck()
            self._check_open()  # (closing empties the queue, which lets the put in)
        return xid

    async def send(self, msg: object) -> int:
        """Queue one message: an os-ken OpenFlow 1.3 message built on `wire.DATAPATH`
        (given the next xid) or the bytes of one whole message. Returns its xid.

        Never waits: if the queue is full the switch is stuck and the connection
        is closed (SwitchClosed)."""
        return self._enqueue(msg)

    # -- requests --------------------------------------------------------
    async def _request_any(self, msg: object, expect: type, timeout: float | None) -> Any:
        xid, future = self._expect(msg, expect)
        try:
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self._replies.forget(xid)

    def _expect(self, msg: object, expect: type) -> tuple[int, asyncio.Future[Any]]:
        """Queue a request; its xid and the future of its reply (`forget` the xid after)."""
        xid = self._next_xid()
        future = self._replies.expect(xid, expect)
        try:
            self._enqueue(msg, xid)
        except BaseException:
            self._replies.forget(xid)
            raise
        return xid, future

    async def _request(self, msg: object, expect: type[R], timeout: float | None) -> R:
        return cast(R, await self._request_any(msg, expect, timeout))

    async def _multipart(self, msg: object, expect: type[R], timeout: float | None) -> list[R]:
        return cast(list[R], await self._request_any(msg, expect, timeout))

    def _timeout(self, timeout: float | None) -> float:
        return self._limits.reply_timeout if timeout is None else timeout

    async def barrier(self, timeout: float | None = None) -> None:
        """Wait until the switch has processed every message sent before."""
        request = outgoing.barrier_request()
        await self._request(request, incoming.BarrierReply, self._timeout(timeout))

    async def send_flow_mods(self, mods: Sequence[FlowMod], timeout: float | None = None) -> None:
        """Send flow mods, then a barrier; FlowModsFailed if the switch refused any.

        All are encoded before any is sent (CodecError leaves the switch alone).
        `timeout` bounds the barrier (default `reply_timeout`)."""
        sent = await self.queue_flow_mods(mods)
        await sent.confirmed(timeout)

    async def queue_flow_mods(self, mods: Sequence[FlowMod]) -> SentMods:
        """Queue flow mods and a barrier behind them; `confirmed()` waits for the barrier.

        What is queued after this returns reaches the switch after these mods, so
        the next batch need not wait for this one's barrier."""
        return await SentMods.queue(self, mods)

    async def read_ports(self, timeout: float | None = None) -> None:
        """Read the switch's ports again (`ports`): a slave is not told of port changes."""
        request = outgoing.port_desc_request()
        await self._multipart(request, incoming.PortDescReply, self._timeout(timeout))

    async def dump(self, timeout: float | None = None) -> FlowDump:
        """Every flow of every table, as core flows and foreign ones."""
        request = outgoing.flow_stats_request()
        parts = await self._multipart(request, incoming.FlowStatsReply, self._timeout(timeout))
        flows = [f for part in parts for f in part.flows]
        return FlowDump(flows, [f for part in parts for f in part.foreign])

    async def delete_foreign(
        self, flows: Iterable[ForeignFlow], timeout: float | None = None
    ) -> None:
        """Remove exactly those foreign flows (DELETE_STRICT on their raw match), then barrier."""
        for n, foreign in enumerate(flows):
            if n and not n % SLICE:
                await asyncio.sleep(0)
            await self._enqueue_waiting(encode_delete_foreign(foreign))
        await self.barrier(timeout)

    async def role_request(
        self, role: Role | int, generation_id: int, timeout: float | None = None
    ) -> tuple[Role, int]:
        """Ask for a role (MASTER/SLAVE/EQUAL/NOCHANGE); the switch's answer.

        A stale generation id comes back as OpenFlowError (ROLE_REQUEST_FAILED/STALE)."""
        msg = outgoing.role_request(Role(role), generation_id)
        reply = await self._request(msg, incoming.RoleReply, self._timeout(timeout))
        return reply.role, reply.generation_id

    async def packet_out(self, port: int, data: bytes, in_port: int = wire.OFPP_CONTROLLER) -> None:
        """Send one frame out of `port`."""
        self._enqueue(outgoing.packet_out(port, data, in_port))


class SentMods:
    """Flow mods queued on a connection, and the barrier queued behind them."""

    def __init__(self, conn: SwitchConnection) -> None:
        self.conn = conn
        self.mods: dict[int, FlowMod] = {}  # by xid
        self.barrier: tuple[int, asyncio.Future[Any]] | None = None

    @classmethod
    async def queue(cls, conn: SwitchConnection, mods: Sequence[FlowMod]) -> SentMods:
        """Queue `mods` on `conn`, each watched for an error, and a barrier behind them
        (`SwitchConnection.queue_flow_mods`)."""
        encoded = []
        for start in range(0, len(mods), SLICE):
            if start:
                await asyncio.sleep(0)  # let the loop run (module doc: Sending)
            encoded += [encode_flow_mod(mod) for mod in mods[start : start + SLICE]]
        sent = cls(conn)
        try:
            for n, (mod, msg) in enumerate(zip(mods, encoded, strict=True)):
                if n and not n % SLICE:
                    await asyncio.sleep(0)
                xid = conn._next_xid()
                sent.mods[xid] = mod
                conn._replies.watch(xid)  # before it can be answered
                await conn._enqueue_waiting(msg, xid)
            sent.barrier = conn._expect(outgoing.barrier_request(), incoming.BarrierReply)
        except BaseException:
            sent.settle()
            raise
        return sent

    async def confirmed(self, timeout: float | None = None) -> None:
        """Wait for the barrier; FlowModsFailed if the switch refused any of the mods,
        TimeoutError if it did not answer in `timeout` (default `reply_timeout`)."""
        assert self.barrier is not None
        try:
            async with asyncio.timeout(self.conn._timeout(timeout)):
                await self.barrier[1]
        finally:
            failures = self.settle()
        if failures:
            raise FlowModsFailed(failures)

    def settle(self) -> list[tuple[FlowMod, ErrorMsg]]:
        """Stop listening for the mods' errors and the barrier; the errors heard."""
        replies = self.conn._replies
        if self.barrier is not None:
            replies.forget(self.barrier[0])
        errors = {xid: replies.unwatch(xid) for xid in self.mods}
        return [(self.mods[xid], err) for xid, err in errors.items() if err is not None]
