"""A connection's requests awaiting their reply, and flow mods watched for an error.

Replies and errors are matched to requests by xid. A multipart reply is
gathered until its last part; the request's future then gets the parts.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from vportd.southbound.openflow.errors import OpenFlowError
from vportd.southbound.openflow.incoming import (
    ErrorMsg,
    FlowStatsReply,
    Incoming,
    PortDescReply,
)


@dataclass
class _Waiter:
    future: asyncio.Future[Any]
    expect: type
    parts: list[Any] = field(default_factory=list)


class Replies:
    def __init__(self) -> None:
        self._waiters: dict[int, _Waiter] = {}
        self._watched: dict[int, ErrorMsg | None] = {}  # flow mod xids -> their error

    def expect(self, xid: int, expect: type) -> asyncio.Future[Any]:
        """The future of request `xid`'s reply, which must be an `expect`."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[xid] = _Waiter(future, expect)
        return future

    def forget(self, xid: int) -> None:
        self._waiters.pop(xid, None)

    def awaited(self, xid: int) -> bool:
        return xid in self._waiters

    def watch(self, xid: int) -> None:
        """Keep the error a flow mod may get (it has no reply of its own)."""
        self._watched[xid] = None

    def unwatch(self, xid: int) -> ErrorMsg | None:
        """Stop watching a flow mod; the error it got, if any."""
        return self._watched.pop(xid, None)

    def fail_all(self, error: Exception) -> None:
        for waiter in self._waiters.values():
            if not waiter.future.done():
                waiter.future.set_exception(error)
        self._waiters.clear()

    def error(self, xid: int, error: ErrorMsg) -> bool:
        """Hand an error to the flow mod or request it answers; False if there is none."""
        if xid in self._watched:
            self._watched[xid] = error
            return True
        waiter = self._waiters.pop(xid, None)
        if waiter is None:
            return False
        text = f"switch refused the request: {error.describe()}"
        waiter.future.set_exception(OpenFlowError(text, error))
        return True

    def reply(self, xid: int, record: Incoming) -> list[Any] | None:
        """Hand a reply to request `xid` (`awaited`); the parts of a multipart reply it
        completed, else None."""
        waiter = self._waiters[xid]
        if not isinstance(record, waiter.expect):
            self._waiters.pop(xid)
            text = f"expected {waiter.expect.__name__}, got {type(record).__name__}"
            waiter.future.set_exception(OpenFlowError(text))
            return None
        parts = None
        if isinstance(record, PortDescReply | FlowStatsReply):
            waiter.parts.append(record)
            if record.more:
                return None
            parts = waiter.parts
        self._waiters.pop(xid)
        if not waiter.future.done():
            waiter.future.set_result(record if parts is None else parts)
        return parts
