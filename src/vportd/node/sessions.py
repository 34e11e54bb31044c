"""Which OVSDB servers this controller follows: the runtime says which, this runs them.

A server is followed while the controller masters a switch it serves, or
while it does not know yet which switches it serves (its first snapshot says
so). Each followed server's monitor is a task of `run`'s TaskGroup; one that
is no longer wanted is cancelled, and `closed` tells the runtime, which then
forgets that server's snapshot. At most `ADMIT` monitors connect and read
their server's first dump at once (a controller starts by reading every
server); one that cannot connect waits its backoff without holding a place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn

from vportd.southbound.ovsdb.monitor import OvsdbMonitor

ADMIT = 8  # monitors connecting and reading their first dump at once


class Sessions:
    """The monitors of every configured remote, run while they are `wanted`."""

    def __init__(
        self, monitors: Sequence[OvsdbMonitor], closed: Callable[[str], None], admit: int = ADMIT
    ) -> None:
        self.monitors = {m.remote: m for m in monitors}
        self._admit = asyncio.Semaphore(admit)
        for monitor in monitors:
            monitor.admit = self._admit
        self.served: dict[str, frozenset[str]] = {}  # remote -> its bridges, as last read
        self.wanted: set[str] = set(self.monitors)  # (at first: every one, to read it)
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._closed = closed
        self._changed = asyncio.Event()

    def saw(self, remote: str, bridges: Iterable[str]) -> bool:
        """A snapshot of `remote` shows these bridges; whether that is news."""
        names = frozenset(bridges)
        new = self.served.get(remote) != names
        self.served[remote] = names
        return new

    def switches(self) -> set[str]:
        """Every switch a configured remote serves, as read."""
        return set().union(*self.served.values())

    def serving(self, switch: str) -> str | None:
        """The remote that serves `switch`, as read."""
        return next((r for r, names in self.served.items() if switch in names), None)

    def want(self, mine: set[str]) -> None:
        """Follow the remotes that serve a switch of `mine`, or whose switches are unknown."""
        wanted = {r for r in self.monitors if not self.served.get(r) or self.served[r] & mine}
        if wanted != self.wanted:
            self.wanted = wanted
            self._changed.set()

    def following(self, remote: str) -> bool:
        return remote in self._tasks

    @property
    def live(self) -> int:
        """The followed servers with a live session."""
        return sum(self.monitors[r].live for r in self._tasks)

    async def run(self) -> NoReturn:
        async with asyncio.TaskGroup() as tg:
            while True:
                self._changed.clear()
                for remote in sorted(self.wanted - self._tasks.keys()):
                    self._tasks[remote] = tg.create_task(self.monitors[remote].run())
                for remote in sorted(self._tasks.keys() - self.wanted):
                    await self._close(remote)
                await self._changed.wait()

    async def _close(self, remote: str) -> None:
        task = self._tasks.pop(remote)
        task.cancel()
        await asyncio.wait([task])  # (not `await task`: that would take our own cancellation)
        self.monitors[remote].live = False
        self._closed(remote)
