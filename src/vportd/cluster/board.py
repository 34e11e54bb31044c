"""Notices the controllers post for one another: keys on the poster's lease.

A controller posts what only it can see (a duplicate MAC on a switch it
masters) and every controller reads what all of them posted, so that any
controller's API can show it. A notice lives on its poster's session lease:
when the poster dies, its notices go with it; a new session posts them again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import NoReturn

from vportd.cluster.store import KV, Store

log = logging.getLogger("vportd.board")


class Board:
    """The notices under `sub` (`conflicts/`): ours to post, and everyone's as read."""

    def __init__(self, store: Store, sub: str) -> None:
        self.store = store
        self.sub = sub
        self.read: dict[str, bytes] = {}  # every controller's notices, by key
        self._mine: dict[str, bytes] = {}  # what we want posted, by key
        self._dirty = asyncio.Event()

    def post(self, notices: dict[str, bytes]) -> None:
        """Ours from now on are `notices` (keys under `sub`): the others are withdrawn."""
        if notices != self._mine:
            self._mine = dict(notices)
            self._dirty.set()

    async def run(self, lease: int) -> NoReturn:
        """A session's part: keep the store's copy of ours equal to what we want."""
        posted: dict[str, bytes] = {}
        while True:
            self._dirty.clear()
            wanted = dict(self._mine)
            for key in sorted(set(posted) - set(wanted)):
                await self.store.post(key, None, lease)
                del posted[key]
            for key, value in sorted(wanted.items()):
                if posted.get(key) != value:
                    await self.store.post(key, value, lease)
                    posted[key] = value
            await self._dirty.wait()

    # -- the watch (Store.follow's callbacks) ---------------------------------
    def reset(self, kvs: dict[str, KV], revision: int) -> None:
        self.read = {k: kv.value for k, kv in kvs.items() if kv.value is not None}

    def changed(self, kvs: list[KV], revision: int) -> None:
        for kv in kvs:
            if kv.value is None:
                self.read.pop(kv.key, None)
            else:
                self.read[kv.key] = kv.value
