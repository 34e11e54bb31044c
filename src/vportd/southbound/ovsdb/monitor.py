"""The OVSDB client: follows one server on the event loop, hands on a snapshot per update.

`OvsdbMonitor.run` connects (`unix:PATH` or `tcp:HOST:PORT`), asks for the
columns vportd reads with `monitor_cond` (update2 diffs), and hands on a
`Snapshot` after every read that changed them. The client is our own, not the
ovs library's IDL: the IDL parses JSON in pure Python and turns every column
of every row into `Datum` objects, where this one decodes with the C `json`
and keeps plain values (`wire`). It runs on the event loop rather than a
thread per server: a controller follows every hypervisor's server, and
threads would fight the loop for the GIL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Callable
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

RETRY = 1.0  # s between connection attempts
PROBE = 5.0  # s without a message before we send an echo; twice that: the link is dead
RECV = 1 << 18  # bytes per read
_MONITOR_ID = "vportd-monitor"


class OvsdbMonitor:
    """Follows one OVSDB server on the event loop; `on_snapshot` gets each snapshot."""

    def __init__(self, remote: str, on_snapshot: Callable[[Snapshot], None]) -> None:
        self.remote = remote
        self.on_snapshot = on_snapshot

    async def run(self) -> NoReturn:
        """Sessions one after the other until cancelled; the mirror outlives them."""
        mirror = Mirror()
        while True:
            try:
                reader, writer = await _open(self.remote)
            except OSError as err:
                log.warning("OVSDB %s not reachable (%s); retrying", self.remote, err)
                await asyncio.sleep(RETRY)
                continue
            try:
                await _Session(reader, writer, mirror, self.on_snapshot).run()
            except (OSError, OvsdbError) as err:
                log.warning("OVSDB %s: %s; reconnecting", self.remote, err)
                await asyncio.sleep(RETRY)
            finally:
                writer.close()


async def _open(remote: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to `unix:PATH` or `tcp:HOST:PORT`."""
    kind, _, where = remote.partition(":")
    if kind == "unix":
        return await asyncio.open_unix_connection(where)
    if kind == "tcp":
        host, _, port = where.rpartition(":")
        async with asyncio.timeout(RETRY):
            reader, writer = await asyncio.open_connection(host.strip("[]"), int(port))
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer
    raise OSError(f"unsupported OVSDB remote {remote!r} (unix:PATH or tcp:HOST:PORT)")


class _Session:
    """One connection: monitor the columns, keep the tables, answer echoes, hand over snapshots."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        mirror: Mirror,
        hand_over: Callable[[Snapshot], None],
    ) -> None:
        self.reader, self.writer = reader, writer
        self.mirror = mirror
        self.hand_over = hand_over
        self.framer = Framer()
        self.tables: dict[str, Rows] = {t: {} for t in TABLES}
        self.monitoring = False
        self.heard = time.monotonic()
        self.probed = False

    async def run(self) -> NoReturn:
        request = {t: [{"columns": list(c)}] for t, c in COLUMNS.items()}
        self._send({"id": _MONITOR_ID, "method": "monitor_cond",
                    "params": ["Open_vSwitch", None, request]})  # fmt: skip
        while True:
            changed = False
            for message in await self._receive():
                changed |= self._handle(message)
            if changed and self.monitoring:
                # One snapshot per read, however many updates it brought.
                self.hand_over(self.mirror.snapshot(self.tables))
            self._keep_alive()
            await self.writer.drain()
            # A read of data already buffered does not yield: let timers and the other
            # servers' sessions run between two updates (a boot storm's come back to back).
            await asyncio.sleep(0)

    async def _receive(self) -> list[Any]:
        try:
            async with asyncio.timeout(PROBE):
                data = await self.reader.read(RECV)
        except TimeoutError:
            return []
        if not data:
            raise OvsdbError("connection closed by the server")
        self.heard, self.probed = time.monotonic(), False
        return self.framer.feed(data)

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
