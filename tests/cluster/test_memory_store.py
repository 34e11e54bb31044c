"""MemoryServer's test controls do to a client what a real cluster would: a lease expired,
etcd out of reach (calls fail, renewals stop, the watch resumes), history compacted."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.cluster.support import Mirror, at, eventually, keep, mac
from vportd.cluster.memory import MemoryServer, MemoryStore
from vportd.cluster.store import Fenced, StoreError, Transient

INFO = {"api": "http://c1"}


async def test_expire_member_ends_its_session_and_deletes_its_keys() -> None:
    server = MemoryServer()
    async with server.client() as store, asyncio.TaskGroup() as tg:
        lease = await store.grant_lease()
        keeping = tg.create_task(keep(store, lease))
        member = await store.register("c1", INFO, lease)
        await store.campaign("c1", INFO, lease)
        server.expire_member("c1")
        assert "expired or was revoked" in await asyncio.wait_for(keeping, 10)
        with pytest.raises(Fenced):
            await store.merge([at(mac(1), 1, 0, "c1")], [member])
        assert await store.claim("hv1", "c2", await store.grant_lease()) is not None
        with pytest.raises(LookupError):
            server.expire_member("c1")
        assert not server.expire(lease)  # gone already


async def test_a_partitioned_client_fails_its_calls_and_loses_its_lease() -> None:
    server = MemoryServer()
    async with server.client() as cut, server.client() as other, asyncio.TaskGroup() as tg:
        lease = await cut.grant_lease()
        keeping = tg.create_task(keep(cut, lease))
        fence = await cut.claim("hv1", "c1", lease)
        assert fence is not None
        server.partition(cut)
        with pytest.raises(Transient):
            await cut.records()
        with pytest.raises(Transient):
            await cut.merge([at(mac(1), 1, 0, "c1")], [fence])
        await other.merge([at(mac(2), 1, 0, "c2")])  # the others go on
        assert "no keepalive answered" in await asyncio.wait_for(keeping, 10)
        other_lease = await other.grant_lease()
        assert await other.claim("hv1", "c2", other_lease) is not None  # the key expired
        server.heal(cut)
        with pytest.raises(Fenced):
            await cut.merge([at(mac(1), 1, 0, "c1")], [fence])
        stored, _ = await cut.records()
        assert stored == {mac(2): at(mac(2), 1, 0, "c2")}


async def test_a_campaign_cut_off_while_waiting_fails_transiently() -> None:
    server = MemoryServer()
    async with server.client() as leader, server.client() as cut:
        await leader.campaign("c1", INFO, await leader.grant_lease())
        waiting = asyncio.create_task(cut.campaign("c2", INFO, await cut.grant_lease()))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        server.partition(cut)
        with pytest.raises(Transient):
            await waiting


async def test_a_call_made_while_cut_off_completes_once_healed_within_patience() -> None:
    server = MemoryServer()
    async with server.client(patience=30) as store:
        server.partition(store)
        merge = asyncio.create_task(store.merge([at(mac(9), 1, 0, "c1")]))
        await asyncio.sleep(0.05)
        assert not merge.done()
        server.heal(store)
        await merge
        stored, _ = await store.records()
    assert stored == {mac(9): at(mac(9), 1, 0, "c1")}


async def follow(store: MemoryStore, mirror: Mirror, tg: asyncio.TaskGroup) -> asyncio.Task[None]:
    task = tg.create_task(store.follow("vports/", mirror.reset, mirror.change))
    await eventually(lambda: bool(mirror.resets), "the first full read")
    return task


async def test_a_partitioned_follower_resumes_after_its_last_revision() -> None:
    server = MemoryServer()
    mirror = Mirror()
    async with server.client() as reader, server.client() as writer, asyncio.TaskGroup() as tg:
        task = await follow(reader, mirror, tg)
        await writer.merge([at(mac(n), 1, 0, "w") for n in range(5)])
        await eventually(lambda: len(mirror.view) == 5, "the first writes")
        server.partition(reader)
        seen = list(mirror.revisions)
        for n in range(3, 8):
            await writer.merge([at(mac(n), 2, 0, "w")])
        await asyncio.sleep(0.05)
        assert mirror.revisions == seen  # nothing reaches a cut-off follower
        server.heal(reader)
        stored, revision = await writer.records()
        await eventually(lambda: mirror.revisions[-1] == revision, "the writes made while cut off")
        task.cancel()
    assert mirror.records() == stored
    assert len(mirror.resets) == 1
    assert mirror.revisions == sorted(set(mirror.revisions))


async def test_a_follower_that_cannot_resume_after_a_compaction_reloads(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="vportd.store")
    server = MemoryServer()
    mirror = Mirror()
    async with server.client() as reader, server.client() as writer, asyncio.TaskGroup() as tg:
        task = await follow(reader, mirror, tg)
        server.partition(reader)
        await writer.merge([at(mac(n), 1, 0, "w") for n in range(5)])
        _, revision = await writer.records()
        server.compact(revision)
        with pytest.raises(ValueError, match="future"):
            server.compact(revision + 1)
        server.heal(reader)
        await eventually(lambda: len(mirror.resets) == 2, "a second full read")
        await writer.merge([at(mac(9), 1, 0, "w")])
        stored, revision = await writer.records()
        await eventually(lambda: mirror.revisions[-1:] == [revision], "the write after it")
        task.cancel()
    assert mirror.records() == stored
    assert mirror.resets[1] > mirror.resets[0]
    assert any("full resync" in r.getMessage() for r in caplog.records)


async def test_an_up_to_date_follower_is_not_disturbed_by_a_compaction() -> None:
    server = MemoryServer()
    mirror = Mirror()
    async with server.client() as store, asyncio.TaskGroup() as tg:
        task = await follow(store, mirror, tg)
        await store.merge([at(mac(1), 1, 0, "w")])
        _, revision = await store.records()
        await eventually(lambda: mirror.revisions[-1:] == [revision], "the write")
        server.compact(revision)
        await store.merge([at(mac(2), 1, 0, "w")])
        await eventually(lambda: len(mirror.view) == 2, "the next write")
        task.cancel()
    assert len(mirror.resets) == 1


async def test_a_store_outside_async_with_refuses_calls() -> None:
    store = MemoryServer().client()
    with pytest.raises(StoreError, match="outside"):
        await store.grant_lease()
