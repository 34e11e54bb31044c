"""A controller's runtime on its own, following one OVSDB remote (no store, no LLDP),
and a task that lives for a block."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from vportd.node.config import parse_config
from vportd.node.runtime import Runtime


def solo_runtime(remote: str) -> Runtime:
    """Listening for switches on a free loopback port."""
    return Runtime(
        parse_config(
            f'[controller]\nid = "c0"\n[openflow]\nlisten = "127.0.0.1:0"\n'
            f'[ovsdb]\nremotes = ["{remote}"]\n[topology]\nlldp = false\n'
        )
    )


@contextlib.asynccontextmanager
async def in_task(coro: Coroutine[Any, Any, Any]) -> AsyncIterator[asyncio.Task[Any]]:
    """Run `coro` in a task for the block's duration; cancel and await it after."""
    task = asyncio.create_task(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
