"""Sessions by mastership, on fake OVSDB servers: every server is read once, however few
may be read at once, and a server no longer wanted is closed and said so."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from contextlib import AsyncExitStack

from tests.fakes.ovsdb import FakeOvsdb
from vportd.node.sessions import Sessions
from vportd.southbound.ovsdb.monitor import Backoff, OvsdbMonitor
from vportd.southbound.ovsdb.snapshot import Snapshot

WAIT = 10.0


def refused() -> str:
    """A loopback remote nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"tcp:127.0.0.1:{sock.getsockname()[1]}"


async def until(done: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not done():
            await asyncio.sleep(0.01)


async def test_every_server_is_read_one_at_a_time_and_closed_when_not_wanted() -> None:
    closed: list[str] = []
    async with AsyncExitStack() as stack:
        dbs = [await stack.enter_async_context(FakeOvsdb()) for _ in range(3)]
        for n, db in enumerate(dbs):
            db.add_bridge(f"hv{n}", n + 1)
        remotes = [refused(), *(db.remote for db in dbs)]  # (the first one never answers)

        def monitor(remote: str) -> OvsdbMonitor:
            def seen(snap: Snapshot) -> None:
                sessions.saw(remote, snap.bridges)

            return OvsdbMonitor(remote, seen, backoff=Backoff(0.001, 0.01))

        sessions = Sessions([monitor(r) for r in remotes], closed.append, admit=1)
        task = asyncio.create_task(sessions.run())
        try:
            await until(lambda: sessions.live == 3)
            assert sessions.switches() == {"hv0", "hv1", "hv2"}
            assert sessions.serving("hv1") == dbs[1].remote
            sessions.want({"hv1"})  # (and the server whose switches are still unknown)
            await until(lambda: len(closed) == 2)
            assert sorted(closed) == sorted([dbs[0].remote, dbs[2].remote])
            assert sessions.live == 1 and sessions.following(dbs[1].remote)
            assert sessions.following(remotes[0])  # still to be read
        finally:
            task.cancel()
            await asyncio.wait([task])
