"""Bulk work one slice per turn of the event loop, and what must wait for its slices.

In a boot storm every hypervisor's OVSDB server sends an update at once; run
back to back in one turn of the loop, their work kept timers, the etcd
keepalive and the handshake's requests waiting for seconds on a busy
machine. A slice taken with `turn()` is the only bulk slice of its turn:
the next one waits for a later turn, and whatever else is ready runs between.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from vportd.core.messages import PortEvent


class Pacer:
    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold the turn for one slice of bulk work (keep it to some milliseconds)."""
        async with self._lock:
            yield
            await asyncio.sleep(0)  # the loop turns before the next slice starts


@dataclass
class _Port:
    pending: int = 0  # the port's OVSDB events not fed to the core yet
    held: PortEvent | None = None  # the latest link change a port status brought


class Unfed:
    """OVSDB port events waiting for their slices, and the port statuses held for them.

    A switch tells a link change by port status at once, while the port's OVSDB
    events (which name the VM) may still wait for a slice: the core must see
    the port before its link, so the status waits for the port's last event."""

    def __init__(self) -> None:
        self._ports: dict[tuple[str, int], _Port] = {}

    def expect(self, events: Iterable[PortEvent]) -> None:
        for ev in events:
            self._ports.setdefault((ev.ovs, ev.port), _Port()).pending += 1

    def hold(self, ev: PortEvent) -> bool:
        """Keep a port status's event if its port waits; whether it was kept."""
        port = self._ports.get((ev.ovs, ev.port))
        if port is not None:
            port.held = ev
        return port is not None

    def fed(self, ev: PortEvent) -> PortEvent | None:
        """An OVSDB event went to the core; the held one, if it was the port's last."""
        port = self._ports.get((ev.ovs, ev.port))
        if port is None:
            return None
        port.pending -= 1
        if port.pending > 0:
            return None
        del self._ports[(ev.ovs, ev.port)]
        return port.held

    def forget(self, events: Iterable[PortEvent]) -> None:
        for ev in events:
            self._ports.pop((ev.ovs, ev.port), None)
