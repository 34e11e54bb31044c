"""How late the event loop runs: a stall starves the lease keepalive and OpenFlow echoes.

The loop cannot see its own lag, so a task measures how late a short sleep
wakes up (metrics, a warning past `STALL_WARNING`), and a thread logs where
the loop's thread is while a stall lasts longer than `STALL_STACK`: the lag
alone does not say what held the loop.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("vportd.runtime")

PROBE = 0.1  # seconds between looks at the event loop's lag
STALL_WARNING = 0.25  # a lag worth a warning: a tenth of a short lease TTL
STALL_STACK = 1.0  # a stall worth showing where the loop is


async def watch_loop(lagged: Callable[[float], None]) -> None:
    """Measure the loop's lag every PROBE s and report it to `lagged`, until cancelled."""
    loop = asyncio.get_running_loop()
    watchdog = _Watchdog(threading.get_ident(), loop.time())
    threading.Thread(target=watchdog.run, name="loop-watchdog", daemon=True).start()
    try:
        while True:
            before = loop.time()
            await asyncio.sleep(PROBE)
            watchdog.beat = loop.time()
            late = max(watchdog.beat - before - PROBE, 0.0)
            lagged(late)
            if late > STALL_WARNING:
                log.warning("event loop stalled %.2f s (a timer ran that late)", late)
    finally:
        watchdog.stop = True


@dataclass
class _Watchdog:
    """Logs the event loop thread's stack once per stall longer than STALL_STACK."""

    thread: int
    beat: float  # loop.time() (time.monotonic) of the loop's last heartbeat
    stop: bool = False

    def run(self) -> None:
        reported = 0.0
        while not self.stop:
            time.sleep(PROBE)
            beat = self.beat
            if time.monotonic() - beat < STALL_STACK or beat == reported:
                continue
            reported = beat
            frame = sys._current_frames().get(self.thread)
            stack = "".join(traceback.format_stack(frame)[-12:]) if frame else "(gone)\n"
            log.warning("event loop stalled over %.1f s; it is in:\n%s", STALL_STACK, stack)
