"""Helpers for the store tests: records to write, polling for a condition, a lease kept alive,
a follower's mirror."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from vportd.cluster.codec import decode_record
from vportd.cluster.store import KV, LeaseLost, Store
from vportd.core.model import Location, MigrationMark, Phase, VPortRecord

PATIENCE = 30.0  # generous: a slow machine must not fail a test, only slow it down


def mac(n: int) -> str:
    return f"52:54:00:{n >> 16 & 0xFF:02x}:{n >> 8 & 0xFF:02x}:{n & 0xFF:02x}"


def at(vm: str, seq: int, rev: int, writer: str, *, ovs: str = "hv1", port: int = 1) -> VPortRecord:
    """A record of `vm` on `ovs` port `port`, at location version (seq, rev, writer)."""
    return VPortRecord(vm, Location(ovs, port, f"tap{port}", True, seq, rev, writer))


def marked(vm: str, epoch: int, writer: str) -> VPortRecord:
    """A record whose news is only a migration mark (its location is the oldest possible)."""
    mark = MigrationMark(epoch, f"m{epoch}", "hv1", "hv2", 1, Phase.SYNCED, writer)
    return VPortRecord(vm, Location(None, None, None, False, 0, 0, ""), mark)


async def eventually(condition: Callable[[], bool], what: str, timeout: float = PATIENCE) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() >= deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)


async def eventually_async(
    condition: Callable[[], Awaitable[bool]], what: str, timeout: float = PATIENCE
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await condition():
        if loop.time() >= deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)


async def keep(store: Store, lease: int) -> str:
    """Run keep_alive; return why the lease was lost (so a TaskGroup is not torn down)."""
    try:
        await store.keep_alive(lease)
    except LeaseLost as err:
        return str(err)


class Mirror:
    """What a follower sees: its view, every reset and every delivered revision."""

    def __init__(self) -> None:
        self.view: dict[str, KV] = {}
        self.resets: list[int] = []
        self.revisions: list[int] = []
        self.events: list[KV] = []
        self.keys_seen: set[str] = set()
        self.tasks: set[asyncio.Task[object] | None] = set()  # the tasks the callbacks ran in
        self.hook: str | None = None  # a key whose arrival calls `on_hook`
        self.on_hook: Callable[[], None] = lambda: None

    def reset(self, kvs: dict[str, KV], revision: int) -> None:
        self.tasks.add(asyncio.current_task())
        self.resets.append(revision)
        self.view = dict(kvs)

    def change(self, kvs: list[KV], revision: int) -> None:
        self.tasks.add(asyncio.current_task())
        self.revisions.append(revision)
        self.events.extend(kvs)
        for kv in kvs:
            self.keys_seen.add(kv.key)
            if kv.value is None:
                self.view.pop(kv.key, None)
            else:
                self.view[kv.key] = kv
        if self.hook is not None and any(kv.key == self.hook for kv in kvs):
            self.hook = None
            self.on_hook()

    def records(self) -> dict[str, VPortRecord]:
        return {
            k.removeprefix("vports/"): decode_record(kv.value or b"") for k, kv in self.view.items()
        }
