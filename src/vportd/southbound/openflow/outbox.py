"""A connection's bounded queue of outgoing messages, drained by one writer task.

The core never waits on a socket: `put` never blocks, it reports a full
queue (the switch has stopped reading). `put_waiting`, for bulk sends, waits
for room, up to a patience.
"""

from __future__ import annotations

import asyncio
from typing import NoReturn


class Outbox:
    def __init__(self, size: int) -> None:
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(size)

    @property
    def size(self) -> int:
        return self._queue.maxsize

    def full(self) -> bool:
        return self._queue.full()

    def put(self, data: bytes) -> bool:
        """Queue one message; False if the queue is full."""
        try:
            self._queue.put_nowait(data)
        except asyncio.QueueFull:
            return False
        return True

    async def put_waiting(self, data: bytes, patience: float) -> bool:
        """Queue one message, waiting for room; False if none came within `patience` s."""
        try:
            async with asyncio.timeout(patience):
                await self._queue.put(data)
        except TimeoutError:
            return False
        return True

    def flush(self, transport: asyncio.WriteTransport, *, discard: bool) -> None:
        """Empty the queue into the transport (or nowhere, if `discard`), which also
        wakes the senders waiting for room."""
        queue = self._queue
        while not queue.empty():
            data = queue.get_nowait()
            if not discard and not transport.is_closing():
                transport.write(data)

    async def drain(self, writer: asyncio.StreamWriter) -> NoReturn:
        """Write what is queued, forever."""
        queue = self._queue
        while True:
            # What is queued leaves in one send: flow mods and their barrier in one
            # segment wake ovs-vswitchd once, not once per message.
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            writer.write(b"".join(batch))
            await writer.drain()
