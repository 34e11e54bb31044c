"""A scripted OVSDB server for the fuzzer, and the real messages its scripts start from.

`capture` records what `FakeOvsdb` sends a monitor that asks what vportd's
asks: the monitor reply (the clean state) and the update2 notifications of
a series of changes (the seeds of the mutations).

`ScriptedOvsdb` waits for a client's `monitor_cond`; then, while a `driver`
is set (`drive`), hands the connection to it (it answers as it likes:
`Conn.send`, `Conn.probe`), and while none is, answers with the clean state
and nothing more, as a well-behaved server with a quiet database would.
`Conn.probe` sends an echo request of the server's own and tells whether
the client answered it, or ended the session first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from tests.fakes.ovsdb import FakeOvsdb
from vportd.southbound.ovsdb.wire import COLUMNS, Framer, OvsdbError

PATIENCE = 10.0  # for a client to answer or to hang up: generous, never a threshold
Json = Any


class Conn:
    """One client connection of the scripted server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.heard: asyncio.Queue[Json | None] = asyncio.Queue()
        self.ended = False
        self.hung_up = False
        self._probes = 0

    async def read(self) -> None:
        """Every message the client sends, into `heard`; None at its end of stream."""
        framer = Framer()
        with contextlib.suppress(ConnectionError, OvsdbError):
            while data := await self.reader.read(1 << 16):
                for message in framer.feed(data):
                    self.heard.put_nowait(message)
        self.heard.put_nowait(None)

    def send(self, data: bytes | Json) -> None:
        raw = data if isinstance(data, bytes) else json.dumps(data).encode()
        if not self.writer.is_closing() and not self.hung_up:
            self.writer.write(raw)

    def hang_up(self) -> None:
        """Shut the server's side (what was sent still arrives)."""
        if not self.writer.is_closing() and not self.hung_up:
            with contextlib.suppress(OSError):  # the client may have gone already
                self.writer.write_eof()
        self.hung_up = True

    async def next(self, want: Callable[[Json], bool]) -> Json | None:
        """The client's next message that `want`s; None once it ended the session."""
        if self.ended:
            return None
        async with asyncio.timeout(PATIENCE):
            while (message := await self.heard.get()) is not None:
                if isinstance(message, dict) and want(message):
                    return message
        self.ended = True
        return None

    async def probe(self) -> bool | None:
        """An echo request: True once answered, False if the session ended first, None if
        neither happened within PATIENCE (the client is stuck)."""
        self._probes += 1
        ident = f"fuzz-probe-{self._probes}"
        self.send({"id": ident, "method": "echo", "params": [ident]})
        try:
            return await self.next(lambda m: m.get("id") == ident) is not None
        except TimeoutError:
            return None

    def abort(self) -> None:
        self.writer.transport.abort()


Driver = Callable[[Conn, Json], Awaitable[None]]


class ScriptedOvsdb:
    """The server (module docstring). `async with ScriptedOvsdb(reply) as db`."""

    def __init__(self, reply: Json) -> None:
        self.reply = reply  # the monitor reply's `result`: the clean state
        self.driver: Driver | None = None
        self.clean_sessions = 0  # sessions answered with the clean state and left alone
        self.port = 0
        self._conns: set[Conn] = set()
        self._server: asyncio.Server | None = None
        self._tg_open = True
        self._tg: asyncio.TaskGroup | None = None
        self._changed = asyncio.Event()

    @property
    def remote(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    async def __aenter__(self) -> ScriptedOvsdb:
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None and self._tg is not None
        self._server.close()
        self._tg_open = False
        for conn in list(self._conns):
            conn.abort()
        await self._tg.__aexit__(kind, exc, tb)

    def drive(self, driver: Driver | None) -> None:
        """From now on hand sessions to `driver` (None: serve the clean state); end the
        sessions of the moment."""
        self.driver = driver
        for conn in list(self._conns):
            conn.abort()

    async def until_clean_sessions(self, count: int) -> None:
        async with asyncio.timeout(PATIENCE):
            while self.clean_sessions < count:
                await self._changed.wait()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._tg is not None
        if not self._tg_open:  # accepted as the server closes: its task group is ending
            writer.transport.abort()
            return
        conn = Conn(reader, writer)
        self._conns.add(conn)
        self._tg.create_task(self._serve(conn))

    async def _serve(self, conn: Conn) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                reading = tg.create_task(conn.read())
                with contextlib.suppress(TimeoutError, OSError):
                    await self._session(conn)
                await asyncio.wait([reading])  # until the client hangs up
        finally:
            conn.abort()
            self._conns.discard(conn)

    async def _session(self, conn: Conn) -> None:
        request = await conn.next(lambda m: m.get("method") == "monitor_cond")
        if request is None:
            return
        driver = self.driver
        if driver is not None:
            await driver(conn, request)
            return
        conn.send({"id": request.get("id"), "result": self.reply, "error": None})
        self.clean_sessions += 1
        self._changed.set()
        self._changed = asyncio.Event()


# -- the seeds -------------------------------------------------------------------------------
MONITOR_ID = "capture"


async def _read_one(reader: asyncio.StreamReader, framer: Framer) -> list[Json]:
    async with asyncio.timeout(PATIENCE):
        while not (messages := framer.feed(await reader.read(1 << 16))):
            pass
    return messages


async def capture(db: FakeOvsdb, changes: list[Callable[[], None]]) -> tuple[Json, list[Json]]:
    """The monitor reply's result for what vportd monitors, and the notifications that
    `changes` (each one transaction of `db`) bring."""
    reader, writer = await asyncio.open_connection(db.host, db.port)
    framer = Framer()
    request = {t: [{"columns": list(c)}] for t, c in COLUMNS.items()}
    writer.write(json.dumps(
        {"id": MONITOR_ID, "method": "monitor_cond", "params": ["Open_vSwitch", None, request]}
    ).encode())  # fmt: skip
    (reply,) = await _read_one(reader, framer)
    updates = []
    for change in changes:
        change()
        updates += await _read_one(reader, framer)
    writer.close()
    return reply["result"], updates
