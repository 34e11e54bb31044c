"""Flap damping of VM moves, as EVPN damps MAC mobility (RFC 7432 §15.1).

A VM that moved `limit.moves` times within the last `limit.window` seconds
is refused another migration until the oldest of those moves leaves the
window. A move is a migration that completed: the VM became active at its
destination. The leader counts the moves it sees, and each move gives the
VM's record of moves (`MoveTimes`) for the store of record; a new leader
starts from those records (`Moves.restore`), so that a failover does not
reset the damping. When a VM's last move leaves the window its record goes
(an empty `MoveTimes`: delete it). The core's times are the `now` it is
given; the adapters translate them for the store.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from vportd.core.errors import MigrationSuppressed


@dataclass(frozen=True, slots=True)
class FlapLimit:
    """At most `moves` moves of one VM within any `window` seconds."""

    moves: int = 5
    window: float = 180.0


@dataclass(frozen=True, slots=True)
class MoveTimes:
    """A VM's record of moves for the store of record: when it moved, oldest first.

    Only the newest `FlapLimit.moves` are kept: no older one can decide a refusal.
    No times: the VM has no move in the window any more, and its record goes.
    """

    vm: str
    times: tuple[float, ...]


class Moves:
    """When each VM moved, for as long as the window holds those moves."""

    def __init__(self, limit: FlapLimit) -> None:
        self.limit = limit
        self._of: dict[str, deque[float]] = {}  # by VM, oldest first
        # Every move kept, oldest first: the window passes them in this order.
        self._all: deque[tuple[float, str]] = deque()

    def moved(self, vm: str, now: float) -> MoveTimes:
        """Count a move of `vm`; its record of moves to store."""
        times = self._of.setdefault(vm, deque())
        times.append(now)
        self._all.append((now, vm))
        return self._record(vm, times)

    def _record(self, vm: str, times: deque[float]) -> MoveTimes:
        keep = self.limit.moves
        return MoveTimes(vm, tuple(times)[-keep:])

    def restore(self, records: Iterable[MoveTimes]) -> None:
        """Take the moves a former leader stored (a new leader, before any move of its own)."""
        for rec in records:
            if rec.times:
                self._of[rec.vm] = deque(sorted(rec.times))
        self._all = deque(sorted((t, vm) for vm, times in self._of.items() for t in times))

    def check(self, vm: str, now: float) -> None:
        """Raise MigrationSuppressed when `vm` moved as often as the window allows."""
        allowed, window = self.limit.moves, self.limit.window
        times = [t for t in self._of.get(vm, ()) if t + window > now]
        if len(times) < allowed:
            return
        # Once this move leaves the window, it holds one fewer than allowed.
        retry = times[len(times) - allowed] + window - now
        moves = len(times)
        raise MigrationSuppressed(
            f"VM {vm} moved {_times(moves)} in the last {window:g} s, the most allowed: "
            f"it may move again in {math.ceil(retry)} s",
            vm=vm, moves=moves, retry_after=retry,
        )  # fmt: skip

    def forget(self, now: float) -> list[MoveTimes]:
        """Drop the moves the window has passed; the records of VMs left with none, to delete."""
        window, moves = self.limit.window, self._all
        gone: list[MoveTimes] = []
        while moves and moves[0][0] + window <= now:
            _, vm = moves.popleft()
            times = self._of[vm]
            times.popleft()  # the VM's oldest: its moves are kept in the same order
            if not times:
                del self._of[vm]
                gone.append(MoveTimes(vm, ()))
        return gone


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"
