"""The OVSDB monitor reconnecting: waits that grow and start again, warnings without a flood.

The monitor connects to a loopback port of ours: bound but not listening
(refused), or served by a small fake ovsdb-server. Its waits go through an
injected `sleep` that records them, changes the server between attempts, and
ends the run; no test waits for real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from vportd.southbound.ovsdb.monitor import RETRY_CAP, RETRY_FIRST, WARN_EVERY, OvsdbMonitor
from vportd.southbound.ovsdb.snapshot import Snapshot

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
MONITOR_REPLY: dict[str, object] = {"id": "vportd-monitor", "result": {}, "error": None}


class Stop(Exception):
    """Raised by the fake sleep to end the monitor's run."""


@pytest.fixture
def port() -> Iterator[int]:
    """A loopback port held for the test: refused until a fake server listens on it too."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", 0))  # bound, never listening: it takes no connection
        yield int(sock.getsockname()[1])


def remote(port: int) -> str:
    return f"tcp:127.0.0.1:{port}"


async def read_request(reader: asyncio.StreamReader) -> None:
    """Read the monitor's request whole, so that closing after it sends no reset."""
    data = b""
    while not data.endswith(b"}"):
        chunk = await reader.read(4096)
        if not chunk:
            return
        data += chunk


async def answer_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(json.dumps(MONITOR_REPLY).encode())
    await writer.drain()
    writer.close()


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.close()


class Switchboard:
    """Which fake server listens on the port, changed from the monitor's sleep."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server: asyncio.Server | None = None

    async def serve(self, serve: Serve) -> None:
        await self.refuse()
        self.server = await asyncio.start_server(serve, "127.0.0.1", self.port, reuse_port=True)

    async def refuse(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None


@contextlib.asynccontextmanager
async def switchboard(port: int) -> AsyncIterator[Switchboard]:
    board = Switchboard(port)
    try:
        yield board
    finally:
        await board.refuse()


def nominal(attempt: int) -> float:
    """The wait before attempt + 1 of a streak (attempt counts from 0), without jitter."""
    return float(min(RETRY_FIRST * 2**attempt, RETRY_CAP))


async def test_waits_double_up_to_the_cap_and_start_again_once_the_server_answered(
    port: int,
) -> None:
    down, again = 10, 3
    waits: list[float] = []
    seen: list[Snapshot] = []
    async with switchboard(port) as board:

        async def sleep(delay: float) -> None:
            waits.append(delay)
            if len(waits) == down:  # it answers the monitor, then hangs up
                await board.serve(answer_then_hang_up)
            elif len(waits) == down + 1:
                await board.refuse()
            elif len(waits) == down + 1 + again:
                raise Stop

        with pytest.raises(Stop):
            await OvsdbMonitor(remote(port), seen.append, sleep=sleep).run()

    want = [nominal(n) for n in range(down)] + [nominal(n) for n in range(1 + again)]
    assert len(waits) == len(want)
    for got, top in zip(waits, want, strict=True):  # jitter: up to half of it off
        assert top / 2 <= got <= top, (waits, want)
    assert waits[down - 1] >= RETRY_CAP / 2 and waits[down] <= RETRY_FIRST
    assert len(seen) == 1 and seen[0].ifaces == {}  # the one session's (empty) database


async def test_the_first_failure_warns_then_only_a_new_reason_or_every_n_attempts(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    refused = 2 * WARN_EVERY + 2
    attempts: list[float] = []
    async with switchboard(port) as board:

        async def sleep(delay: float) -> None:
            attempts.append(delay)
            if len(attempts) == refused:  # now a server that hangs up without an answer
                await board.serve(hang_up)
            elif len(attempts) == refused + 3:
                raise Stop

        caplog.set_level(logging.DEBUG, logger="vportd.ovsdb")
        with pytest.raises(Stop):
            await OvsdbMonitor(remote(port), lambda snap: None, sleep=sleep).run()

    records = [r for r in caplog.records if r.name == "vportd.ovsdb"]
    assert len(records) == refused + 3  # one line per failed attempt
    warned = [(n, r.getMessage()) for n, r in enumerate(records, 1) if r.levelno >= logging.WARNING]
    assert [n for n, _ in warned] == [1, WARN_EVERY, 2 * WARN_EVERY, refused + 1]
    assert all(remote(port) in text for _, text in warned)
    assert all("not reachable" in text for _, text in warned[:3])
    assert "connection closed by the server" in warned[3][1]
    assert f"{2 * WARN_EVERY} failed attempt(s)" in warned[2][1]


async def test_a_server_back_after_an_outage_is_logged_once(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    waits: list[float] = []
    async with switchboard(port) as board:

        async def sleep(delay: float) -> None:
            waits.append(delay)
            if len(waits) == 3:
                await board.serve(answer_then_hang_up)
            elif len(waits) == 4:
                raise Stop

        caplog.set_level(logging.INFO, logger="vportd.ovsdb")
        with pytest.raises(Stop):
            await OvsdbMonitor(remote(port), lambda snap: None, sleep=sleep).run()

    back = [r.getMessage() for r in caplog.records if "monitoring again" in r.getMessage()]
    assert back == [f"OVSDB {remote(port)}: monitoring again after 3 failed attempt(s)"]


async def test_a_server_that_sends_what_is_not_ovsdb_is_reconnected_to(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A malformed update ends the session with a warning, not the monitor (or the daemon)."""
    bad: dict[str, object] = {
        "id": "vportd-monitor",
        "result": {"Interface": {"u1": {}}},
        "error": None,
    }

    async def answer_badly(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(json.dumps(bad).encode())
        await writer.drain()

    waits: list[float] = []
    async with switchboard(port) as board:
        await board.serve(answer_badly)

        async def sleep(delay: float) -> None:
            waits.append(delay)
            if len(waits) == 2:
                raise Stop

        with pytest.raises(Stop):
            await OvsdbMonitor(remote(port), lambda snap: None, sleep=sleep).run()

    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1 and "unreadable message from the server" in warned[0]


async def test_a_session_is_live_from_its_monitor_reply_until_it_ends(port: int) -> None:
    """`live` (the `vportd_ovsdb_sessions` gauge's source) follows the session, not attempts."""
    seen: list[tuple[str, bool]] = []
    async with switchboard(port) as board:
        monitor: OvsdbMonitor

        async def sleep(delay: float) -> None:
            seen.append(("waiting", monitor.live))
            if len(seen) == 1:
                await board.serve(answer_then_hang_up)
            elif sum(what == "waiting" for what, _ in seen) == 2:
                raise Stop

        def on_snapshot(snap: Snapshot) -> None:
            seen.append(("snapshot", monitor.live))

        monitor = OvsdbMonitor(remote(port), on_snapshot, sleep=sleep)
        with pytest.raises(Stop):
            await monitor.run()

    assert seen == [("waiting", False), ("snapshot", True), ("waiting", False)]
