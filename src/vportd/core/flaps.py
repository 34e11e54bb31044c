"""Flap damping of VM moves, as EVPN damps MAC mobility (RFC 7432 §15.1).

A VM that moved `limit.moves` times within the last `limit.window` seconds
is refused another migration until the oldest of those moves leaves the
window. A move is a migration that completed: the VM became active at its
destination. The leader counts the moves it sees itself: a record of the
store holds a VM's latest migration and how often it moved (`seq`), not when,
so a new leader starts with empty windows.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from vportd.core.errors import MigrationSuppressed


@dataclass(frozen=True, slots=True)
class FlapLimit:
    """At most `moves` moves of one VM within any `window` seconds."""

    moves: int = 5
    window: float = 180.0


class Moves:
    """When each VM moved, for as long as the window holds those moves."""

    def __init__(self, limit: FlapLimit) -> None:
        self.limit = limit
        self._of: dict[str, deque[float]] = {}  # by VM, oldest first
        # Every move kept, oldest first: the window passes them in this order.
        self._all: deque[tuple[float, str]] = deque()

    def moved(self, vm: str, now: float) -> None:
        self._of.setdefault(vm, deque()).append(now)
        self._all.append((now, vm))

    def check(self, vm: str, now: float) -> None:
        """Raise MigrationSuppressed when `vm` moved as often as the window allows."""
        self.forget(now)
        times = self._of.get(vm)
        allowed, window = self.limit.moves, self.limit.window
        if times is None or len(times) < allowed:
            return
        # Once this move leaves the window, it holds one fewer than allowed.
        retry = times[len(times) - allowed] + window - now
        moves = len(times)
        raise MigrationSuppressed(
            f"VM {vm} moved {_times(moves)} in the last {window:g} s, the most allowed: "
            f"it may move again in {math.ceil(retry)} s",
            vm=vm, moves=moves, retry_after=retry,
        )  # fmt: skip

    def forget(self, now: float) -> None:
        """Drop the moves the window has passed."""
        window, moves = self.limit.window, self._all
        while moves and moves[0][0] + window <= now:
            _, vm = moves.popleft()
            times = self._of[vm]
            times.popleft()  # the VM's oldest: its moves are kept in the same order
            if not times:
                del self._of[vm]


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"
