"""The OVSDB client: follows one server on the event loop, hands on a snapshot per update.

`OvsdbMonitor.run` connects (`unix:PATH`, `tcp:HOST:PORT`, or `ssl:HOST:PORT`
with the `tls` context it is given), asks for the
columns vportd reads with `monitor_cond` (update2 diffs), and hands on a
`Snapshot` after every read that changed them. The client is our own, not the
ovs library's IDL: the IDL parses JSON in pure Python and turns every column
of every row into `Datum` objects, where this one decodes with the C `json`
and keeps plain values (`wire`). It runs on the event loop rather than a
thread per server: a controller follows many hypervisors' servers, and
threads would fight the loop for the GIL. Monitors that share an `admit`
semaphore connect and read their first dump a few at a time.

When the server cannot be reached or a session ends, the monitor tries again
after a `Backoff`: exponential with jitter, from `RETRY_FIRST` up to
`RETRY_CAP` seconds, back to the start once a session got its monitor reply.
It warns on the first failure, when the reason changes, and every
`WARN_EVERY` failed attempts; the others are logged at debug level.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, NoReturn

from vportd.southbound.ovsdb.mirror import Mirror
from vportd.southbound.ovsdb.snapshot import Snapshot
from vportd.southbound.ovsdb.wire import (
    COLUMNS,
    TABLES,
    Framer,
    OvsdbError,
    Rows,
    modify_row,
    new_row,
)

log = logging.getLogger("vportd.ovsdb")

RETRY_FIRST = 0.1  # s before the first attempt to reconnect
RETRY_CAP = 8.0  # s, the longest wait between two attempts
WARN_EVERY = 20  # failed attempts between two warnings for the same reason
CONNECT_TIMEOUT = 1.0  # s for a TCP connection to be accepted
HANDSHAKE_TIMEOUT = 5.0  # s for the TLS handshake of an ssl: remote
PROBE = 5.0  # s without a message before we send an echo; twice that: the link is dead
RECV = 1 << 18  # bytes per read
_MONITOR_ID = "vportd-monitor"

Sleep = Callable[[float], Awaitable[None]]
Pace = Callable[[], AbstractAsyncContextManager[None]]  # held around a read's work
OnSnapshot = Callable[[Snapshot], Awaitable[None] | None]


def _unpaced() -> AbstractAsyncContextManager[None]:
    return contextlib.nullcontext()


class Backoff:
    """Waits that double from `first` up to `cap`, each cut by a random part of up to half.

    The jitter spreads the attempts of the controllers that lost the same server.
    """

    def __init__(
        self,
        first: float = RETRY_FIRST,
        cap: float = RETRY_CAP,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.first, self.cap = first, cap
        self._rand = rand
        self._next = first

    def delay(self) -> float:
        """The next wait, in seconds."""
        nominal = self._next
        self._next = min(2 * nominal, self.cap)
        return nominal * (1 - self._rand() / 2)

    def reset(self) -> None:
        self._next = self.first


class _Outage:
    """The failed attempts since the server last answered, and what to log of them."""

    def __init__(self, remote: str) -> None:
        self.remote = remote
        self.failures = 0
        self.reason: str | None = None

    def failed(self, reason: str, delay: float) -> None:
        self.failures += 1
        level = logging.DEBUG
        if self.failures == 1 or reason != self.reason or not self.failures % WARN_EVERY:
            level = logging.WARNING
        self.reason = reason
        log.log(level, "OVSDB %s: %s; %d failed attempt(s), next in %.1f s",
                self.remote, reason, self.failures, delay)  # fmt: skip

    def ended(self) -> None:
        if self.failures:
            log.info("OVSDB %s: monitoring again after %d failed attempt(s)",
                     self.remote, self.failures)  # fmt: skip
        self.failures, self.reason = 0, None


class OvsdbMonitor:
    """Follows one OVSDB server on the event loop; `on_snapshot` gets each snapshot.

    `sleep` waits between attempts (a test drives it), `backoff` says how long;
    `tls` is the context of an `ssl:` remote (a failed handshake is a failed attempt).
    """

    def __init__(
        self,
        remote: str,
        on_snapshot: OnSnapshot,
        *,
        sleep: Sleep = asyncio.sleep,
        backoff: Backoff | None = None,
        pace: Pace = _unpaced,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.remote = remote
        self.on_snapshot = on_snapshot
        self.pace = pace
        self.tls = tls
        self._sleep = sleep
        self._backoff = Backoff() if backoff is None else backoff
        self._outage = _Outage(remote)
        self.live = False  # a session is open and monitoring (for `vportd_ovsdb_sessions`)
        # Shared by monitors that may not all connect at once: held from an attempt's
        # connect until the server's first dump is in (or the attempt failed).
        self.admit: asyncio.Semaphore | None = None
        self._admitted: asyncio.Semaphore | None = None

    async def run(self) -> NoReturn:
        """Sessions one after the other until cancelled; the mirror outlives them."""
        mirror = Mirror()
        while True:
            reason = await self._session(mirror)
            self.live = False
            delay = self._backoff.delay()
            self._outage.failed(reason, delay)
            await self._sleep(delay)

    async def _session(self, mirror: Mirror) -> str:
        """An attempt, admitted by `admit` (if shared) for its connect and first dump."""
        if self.admit is not None:
            await self.admit.acquire()
            self._admitted = self.admit
        try:
            return await self._attempt(mirror)
        finally:
            self._let_go()

    def _let_go(self) -> None:
        if self._admitted is not None:
            self._admitted.release()
            self._admitted = None

    async def _attempt(self, mirror: Mirror) -> str:
        """Connect and follow the server until the session fails; why it did."""
        try:
            reader, writer = await _open(self.remote, self.tls)
        except OSError as err:
            return f"not reachable ({_describe(err)})"
        try:
            session = _Session(reader, writer, mirror, self.on_snapshot, self._monitoring)
            await session.run(self.pace)
        except (OSError, OvsdbError) as err:
            return _describe(err)
        finally:
            writer.close()

    def _monitoring(self) -> None:
        """A session got its monitor reply: the server is back."""
        self._let_go()
        self.live = True
        self._backoff.reset()
        self._outage.ended()


def _describe(err: Exception) -> str:
    return str(err) or type(err).__name__


async def _open(
    remote: str, tls: ssl.SSLContext | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to `unix:PATH`, `tcp:HOST:PORT` or `ssl:HOST:PORT` (with `tls`)."""
    kind, _, where = remote.partition(":")
    host, _, port = where.rpartition(":")
    if kind == "unix":
        return await asyncio.open_unix_connection(where)
    if kind not in ("tcp", "ssl") or not port.isdigit():
        raise OSError(f"unsupported OVSDB remote {remote!r} (unix:PATH, tcp:HOST:PORT, ssl:...)")
    if kind == "ssl" and tls is None:
        raise OSError(f"{remote}: an ssl: remote needs the controller's [tls]")
    host = host.strip("[]")
    async with asyncio.timeout(CONNECT_TIMEOUT):
        reader, writer = await asyncio.open_connection(host, int(port))
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if kind == "ssl" and tls is not None:
        await _secure(writer, tls, host)
    return reader, writer


async def _secure(writer: asyncio.StreamWriter, tls: ssl.SSLContext, host: str) -> None:
    """The TLS handshake on a new connection, which is closed if it fails."""
    try:
        await writer.start_tls(tls, server_hostname=host, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
    except BaseException:
        writer.transport.abort()
        raise


class _Session:
    """One connection: monitor the columns, keep the tables, answer echoes, hand over snapshots."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        mirror: Mirror,
        hand_over: OnSnapshot,
        monitoring: Callable[[], None],
    ) -> None:
        self.reader, self.writer = reader, writer
        self.mirror = mirror
        self.hand_over = hand_over
        self.on_monitoring = monitoring
        self.framer = Framer()
        self.tables: dict[str, Rows] = {t: {} for t in TABLES}
        self.monitoring = False
        self.heard = time.monotonic()
        self.probed = False

    async def run(self, pace: Pace) -> NoReturn:
        """`pace`: taken around each read's work (the runtime's one bulk slice per turn)."""
        request = {t: [{"columns": list(c)}] for t, c in COLUMNS.items()}
        self._send({"id": _MONITOR_ID, "method": "monitor_cond",
                    "params": ["Open_vSwitch", None, request]})  # fmt: skip
        while True:
            data = await self._receive()
            async with pace():
                snapshot = self._read(data)
            if snapshot is not None:
                handed = self.hand_over(snapshot)
                if handed is not None:
                    await handed  # (a consumer that takes its time: the runtime's slices)
            self._keep_alive()
            await self.writer.drain()
            # A read of data already buffered does not yield: let timers and the other
            # servers' sessions run between two updates (a boot storm's come back to back).
            await asyncio.sleep(0)

    async def _receive(self) -> bytes:
        try:
            async with asyncio.timeout(PROBE):
                data = await self.reader.read(RECV)
        except TimeoutError:
            return b""
        if not data:
            raise OvsdbError("connection closed by the server")
        self.heard, self.probed = time.monotonic(), False
        return data

    def _read(self, data: bytes) -> Snapshot | None:
        """Act on what came; one snapshot however many updates it brought, if they changed
        the tables. What the server sent but we cannot read ends the session."""
        try:
            changed = False
            for message in self.framer.feed(data):
                changed |= self._handle(message)
            if changed and self.monitoring:
                return self.mirror.snapshot(self.tables)
        except (AttributeError, LookupError, TypeError, ValueError) as err:
            raise OvsdbError(f"unreadable message from the server: {err!r}") from err
        return None

    def _keep_alive(self) -> None:
        """An echo after PROBE s of silence; no answer within another PROBE: the link is dead."""
        silent = time.monotonic() - self.heard
        if silent > 2 * PROBE:
            raise OvsdbError(f"no message for {silent:.0f} s")
        if silent > PROBE and not self.probed:
            self._send({"id": "vportd-echo", "method": "echo", "params": []})
            self.probed = True

    def _send(self, message: dict[str, Any]) -> None:
        self.writer.write(json.dumps(message).encode())

    def _handle(self, message: Any) -> bool:
        """Act on one message; whether the tables changed."""
        if not isinstance(message, dict):
            raise OvsdbError(f"not a JSON-RPC message: {str(message)[:200]}")
        method = message.get("method")
        if method == "echo":
            self._send({"id": message.get("id"), "result": message.get("params"), "error": None})
        elif method == "update2" and self.monitoring:
            self._apply(message["params"][1])
            return True
        elif message.get("id") == _MONITOR_ID:
            return self._monitored(message)
        return False

    def _monitored(self, reply: dict[str, Any]) -> bool:
        """The monitor's reply: every row, replacing whatever an earlier session showed."""
        if reply.get("error") is not None:
            raise OvsdbError(f"monitor_cond refused: {reply['error']}")
        self.monitoring = True
        self._apply(reply["result"])
        self.on_monitoring()
        return True

    def _apply(self, updates: dict[str, dict[str, dict[str, Any]]]) -> None:
        """Apply table-updates2 to the tables, noticing every row they touch."""
        for table, rows in updates.items():
            known = self.tables.get(table)
            if known is None:
                continue
            for uuid, update in rows.items():
                self.mirror.notice(uuid, table)
                ((op, columns),) = update.items()
                if op in ("initial", "insert"):
                    known[uuid] = new_row(table, columns)
                elif op == "modify" and uuid in known:
                    modify_row(table, known[uuid], columns)
                elif op == "delete":
                    known.pop(uuid, None)
