"""A lease outlives a busy event loop, and not a wedged one (real etcd)."""

from __future__ import annotations

import asyncio
import time

from tests.cluster.support import keep
from vportd.cluster.etcd import EtcdStore, Fenced, LeaseLost

INFO = {"id": "c1", "api": "http://c1"}


async def _fenced_out(store: EtcdStore, lease: int) -> bool:
    """Whether `lease` is gone (a key cannot be put on it, or a write fenced by it fails)."""
    try:
        fence = await store.register("probe", INFO, lease)
        await store.merge([], [fence])
    except (LeaseLost, Fenced):
        return True
    return False


async def test_a_loop_busy_for_most_of_each_ttl_keeps_its_lease(store: EtcdStore) -> None:
    """Stalls of 0.7 TTL with one turn of the loop between them (a boot storm's pattern):
    renewals made from the loop needed several turns each and came too late."""
    lease = await store.grant_lease()
    keeping = asyncio.create_task(keep(store, lease))
    await asyncio.sleep(0.1)
    for _ in range(6):  # 6 x 0.7 TTL = 4.2 TTL in all
        time.sleep(0.7 * store.lease_ttl)  # blocks the loop: the point
        await asyncio.sleep(0)
    assert not keeping.done()
    assert not await _fenced_out(store, lease)
    keeping.cancel()
    await asyncio.gather(keeping, return_exceptions=True)


async def test_a_wedged_loop_loses_its_lease(store: EtcdStore) -> None:
    """Blocked for longer than the TTL: the renewer lets the lease expire."""
    lease = await store.grant_lease()
    keeping = asyncio.create_task(keep(store, lease))
    await asyncio.sleep(0.1)
    time.sleep(2.5 * store.lease_ttl)
    why = await asyncio.wait_for(keeping, 5 * store.lease_ttl)
    assert "no keepalive answered" in why or "expired" in why
    assert await _fenced_out(store, lease)
