"""The OVSDB monitor fuzzed by a scripted server, through a real runtime's feed.

A solo `Runtime` follows one OVSDB server, `ScriptedOvsdb`, whose driver
answers each of the monitor's sessions with the clean state (sometimes a
mutated monitor reply instead), then sends mutations of real update2
notifications, echo requests and monitor replies (`ovsdbmutate`), with
now and then a valid notification between them (so that the tables move
under the mutations), each followed by an echo request of its own: answered,
the session took the mutation; the end of the stream, the monitor ended
the session (it reconnects at once: a short backoff). Checked: the monitor
answers or ends the session for every mutation (none leaves it stuck), it
logs why it ended each session, nothing is logged with a traceback, the
runtime runs on; and once the server serves the clean state again, the
monitor's snapshot is what a new monitor reads from it and the vPort table
is what the clean state says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.fakes.ovsdb import FakeOvsdb
from tests.fakes.solo import solo_runtime
from tests.fuzz.budget import budget, report, seed
from tests.fuzz.ovsdbmutate import frame, mutate
from tests.fuzz.ovsdbserver import Conn, ScriptedOvsdb, capture
from vportd.node.runtime import Runtime
from vportd.southbound.ovsdb.monitor import Backoff, OnSnapshot, OvsdbMonitor
from vportd.southbound.ovsdb.snapshot import Snapshot

pytestmark = pytest.mark.fuzz

KEPT = 10
WAIT = 10.0  # generous: a wait for an event, never a threshold
MAC_A, MAC_B, MAC_C = "02:00:00:00:0a:01", "02:00:00:00:0a:02", "02:00:00:00:0a:03"
CLEAN = {MAC_A: ("hv0", 5, True), MAC_B: ("hv1", 6, True)}  # the clean state's VMs
MUTATED_REPLY = 0.125  # of sessions answered with a mutated monitor reply
VALID_BETWEEN = 0.2  # of messages that are valid notifications, not mutations
_FAILED = re.compile(r"^OVSDB \S+: (?P<reason>.*); \d+ failed attempt")


def clean_fabric(db: FakeOvsdb) -> None:
    db.add_bridge("hv0", 1)
    db.add_bridge("hv1", 2)
    db.add_patch(("hv0", "hv0-hv1", 101), ("hv1", "hv1-hv0", 100))
    db.add_vm_port("hv0", "vma", 5, MAC_A, iface_id="a-iface", vm_id="a-vm")
    db.add_vm_port("hv1", "vmb", 6, MAC_B)


def changes(db: FakeOvsdb) -> list[Callable[[], None]]:
    """Transactions whose notifications are the seeds."""
    return [
        lambda: db.add_vm_port("hv1", "vmc", 7, MAC_C, numbered=False),
        lambda: db.set_ofport("vmc", 7),
        lambda: db.set_link("vma", False),
        lambda: db.set_link("vma", True),
        lambda: db.set_peer_hint("vmb", "hv0/vma"),
        lambda: db.set_external_ids("vmc", {"attached-mac": MAC_A}),
        lambda: db.set_ofport("vmc", -1, "could not open network device vmc"),
        lambda: db.delete_port("vmc"),
        lambda: db.add_bridge("hv2", 3),
        lambda: db.set_dpid("hv2", 4),
        lambda: db.delete_bridge("hv2"),
    ]


@dataclass
class OvsdbTally:
    """What was sent, how each mutation went, and the findings."""

    mutations: int = 0
    taken: int = 0  # the session answered the echo after it
    ended: int = 0  # the monitor ended the session
    valid: int = 0  # valid notifications sent between mutations (not counted above)
    sessions: int = 0
    mutated_replies: int = 0
    operators: Counter[str] = field(default_factory=Counter)
    framings: Counter[str] = field(default_factory=Counter)
    findings: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def found(self, kind: str, what: str) -> None:
        self.findings[kind] += 1
        kept = self.examples.setdefault(kind, [])
        if len(kept) < KEPT:
            kept.append(what[:400])

    def summary(self) -> dict[str, Any]:
        return {
            "mutations": self.mutations,
            "taken": self.taken,
            "sessions_ended": self.ended,
            "valid_between": self.valid,
            "sessions": self.sessions,
            "mutated_monitor_replies": self.mutated_replies,
            "operators": dict(self.operators.most_common()),
            "framings": dict(self.framings.most_common()),
            "findings": dict(self.findings),
            "examples": self.examples,
        }


class Fuzzer:
    """The scripted server's driver: sessions of mutations until `total` are sent."""

    def __init__(self, reply: Any, updates: list[Any], total: int, rng: random.Random) -> None:
        self.reply, self.updates, self.total, self.rng = reply, updates, total, rng
        self.tally = OvsdbTally()
        self.done = asyncio.Event()
        echo = {"id": "server-echo", "method": "echo", "params": []}
        second = {"id": "vportd-monitor", "result": reply, "error": None}
        self.seeds = [*updates, echo, second]

    async def __call__(self, conn: Conn, request: Any) -> None:
        self.tally.sessions += 1
        answer = {"id": request.get("id"), "result": self.reply, "error": None}
        if self.rng.random() < MUTATED_REPLY:
            self.tally.mutated_replies += 1
            if not await self.one(conn, answer):
                return
        else:
            conn.send(answer)
        while not self.done.is_set():
            if self.rng.random() < VALID_BETWEEN:
                self.tally.valid += 1
                conn.send(self.rng.choice(self.updates))
            elif not await self.one(conn, self.rng.choice(self.seeds)):
                return

    async def one(self, conn: Conn, seed: Any) -> bool:
        """Send one mutation of `seed`, then probe; whether the session lives on."""
        message, names = mutate(self.rng, seed)
        framed = frame(self.rng, message)
        tally = self.tally
        tally.mutations += 1
        tally.operators.update(names)
        tally.framings[framed.name or "as a server frames it"] += 1
        if tally.mutations >= self.total:
            self.done.set()
        for piece in framed.pieces:
            conn.send(piece)
            await conn.writer.drain()
        if framed.hang_up:
            conn.hang_up()
        answered = await conn.probe()
        if answered is None:
            sent = b"".join(framed.pieces)[:300].decode("utf-8", "replace")
            tally.found("no answer and no end of session", sent)
            conn.abort()
            return False
        tally.taken += answered
        tally.ended += not answered
        return answered


class MonitorLog(logging.Handler):
    """Why the monitor ended each session, and every record with a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.reasons: Counter[str] = Counter()
        self.exceptions: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.exceptions.append(f"{record.name}: {record.getMessage()}")
        found = _FAILED.match(record.getMessage())
        if found is not None:
            self.reasons[re.sub(r"\d+", "N", found["reason"])[:100]] += 1

    @classmethod
    @contextlib.contextmanager
    def installed(cls) -> Iterator[MonitorLog]:
        handler = cls()
        logger = logging.getLogger("vportd")
        level = logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        try:
            yield handler
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)


class Snapshots:
    """What a monitor hands over (and on to `then`, the runtime's feed)."""

    def __init__(self, then: OnSnapshot | None = None) -> None:
        self.then = then
        self.seen: list[Snapshot] = []

    def __call__(self, snap: Snapshot) -> Awaitable[None] | None:
        self.seen.append(snap)
        return None if self.then is None else self.then(snap)


@contextlib.asynccontextmanager
async def runtime(remote: str) -> AsyncIterator[tuple[Runtime, Snapshots, asyncio.Task[None]]]:
    """A solo runtime following `remote`, its monitor reconnecting at once."""
    rt = solo_runtime(remote)
    (monitor,) = rt.monitors
    snaps = Snapshots(monitor.on_snapshot)
    rt.monitors = [OvsdbMonitor(remote, snaps, backoff=Backoff(0.001, 0.005))]
    task = asyncio.create_task(rt.run())
    try:
        yield rt, snaps, task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def reference(remote: str) -> Snapshot:
    """What a new monitor reads from the server."""
    snaps = Snapshots()
    task = asyncio.create_task(OvsdbMonitor(remote, snaps).run())
    try:
        async with asyncio.timeout(WAIT):
            while not snaps.seen:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return snaps.seen[0]


def table(rt: Runtime) -> dict[str, tuple[str | None, int | None, bool]]:
    return {r.vm: (r.loc.ovs, r.loc.port, r.loc.link_up) for r in rt.core.vports()}


async def until(done: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not done():
            await asyncio.sleep(0.01)


async def test_mutated_updates_never_crash_and_the_clean_state_comes_back() -> None:
    total = budget().ovsdb
    async with FakeOvsdb() as db:
        clean_fabric(db)
        reply, updates = await capture(db, changes(db))
    fuzzer = Fuzzer(reply, updates, total, random.Random(seed()))
    with MonitorLog.installed() as log:
        async with ScriptedOvsdb(reply) as server, runtime(server.remote) as (rt, snaps, task):
            await until(lambda: table(rt) == CLEAN)
            server.drive(fuzzer)
            finished = asyncio.ensure_future(fuzzer.done.wait())
            await asyncio.wait([finished, task], return_when=asyncio.FIRST_COMPLETED)
            finished.cancel()
            server.drive(None)
            await server.until_clean_sessions(2)
            expected = await reference(server.remote)
            with contextlib.suppress(TimeoutError):  # (what is not so is asserted below)
                await until(lambda: _same(snaps.seen[-1], expected) and rt.idle)
            last, vports, alive = snaps.seen[-1], table(rt), not task.done()
    tally = fuzzer.tally
    report("ovsdb", {
        "budget": total, **tally.summary(), "logged_reasons": dict(log.reasons.most_common()),
        "exceptions": len(log.exceptions), "exception_examples": log.exceptions[:KEPT],
        "runtime_alive": alive, "snapshot_clean": _same(last, expected),
        "table_clean": vports == CLEAN,
    })  # fmt: skip
    assert alive, "the runtime stopped"
    assert tally.mutations >= total
    assert not tally.findings, tally.examples
    assert not log.exceptions, log.exceptions[:KEPT]
    assert sum(log.reasons.values()) >= tally.ended, "a session ended without a logged reason"
    assert _same(last, expected)
    assert vports == CLEAN


def _same(a: Snapshot, b: Snapshot) -> bool:
    return (a.bridges, a.ifaces) == (b.bridges, b.ifaces)
