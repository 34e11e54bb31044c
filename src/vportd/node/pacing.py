"""Bulk work one slice per turn of the event loop.

In a boot storm every hypervisor's OVSDB server sends an update at once; run
back to back in one turn of the loop, their work kept timers, the etcd
keepalive and the handshake's requests waiting for seconds on a busy
machine. A slice taken with `turn()` is the only bulk slice of its turn:
the next one waits for a later turn, and whatever else is ready runs between.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class Pacer:
    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold the turn for one slice of bulk work (keep it to some milliseconds)."""
        async with self._lock:
            yield
            await asyncio.sleep(0)  # the loop turns before the next slice starts
