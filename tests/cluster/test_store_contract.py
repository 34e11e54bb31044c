"""The `Store` contract, run against `MemoryStore` and (marker etcd) `EtcdStore` alike:
sessions, roles and generations, fencing, the merge's join, the watch's order, and the
leader's fenced puts of other keys."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import reduce

import pytest

from tests.cluster.conftest import AnyStoreFactory
from tests.cluster.support import Mirror, at, eventually, eventually_async, keep, mac, marked
from vportd.cluster.codec import encode_record
from vportd.cluster.store import Fence, Fenced, LeaseLost, Store
from vportd.core.model import VPortRecord

INFO = {"api": "http://127.0.0.1:8080", "openflow": "127.0.0.1:6653"}


def join(records: list[VPortRecord]) -> VPortRecord:
    return reduce(VPortRecord.merge, records)


@asynccontextmanager
async def following(store: Store, sub: str) -> AsyncIterator[Mirror]:
    """A `Mirror` of everything under `sub`, from its first full read on."""
    mirror = Mirror()
    task = asyncio.create_task(store.follow(sub, mirror.reset, mirror.change))
    try:
        await eventually(lambda: bool(mirror.resets), "the first full read")
        yield mirror
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@asynccontextmanager
async def kept(store: Store) -> AsyncIterator[int]:
    """A lease kept alive while the block runs."""
    lease = await store.grant_lease()
    task = asyncio.create_task(keep(store, lease))
    try:
        yield lease
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def gone(store: Store, lease: int) -> bool:
    """Whether `lease` is gone: no key can be put on it any more."""
    try:
        await store.claim("probe", "c0", lease)
    except LeaseLost:
        return True
    return False


async def wait_gone(store: Store, lease: int) -> None:
    await eventually_async(lambda: gone(store, lease), f"lease {lease:x} expired")


# -- sessions -------------------------------------------------------------------
async def test_register_puts_the_member_key_and_a_restart_fences_the_old_one(
    connect_any: AnyStoreFactory,
) -> None:
    async with connect_any() as store, following(store, "members/") as mirror:
        old_lease, new_lease = await store.grant_lease(), await store.grant_lease()
        old = await store.register("c1", INFO, old_lease)
        assert old == Fence("members/c1", old.revision)
        assert await store.register("c1", INFO, old_lease) == old  # the same session: the same key
        new = await store.register("c1", INFO, new_lease)  # a restart before old expired
        assert new.revision > old.revision
        with pytest.raises(Fenced):
            await store.merge([at(mac(1), 1, 0, "c1")], [old])
        await store.merge([at(mac(1), 1, 0, "c1")], [new])
        await eventually(lambda: mirror.view.get("members/c1") is not None, "the member key")
        await eventually(
            lambda: mirror.view["members/c1"].create_revision == new.revision, "the new incarnation"
        )
        assert json.loads(mirror.view["members/c1"].value or b"") == {**INFO, "id": "c1"}


async def test_keep_alive_keeps_a_lease_and_ends_with_lease_lost(
    connect_any: AnyStoreFactory,
) -> None:
    """Of two leases, the one kept alive outlives the other; revoked, keep_alive says so."""
    async with connect_any() as store, asyncio.TaskGroup() as tg:
        kept_lease, left = await store.grant_lease(), await store.grant_lease()
        keeping = tg.create_task(keep(store, kept_lease))
        assert await store.claim("hv1", "c1", kept_lease) is not None
        await wait_gone(store, left)
        assert not keeping.done()
        assert not await gone(store, kept_lease)
        await store.revoke(kept_lease)
        assert "expired or was revoked" in await asyncio.wait_for(keeping, 30)
        await store.revoke(kept_lease)  # gone already: fine


# -- leader election --------------------------------------------------------------
async def _second_waits(connect_any: AnyStoreFactory, *, leaves: bool) -> None:
    """c1 leads; c2 campaigns and waits until c1's leadership ends: c1 revokes its lease
    (`leaves`: a controller that stops), or its lease, not kept alive, expires."""
    async with connect_any() as s1, connect_any() as s2, kept(s2) as l2, kept(s1) as k1:
        l1 = k1 if leaves else await s1.grant_lease()
        first = await s1.campaign("c1", {"api": "http://c1"}, l1)
        assert first.key == "leader"
        waiting = asyncio.create_task(s2.campaign("c2", {"api": "http://c2"}, l2))
        try:
            async with following(s2, "leader") as mirror:
                assert json.loads(mirror.view["leader"].value or b"")["id"] == "c1"
                assert not waiting.done()
                if leaves:
                    await s1.revoke(l1)
                second = await asyncio.wait_for(waiting, 30)
                assert second.revision > first.revision
                await eventually(
                    lambda: (
                        mirror.view.get("leader") is not None
                        and mirror.view["leader"].create_revision == second.revision
                    ),
                    "c2's leader key",
                )
        finally:
            waiting.cancel()
        with pytest.raises(Fenced):
            await s1.merge([at(mac(7), 1, 0, "old")], [first])
        await s2.merge([at(mac(7), 1, 0, "new")], [second])


async def test_the_second_campaigner_waits_until_the_first_leaves(
    connect_any: AnyStoreFactory,
) -> None:
    await _second_waits(connect_any, leaves=True)


async def test_the_second_campaigner_waits_until_the_first_lease_expires(
    connect_any: AnyStoreFactory,
) -> None:
    await _second_waits(connect_any, leaves=False)


async def test_campaigning_again_on_the_same_lease_is_idempotent(
    connect_any: AnyStoreFactory,
) -> None:
    async with connect_any() as store, kept(store) as lease:
        first = await store.campaign("c1", {"api": "http://c1"}, lease)
        assert await store.campaign("c1", {"api": "http://c1"}, lease) == first


# -- mastership -------------------------------------------------------------------
async def test_claim_release_and_generations(connect_any: AnyStoreFactory) -> None:
    async with connect_any() as store:
        l1, l2 = await store.grant_lease(), await store.grant_lease()
        g1 = await store.claim("hv1", "c1", l1)
        assert g1 is not None and g1.key == "masters/hv1"
        assert await store.claim("hv1", "c2", l2) is None  # held by c1
        assert await store.claim("hv1", "c1", l1) == g1  # claiming again is idempotent
        await store.release(g1)
        g2 = await store.claim("hv1", "c2", l2)
        assert g2 is not None and g2.revision > g1.revision
        await store.release(g1)  # stale: must not delete c2's mastership
        assert await store.claim("hv1", "c1", l1) is None
        await store.revoke(l2)  # c2 dies: its switch is free
        g3 = await store.claim("hv1", "c1", l1)
        assert g3 is not None and g3.revision > g2.revision
        with pytest.raises(LeaseLost):
            await store.claim("hv2", "c2", l2)


# -- records ----------------------------------------------------------------------
async def test_concurrent_merges_from_two_clients_converge_to_the_join(
    connect_any: AnyStoreFactory,
) -> None:
    """`a` moves locations, `b` marks migrations, older and newer copies mixed: a blind
    put of either would drop the other's news, and the final join would show it."""
    rng = random.Random(11)
    vms = [mac(n) for n in range(1, 11)]
    written: dict[str, list[VPortRecord]] = {vm: [] for vm in vms}
    async with connect_any() as a, connect_any() as b:
        for rnd in range(12):
            batch_a = [at(vm, rng.randrange(100), rnd, "a") for vm in vms]
            batch_b = [marked(vm, rng.randrange(100), "b") for vm in vms]
            for rec in batch_a + batch_b:
                written[rec.vm].append(rec)
            await asyncio.gather(a.merge(batch_a), b.merge(batch_b), b.merge(batch_a[:3]))
        stored_a, _ = await a.records()
        stored_b, _ = await b.records()
    assert stored_a == stored_b == {vm: join(recs) for vm, recs in written.items()}


async def test_a_merge_that_adds_nothing_writes_nothing(connect_any: AnyStoreFactory) -> None:
    vm = mac(2)
    async with connect_any() as store:
        await store.merge([at(vm, 5, 0, "a"), at(vm, 3, 0, "b")])  # two copies: their join
        _, before = await store.records()
        await store.merge([at(vm, 4, 9, "z")])  # older than the stored one
        stored, after = await store.records()
    assert stored == {vm: at(vm, 5, 0, "a")}
    assert after == before


@pytest.mark.parametrize("how", ["released", "revoked", "expired"])
async def test_a_fenced_merge_is_refused_once_the_fence_key_is_gone(
    connect_any: AnyStoreFactory, how: str
) -> None:
    vm = mac(3)
    async with connect_any() as store:
        lease = await store.grant_lease()  # never kept alive: "expired" waits its TTL out
        fence = await store.claim("hv1", "c1", lease)
        assert fence is not None
        await store.merge([at(vm, 1, 0, "c1")], [fence])
        if how == "released":
            await store.release(fence)
        elif how == "revoked":
            await store.revoke(lease)
        else:
            await wait_gone(store, lease)
        with pytest.raises(Fenced):
            await store.merge([at(vm, 2, 0, "c1"), at(mac(4), 1, 0, "c1")], [fence])
        stored, _ = await store.records()
    assert stored == {vm: at(vm, 1, 0, "c1")}


async def test_a_fence_of_another_incarnation_is_refused(connect_any: AnyStoreFactory) -> None:
    """The key is back, claimed again: the old fence names the previous incarnation."""
    async with connect_any() as store:
        lease = await store.grant_lease()
        old = await store.claim("hv1", "c1", lease)
        assert old is not None
        await store.release(old)
        new = await store.claim("hv1", "c1", lease)
        assert new is not None and new.revision > old.revision
        with pytest.raises(Fenced):
            await store.merge([at(mac(5), 1, 0, "c1")], [old])
        await store.merge([at(mac(5), 1, 0, "c1")], [new])


# -- the watch ----------------------------------------------------------------------
async def test_follow_delivers_a_reset_then_every_change_in_revision_order(
    connect_any: AnyStoreFactory,
) -> None:
    early = [at(mac(n), 1, 0, "w") for n in range(5)]
    async with connect_any() as writer, connect_any() as reader:
        await writer.merge(early)
        lease = await writer.grant_lease()
        async with following(reader, "") as mirror:
            assert set(mirror.view) == {f"vports/{r.vm}" for r in early}
            fence = await writer.claim("hv1", "w", lease)
            assert fence is not None
            for n in range(3, 9):
                await writer.merge([at(mac(n), 2, n, "w"), marked(mac(n + 1), n, "w")])
            await writer.release(fence)
            stored, revision = await writer.records()
            await eventually(lambda: mirror.revisions[-1:] == [revision], "every change")
        assert mirror.records() == stored
        assert len(mirror.resets) == 1
        assert mirror.revisions == sorted(set(mirror.revisions))  # in order, none twice
        assert mirror.resets[0] < mirror.revisions[0]
        claimed = [kv for kv in mirror.events if kv.key == "masters/hv1"]
        assert [kv.value is None for kv in claimed] == [False, True]  # the claim, the release
        assert claimed[0].create_revision == fence.revision
        assert asyncio.current_task() not in mirror.tasks  # never in the writer's call


async def test_values_are_stored_as_etcd_store_writes_them(connect_any: AnyStoreFactory) -> None:
    rec = at(mac(1), 1, 0, "c1")
    async with connect_any() as store:
        lease = await store.grant_lease()
        await store.register("c1", INFO, lease)
        await store.claim("hv1", "c1", lease)
        await store.merge([rec])
        async with following(store, "") as mirror:
            values = {k: kv.value for k, kv in mirror.view.items()}
    assert json.loads(values["members/c1"] or b"") == {**INFO, "id": "c1"}
    assert json.loads(values["masters/hv1"] or b"") == {"id": "c1"}
    assert values[f"vports/{rec.vm}"] == encode_record(rec)


async def test_the_keys_of_an_expired_lease_go_and_the_watch_sees_them_go(
    connect_any: AnyStoreFactory,
) -> None:
    async with connect_any() as store, following(store, "") as mirror:
        lease = await store.grant_lease()  # never kept alive
        await store.register("c1", INFO, lease)
        await store.claim("hv1", "c1", lease)
        await store.merge([at(mac(1), 1, 0, "c1")])  # a record: on no lease
        await eventually(lambda: "masters/hv1" in mirror.view, "the keys")
        await eventually(lambda: "members/c1" not in mirror.view, "the keys' deletion")
        await eventually(lambda: "masters/hv1" not in mirror.view, "the keys' deletion")
        deleted = {kv.key for kv in mirror.events if kv.value is None}
        assert deleted == {"members/c1", "masters/hv1"}
        assert set(mirror.view) == {f"vports/{mac(1)}"}
        assert await gone(store, lease)


async def test_a_posted_notice_lives_on_its_lease_until_withdrawn_or_the_lease_ends(
    connect_any: AnyStoreFactory,
) -> None:
    async with connect_any() as store, following(store, "conflicts/") as mirror:
        lease = await store.grant_lease()
        await store.post("conflicts/m/hv1/5", b"one", lease)
        await store.post("conflicts/m/hv2/7", b"two", lease)
        await store.post("conflicts/m/hv2/7", b"two again", lease)
        await eventually(
            lambda: (
                (kv := mirror.view.get("conflicts/m/hv2/7")) is not None
                and kv.value == b"two again"
            ),
            "posts",
        )
        await store.post("conflicts/m/hv1/5", None, lease)
        await eventually(lambda: "conflicts/m/hv1/5" not in mirror.view, "the withdrawal")
        await store.revoke(lease)
        await eventually(lambda: not mirror.view, "the lease's notices gone")
        with pytest.raises(LeaseLost):
            await store.post("conflicts/m/hv3/1", b"late", lease)


# -- the leader's other keys (its records of VMs' moves) ----------------------------
async def test_fenced_puts_and_deletes_read_back_and_stay_out_of_the_records(
    connect_any: AnyStoreFactory,
) -> None:
    async with connect_any() as store:
        lease = await store.grant_lease()
        fence = await store.campaign("c1", INFO, lease)
        many = {f"moves/{mac(n)}": f"{n}".encode() for n in range(200)}  # past one txn's ops
        await store.put(many, [fence])
        await store.put({f"moves/{mac(0)}": b"again", f"moves/{mac(1)}": None}, [fence])
        read = await store.read("moves/")
        records, _ = await store.records()
    expected = {**many, f"moves/{mac(0)}": b"again"}
    del expected[f"moves/{mac(1)}"]
    assert read == expected
    assert records == {}


@pytest.mark.parametrize("how", ["revoked", "taken over"])
async def test_a_put_fenced_by_a_lost_leadership_writes_nothing(
    connect_any: AnyStoreFactory, how: str
) -> None:
    async with connect_any() as store:
        lease = await store.grant_lease()
        old = await store.campaign("c1", INFO, lease)
        await store.put({"moves/a": b"1"}, [old])
        await store.revoke(lease)
        if how == "taken over":
            await store.campaign("c2", INFO, await store.grant_lease())
        with pytest.raises(Fenced):
            await store.put({"moves/a": None, "moves/b": b"2"}, [old])
        assert await store.read("moves/") == {"moves/a": b"1"}
