"""The OpenFlow 1.3 endpoint: asyncio, with the os-ken codec (through `ofcodec`) only.

`OpenFlowServer.serve` accepts switch connections and runs each as a
`SwitchConnection`, every one a task of the server's `asyncio.TaskGroup`. A
connection's failure ends that connection only.

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
thousands of ports). The switch's own echo requests are answered.

Replies: a barrier, flow dump or role request not answered within
`reply_timeout` seconds fails with TimeoutError (the caller closes the switch,
and reconnecting reconciles it). It bounds the switch's work on everything
queued before the request, so it is long: thousands of flow mods behind a
barrier take ovs-vswitchd seconds while it is busy with a boot storm.

Sending: messages go through a bounded queue drained by a writer task, so the
core never waits on a socket. `send` never blocks: a full queue means the
switch has stopped reading and the connection is closed as stuck. Bulk sends
(`send_flow_mods`, `delete_foreign`) wait for room instead, up to
`echo_interval * echo_misses` seconds without progress, then close as stuck;
they encode in slices of 64 and let the event loop run between them (encoding tens
of thousands of flow mods with os-ken takes seconds: the loop's other work,
the etcd lease keepalive first, must not wait for it).

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
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

from vportd.core.flow import Flow, FlowMod
from vportd.southbound import ofcodec as oc
from vportd.southbound.ofcodec import ErrorMsg, ForeignFlow, PortInfo, PortReason, Role

LOG = logging.getLogger("vportd.openflow")
# Flow mods encoded or queued between two looks at the event loop: ~5 ms each, and a
# reconcile runs one such task per switch at once (all of them go before the loop's timers).
SLICE = 64
READ_SLICE = 16  # messages read between two looks (a flow-stats part decodes in ~50 ms)

R = TypeVar("R")


class SwitchHandler(Protocol):
    """What the daemon implements to hear from switches."""

    async def switch_connected(self, conn: SwitchConnection) -> None: ...

    def switch_disconnected(self, conn: SwitchConnection, reason: str) -> None: ...

    def port_status(self, conn: SwitchConnection, reason: PortReason, port: PortInfo) -> None: ...

    def packet_in(self, conn: SwitchConnection, in_port: int, data: bytes) -> None: ...


class SwitchClosed(ConnectionError):
    """The connection is closed (or closing); `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OpenFlowError(Exception):
    """The switch answered a request with an error, or with the wrong reply."""

    def __init__(self, text: str, error: ErrorMsg | None = None) -> None:
        super().__init__(text)
        self.error = error


class FlowModsFailed(OpenFlowError):
    """Some flow mods of a batch were refused by the switch."""

    def __init__(self, failures: list[tuple[FlowMod, ErrorMsg]]) -> None:
        first_mod, first = failures[0]
        super().__init__(
            f"{len(failures)} flow mod(s) failed, first {first_mod.command} "
            f"{first_mod.flow}: {first.describe()}",
            first,
        )
        self.failures = failures


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


@dataclass
class _Waiter:
    future: asyncio.Future[Any]
    expect: type
    parts: list[Any] = field(default_factory=list)


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
        self.n_tables = 0
        self.ports: dict[int, PortInfo] = {}
        self.connected = False  # switch_connected has been called
        self.close_reason: str | None = None
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(limits.send_queue)
        self._xid = 0
        self._negotiated = False
        self._hello = asyncio.Event()
        self._closed = asyncio.Event()
        self._stuck = False
        self._waiters: dict[int, _Waiter] = {}
        self._watched: dict[int, ErrorMsg | None] = {}  # flow mod xids -> their error
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
                self._spawn("reader", self._read_loop())
                self._spawn("writer", self._write_loop())
                self._spawn("connect", self._lifecycle())
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

    def _spawn(self, what: str, coro: Coroutine[Any, Any, None]) -> None:
        assert self._tg is not None
        self._tasks.append(self._tg.create_task(self._guard(what, coro)))

    async def _guard(self, what: str, coro: Coroutine[Any, Any, None]) -> None:
        """Run one of the connection's tasks: whatever it raises closes the connection."""
        try:
            await coro
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
        error = SwitchClosed(reason)
        for waiter in self._waiters.values():
            if not waiter.future.done():
                waiter.future.set_exception(error)
        self._waiters.clear()
        self._flush()
        self._closed.set()

    def _flush(self) -> None:
        """Empty the queue into the transport (unless stuck): what was said gets said
        (a HELLO_FAILED error, say), and senders waiting for room wake up."""
        queue, transport = self._queue, self._writer.transport
        while not queue.empty():
            data = queue.get_nowait()
            if not self._stuck and not transport.is_closing():
                transport.write(data)

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
        self._enqueue_bytes(oc.encode_hello())
        try:
            async with asyncio.timeout(self._limits.patience):
                await self._handshake()
        except TimeoutError:
            raise _Bad(f"handshake not complete within {self._limits.patience:g}s") from None
        self.connected = True
        LOG.info("openflow peer %s: switch %016x connected", self.peer, self.dpid)
        self._spawn("keepalive", self._keepalive())
        await self._handler.switch_connected(self)

    async def _handshake(self) -> None:
        await self._hello.wait()
        features = await self._request(oc.features_request(), oc.FeaturesReply, None)
        self.dpid, self.n_tables = features.dpid, features.n_tables
        self._enqueue(oc.set_async())
        await self._multipart(oc.port_desc_request(), oc.PortDescReply, None)  # sets ports

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
            self._enqueue(oc.echo_request())

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
                record = oc.decode_message(header, buf)
            except oc.CodecError as exc:
                raise _Bad(f"bad {oc.type_name(header.msg_type)} message: {exc}") from None
            self._dispatch(header, record)

    async def _read_message(self) -> tuple[oc.Header, bytes]:
        reader = self._reader
        try:
            head = await reader.readexactly(oc.HEADER_SIZE)
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                self.close("connection closed by the peer", level=logging.INFO)
                raise SwitchClosed("connection closed by the peer") from None
            raise _Bad(
                f"truncated message: {len(exc.partial)} of {oc.HEADER_SIZE} header bytes, "
                "then end of stream"
            ) from None
        header = oc.parse_header(head)
        self._check_header(header)
        try:
            body = await reader.readexactly(header.length - oc.HEADER_SIZE)
        except asyncio.IncompleteReadError as exc:
            got = oc.HEADER_SIZE + len(exc.partial)
            raise _Bad(
                f"truncated message: header says {header.length} bytes, "
                f"got {got} then end of stream"
            ) from None
        return header, head + body

    def _check_header(self, header: oc.Header) -> None:
        if header.length < oc.HEADER_SIZE:
            raise _Bad(f"bad header: length {header.length} < {oc.HEADER_SIZE}")
        if not self._negotiated:
            if header.msg_type != oc.OFPT_HELLO:
                raise _Bad(
                    f"expected HELLO, got version {header.version:#04x} type {header.msg_type}"
                )
        elif header.version != oc.OFP_VERSION:
            raise _Bad(f"unknown version {header.version:#04x} after negotiating OpenFlow 1.3")
        if header.length > self._limits.max_message:
            raise _Bad(
                f"message of {header.length} bytes exceeds max_message {self._limits.max_message}"
            )

    def _dispatch(self, header: oc.Header, record: oc.Incoming) -> None:
        match record:
            case oc.Hello():
                self._on_hello(header, record)
            case oc.EchoRequest(data=data):
                self._enqueue(oc.echo_reply(data), header.xid)
            case oc.EchoReply():
                pass  # (any message shows the switch alive: see _read_loop)
            case oc.PortStatus(reason=reason, port=port):
                self._on_port_status(reason, port)
            case oc.PacketIn(in_port=in_port, data=data):
                if self.connected:
                    self._tell("packet_in", self._handler.packet_in, in_port, data)
            case oc.ErrorMsg():
                self._on_error(header.xid, record)
            case oc.Unhandled(msg_type=msg_type):
                LOG.debug("openflow peer %s: ignored %s", self.peer, oc.type_name(msg_type))
            case _:
                self._on_reply(header.xid, record)

    def _on_hello(self, header: oc.Header, hello: oc.Hello) -> None:
        if self._negotiated:
            raise _Bad("a second HELLO")
        if not oc.negotiate(header.version, hello):
            offered = sorted(hello.versions) if hello.versions is not None else [header.version]
            text = f"OpenFlow 1.3 (wire version 4) only; the peer offers {offered}"
            self._enqueue(oc.hello_failed(text), header.xid)
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
        if xid in self._watched:
            self._watched[xid] = error
            return
        waiter = self._waiters.pop(xid, None)
        if waiter is not None:
            text = f"switch refused the request: {error.describe()}"
            waiter.future.set_exception(OpenFlowError(text, error))
            return
        LOG.warning("openflow peer %s: error from the switch: %s", self.peer, error.describe())

    def _on_reply(self, xid: int, record: oc.Incoming) -> None:
        waiter = self._waiters.get(xid)
        if waiter is None:
            LOG.debug("openflow peer %s: unsolicited %s", self.peer, type(record).__name__)
            return
        if not isinstance(record, waiter.expect):
            self._waiters.pop(xid)
            text = f"expected {waiter.expect.__name__}, got {type(record).__name__}"
            waiter.future.set_exception(OpenFlowError(text))
            return
        if isinstance(record, oc.PortDescReply | oc.FlowStatsReply):
            waiter.parts.append(record)
            if record.more:
                return
            if isinstance(record, oc.PortDescReply):  # in order with port status
                self.ports = {p.port_no: p for part in waiter.parts for p in part.ports}
            result: Any = waiter.parts
        else:
            result = record
        self._waiters.pop(xid)
        if not waiter.future.done():
            waiter.future.set_result(result)

    # -- writing ---------------------------------------------------------
    async def _write_loop(self) -> None:
        queue, writer = self._queue, self._writer
        while True:
            # What is queued leaves in one send: flow mods and their barrier in one
            # segment wake ovs-vswitchd once, not once per message.
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            writer.write(b"".join(batch))
            await writer.drain()

    def _next_xid(self) -> int:
        self._xid = self._xid % 0xFFFF_FFFF + 1
        return self._xid

    def _encode(self, msg: object, xid: int | None) -> tuple[bytes, int]:
        if isinstance(msg, bytes | bytearray):
            header = oc.parse_header(bytes(msg))
            if header.length != len(msg):
                raise ValueError(f"header says {header.length} bytes, message has {len(msg)}")
            return bytes(msg), header.xid
        xid = self._next_xid() if xid is None else xid
        return oc.serialize(msg, xid), xid

    def _check_open(self) -> None:
        if self.close_reason is not None:
            raise SwitchClosed(self.close_reason)

    def _enqueue(self, msg: object, xid: int | None = None) -> int:
        self._check_open()
        data, xid = self._encode(msg, xid)
        self._enqueue_bytes(data)
        return xid

    def _enqueue_bytes(self, data: bytes) -> None:
        try:
            self._queue.put_nowait(data)
        except asyncio.QueueFull:
            self._close_stuck()

    def _close_stuck(self) -> None:
        self._check_open()
        reason = f"send queue full ({self._queue.maxsize} messages): the switch is not reading"
        self._stuck = True
        self.close(reason)
        raise SwitchClosed(reason)

    async def _enqueue_waiting(self, msg: object, xid: int | None = None) -> int:
        """Like `_enqueue`, but wait for room (bounded: no room in time means stuck)."""
        self._check_open()
        data, xid = self._encode(msg, xid)
        if self._queue.full():
            try:
                async with asyncio.timeout(self._limits.patience):
                    await self._queue.put(data)
            except TimeoutError:
                self._close_stuck()
            self._check_open()
        else:
            self._queue.put_nowait(data)
        return xid

    async def send(self, msg: object) -> int:
        """Queue one message: an os-ken OpenFlow 1.3 message built on `ofcodec.DATAPATH`
        (given the next xid) or the bytes of one whole message. Returns its xid.

        Never waits: if the queue is full the switch is stuck and the connection
        is closed (SwitchClosed)."""
        return self._enqueue(msg)

    # -- requests --------------------------------------------------------
    async def _request_any(self, msg: object, expect: type, timeout: float | None) -> Any:
        xid = self._next_xid()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[xid] = _Waiter(future, expect)
        try:
            self._enqueue(msg, xid)
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self._waiters.pop(xid, None)

    async def _request(self, msg: object, expect: type[R], timeout: float | None) -> R:
        return cast(R, await self._request_any(msg, expect, timeout))

    async def _multipart(self, msg: object, expect: type[R], timeout: float | None) -> list[R]:
        return cast(list[R], await self._request_any(msg, expect, timeout))

    def _timeout(self, timeout: float | None) -> float:
        return self._limits.reply_timeout if timeout is None else timeout

    async def barrier(self, timeout: float | None = None) -> None:
        """Wait until the switch has processed every message sent before."""
        await self._request(oc.barrier_request(), oc.BarrierReply, self._timeout(timeout))

    async def send_flow_mods(self, mods: Sequence[FlowMod], timeout: float | None = None) -> None:
        """Send flow mods, then a barrier; FlowModsFailed if the switch refused any.

        All are encoded before any is sent (CodecError leaves the switch alone).
        `timeout` bounds the barrier (default `reply_timeout`)."""
        encoded = []
        for start in range(0, len(mods), SLICE):
            if start:
                await asyncio.sleep(0)  # let the loop run (module doc: Sending)
            encoded += [oc.encode_flow_mod(mod) for mod in mods[start : start + SLICE]]
        sent: dict[int, FlowMod] = {}
        try:
            for n, (mod, msg) in enumerate(zip(mods, encoded, strict=True)):
                if n and not n % SLICE:
                    await asyncio.sleep(0)
                xid = self._next_xid()
                sent[xid] = mod
                self._watched[xid] = None  # before it can be answered
                await self._enqueue_waiting(msg, xid)
            await self.barrier(timeout)
        finally:
            errors = {xid: self._watched.pop(xid, None) for xid in sent}
        failures = [(sent[xid], err) for xid, err in errors.items() if err is not None]
        if failures:
            raise FlowModsFailed(failures)

    async def read_ports(self, timeout: float | None = None) -> None:
        """Read the switch's ports again (`ports`): a slave is not told of port changes."""
        await self._multipart(oc.port_desc_request(), oc.PortDescReply, self._timeout(timeout))

    async def dump(self, timeout: float | None = None) -> FlowDump:
        """Every flow of every table, as core flows and foreign ones."""
        request = oc.flow_stats_request()
        parts = await self._multipart(request, oc.FlowStatsReply, self._timeout(timeout))
        flows = [f for part in parts for f in part.flows]
        return FlowDump(flows, [f for part in parts for f in part.foreign])

    async def dump_flows(self, timeout: float | None = None) -> list[Flow]:
        """The flows of every table that the core can stand for (see `dump` for the rest)."""
        dump = await self.dump(timeout)
        if dump.foreign:
            LOG.info(
                "openflow peer %s: %d foreign flow(s) left out of dump_flows, first: %s",
                self.peer, len(dump.foreign), dump.foreign[0].reason,
            )  # fmt: skip
        return dump.flows

    async def delete_foreign(
        self, flows: Iterable[ForeignFlow], timeout: float | None = None
    ) -> None:
        """Remove exactly those foreign flows (DELETE_STRICT on their raw match), then barrier."""
        for n, foreign in enumerate(flows):
            if n and not n % SLICE:
                await asyncio.sleep(0)
            await self._enqueue_waiting(oc.encode_delete_foreign(foreign))
        await self.barrier(timeout)

    async def role_request(
        self, role: Role | int, generation_id: int, timeout: float | None = None
    ) -> tuple[Role, int]:
        """Ask for a role (MASTER/SLAVE/EQUAL/NOCHANGE); the switch's answer.

        A stale generation id comes back as OpenFlowError (ROLE_REQUEST_FAILED/STALE)."""
        msg = oc.role_request(Role(role), generation_id)
        reply = await self._request(msg, oc.RoleReply, self._timeout(timeout))
        return reply.role, reply.generation_id

    async def packet_out(self, port: int, data: bytes, in_port: int = oc.OFPP_CONTROLLER) -> None:
        """Send one frame out of `port`."""
        self._enqueue(oc.packet_out(port, data, in_port))


class OpenFlowServer:
    """Listens for switches; `serve()` runs until cancelled.

    `port=0` binds a free port, recorded in `self.port`; `ready` is set once bound.
    `connections` holds the live connections.
    """

    def __init__(
        self,
        handler: SwitchHandler,
        host: str = "127.0.0.1",
        port: int = 6653,
        *,
        echo_interval: float = 2.0,
        echo_misses: int = 3,
        max_message: int = 65535,
        send_queue: int = 4096,
        reply_timeout: float = 10.0,
    ) -> None:
        if echo_interval <= 0 or echo_misses < 1 or max_message < oc.HEADER_SIZE or send_queue < 1:
            raise ValueError("echo_interval, echo_misses, max_message and send_queue must be > 0")
        if reply_timeout <= 0:
            raise ValueError("reply_timeout must be > 0")
        self.handler = handler
        self.host, self.port = host, port
        self.limits = Limits(echo_interval, echo_misses, max_message, send_queue, reply_timeout)
        self.connections: set[SwitchConnection] = set()
        self.ready = asyncio.Event()

    async def serve(self) -> None:
        async with asyncio.TaskGroup() as tg:
            server = await asyncio.start_server(
                lambda r, w: self._accept(tg, r, w), self.host, self.port
            )
            try:
                self.port = int(server.sockets[0].getsockname()[1])
                LOG.info("openflow: listening on %s:%d", self.host, self.port)
                self.ready.set()
                await asyncio.Event().wait()  # until cancelled
            finally:
                self.ready.clear()
                server.close()

    def _accept(
        self, tg: asyncio.TaskGroup, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        conn = SwitchConnection(reader, writer, self.handler, self.limits)
        coro = self._run(conn)
        try:
            tg.create_task(coro)
        except RuntimeError:  # the group is shutting down
            coro.close()
            writer.transport.abort()
            return
        self.connections.add(conn)
        LOG.info("openflow peer %s: connected", conn.peer)

    async def _run(self, conn: SwitchConnection) -> None:
        try:
            await conn.run()
        except Exception:
            LOG.exception("openflow peer %s: connection failed", conn.peer)
        finally:
            self.connections.discard(conn)
