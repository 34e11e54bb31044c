"""EtcdStore against a real etcd: CAS merge, fencing, leader election, mastership, restarts."""

from __future__ import annotations

import asyncio
import json
import random
from functools import reduce

import pytest

from tests.cluster.conftest import StoreFactory
from tests.cluster.support import at, eventually, eventually_async, keep, mac, marked
from vportd.cluster.etcd import EtcdStore, Fenced
from vportd.cluster.etcd_rpc import delete_op
from vportd.core.model import VPortRecord
from vportd_lab.bed.etcd import PrivateEtcd

pytestmark = pytest.mark.etcd

INFO = {"api": "http://127.0.0.1:8080", "openflow": "127.0.0.1:6653"}


def join(records: list[VPortRecord]) -> VPortRecord:
    return reduce(VPortRecord.merge, records)


# -- CAS merge ----------------------------------------------------------------
async def test_concurrent_writers_never_lose_an_update(connect: StoreFactory) -> None:
    """Two controllers write the same VMs at once; etcd ends with the join of everything."""
    rng = random.Random(7)
    vms = [mac(n) for n in range(1, 21)]
    written: dict[str, list[VPortRecord]] = {vm: [] for vm in vms}
    async with connect() as a, connect() as b:
        for rnd in range(30):
            # `a` moves locations, `b` marks migrations: a blind put of either
            # would drop the other's news, and the final join would show it.
            batch_a = [at(vm, rng.randrange(1000), rnd, "a") for vm in vms]
            batch_b = [marked(vm, rng.randrange(1000), "b") for vm in vms]
            for rec in batch_a + batch_b:
                written[rec.vm].append(rec)
            await asyncio.gather(a.merge(batch_a), b.merge(batch_b), a.merge(batch_a[:3]))
        stored, _ = await a.records()
    assert stored == {vm: join(recs) for vm, recs in written.items()}


async def test_single_key_contention(connect: StoreFactory) -> None:
    """Many concurrent one-record merges of one VM (the per-key retry path)."""
    vm = mac(1)
    async with connect() as a, connect() as b:
        recs = [at(vm, n % 17, n, w) for n in range(40) for w in ("a", "b")]
        await asyncio.gather(*((a if r.loc.writer == "a" else b).merge([r]) for r in recs))
        stored, _ = await b.records()
    assert stored == {vm: join(recs)}


async def test_merge_keeps_the_newer_stored_record(store: EtcdStore) -> None:
    vm = mac(2)
    await store.merge([at(vm, 5, 0, "a")])
    _, before = await store.records()
    await store.merge([at(vm, 4, 9, "z")])  # older: nothing to write
    stored, after = await store.records()
    assert stored == {vm: at(vm, 5, 0, "a")}
    assert after == before  # no write at all


async def test_a_merge_planned_on_a_stale_view_still_lands_the_join(
    connect: StoreFactory,
) -> None:
    """`a` plans its next write on what it wrote last; `b` wrote meanwhile (and deleted):
    the compare-and-swap catches the stale view, and nothing is lost or left out."""
    vm = mac(3)
    async with connect() as a, connect() as b:
        await a.merge([at(vm, 1, 0, "a")])
        await b.merge([marked(vm, 7, "b")])
        await a.merge([at(vm, 2, 0, "a")])
        stored, _ = await b.records()
        assert stored == {vm: join([at(vm, 1, 0, "a"), marked(vm, 7, "b"), at(vm, 2, 0, "a")])}
        await b._txn("delete", [], [delete_op(a.key(f"vports/{vm}"))])
        await a.merge([at(vm, 2, 0, "a")])  # what a last saw says "nothing to write"
        stored, _ = await b.records()
    assert stored == {vm: at(vm, 2, 0, "a")}


async def test_a_key_never_seen_is_taken_for_absent_and_a_wrong_guess_costs_nothing(
    connect: StoreFactory,
) -> None:
    """`a` writes a key it never saw as if it were new; `b` had written it already: the
    compare-and-swap fails, `a` reads, and the stored record is the join, not `a`'s."""
    vm = mac(4)
    async with connect() as a, connect() as b:
        await b.merge([at(vm, 5, 0, "b")])
        await a.merge([at(vm, 4, 9, "a")])  # older than what b stored
        stored, _ = await b.records()
        assert stored == {vm: at(vm, 5, 0, "b")}
        await a.merge([marked(vm, 3, "a")])
        stored, _ = await b.records()
    assert stored == {vm: join([at(vm, 5, 0, "b"), marked(vm, 3, "a")])}


async def test_boot_storm_of_10000_ports_from_three_controllers(connect: StoreFactory) -> None:
    """Three controllers each merge their share in one call; every record lands."""
    records = [at(mac(n), 1, 0, f"c{n % 3}", ovs=f"hv{n % 3}", port=n) for n in range(10_000)]
    async with connect() as s0, connect() as s1, connect() as s2:
        stores = [s0, s1, s2]
        await asyncio.gather(*(s.merge(records[i::3]) for i, s in enumerate(stores)))
        stored, _ = await s0.records()
    assert stored == {r.vm: r for r in records}


# -- fencing ------------------------------------------------------------------
async def test_write_fenced_by_a_revoked_lease_fails_and_changes_nothing(store: EtcdStore) -> None:
    lease = await store.grant_lease()
    fence = await store.register("c1", INFO, lease)
    vm = mac(3)
    await store.merge([at(vm, 1, 0, "c1")], [fence])
    await store.revoke(lease)
    with pytest.raises(Fenced):
        await store.merge([at(vm, 2, 0, "c1"), at(mac(4), 1, 0, "c1")], [fence])
    stored, _ = await store.records()
    assert stored == {vm: at(vm, 1, 0, "c1")}


async def test_write_fenced_by_an_expired_lease_fails(store: EtcdStore) -> None:
    lease = await store.grant_lease()  # never kept alive: expires after the TTL
    fence = await store.register("c1", INFO, lease)

    vm = mac(5)

    async def expired() -> bool:
        try:  # the same record each time: after the first, a fence check and no write
            await store.merge([at(vm, 1, 0, "c1")], [fence])
        except Fenced:
            return True
        return False

    await eventually_async(expired, "the member key expired with its lease")
    with pytest.raises(Fenced):
        await store.merge([at(vm, 2, 0, "late")], [fence])
    stored, _ = await store.records()
    assert stored == {vm: at(vm, 1, 0, "c1")}


async def test_a_new_incarnation_of_a_member_fences_the_old_one(store: EtcdStore) -> None:
    old_lease, new_lease = await store.grant_lease(), await store.grant_lease()
    old = await store.register("c1", INFO, old_lease)
    new = await store.register("c1", INFO, new_lease)  # a restart of c1 before old expired
    assert new.revision > old.revision
    with pytest.raises(Fenced):
        await store.merge([at(mac(6), 1, 0, "c1")], [old])
    await store.merge([at(mac(6), 1, 0, "c1")], [new])


# -- leader election ------------------------------------------------------------
async def test_one_campaigner_wins_and_the_other_takes_over(connect: StoreFactory) -> None:
    async with connect() as s1, connect() as s2, asyncio.TaskGroup() as tg:
        l1, l2 = await s1.grant_lease(), await s2.grant_lease()
        keepers = [tg.create_task(keep(s1, l1)), tg.create_task(keep(s2, l2))]
        c1 = tg.create_task(s1.campaign("c1", {"api": "http://c1"}, l1))
        c2 = tg.create_task(s2.campaign("c2", {"api": "http://c2"}, l2))
        done, _ = await asyncio.wait([c1, c2], return_when=asyncio.FIRST_COMPLETED)
        winner, loser = (c1, c2) if c1 in done else (c2, c1)
        (ws, wl), (ls, _) = ((s1, l1), (s2, l2)) if winner is c1 else ((s2, l2), (s1, l1))
        first = winner.result()
        await asyncio.sleep(0.2)  # give a wrong second election a chance to show
        assert not loser.done()

        await ws.revoke(wl)  # the leader dies
        second = await asyncio.wait_for(loser, 30)
        assert second.revision > first.revision
        with pytest.raises(Fenced):
            await ws.merge([at(mac(7), 1, 0, "old")], [first])
        await ls.merge([at(mac(7), 1, 0, "new")], [second])
        for task in keepers:
            task.cancel()


# -- mastership ---------------------------------------------------------------
async def test_claim_release_and_generations(store: EtcdStore) -> None:
    l1, l2 = await store.grant_lease(), await store.grant_lease()
    g1 = await store.claim("hv1", "c1", l1)
    assert g1 is not None
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
    other = await store.claim("hv2", "c2", await store.grant_lease())
    assert other is not None and other.key == "masters/hv2"


# -- etcd restarts --------------------------------------------------------------
async def test_keepalive_campaign_and_claim_survive_an_etcd_restart(
    etcd: PrivateEtcd, connect: StoreFactory
) -> None:
    # A TTL with room for etcd's restart (about half a second here) on a slow machine.
    async with connect(lease_ttl=4) as s1, connect(lease_ttl=4) as s2, asyncio.TaskGroup() as tg:
        l1, l2 = await s1.grant_lease(), await s2.grant_lease()
        k1, k2 = tg.create_task(keep(s1, l1)), tg.create_task(keep(s2, l2))
        first = await s1.campaign("c1", {"api": "http://c1"}, l1)
        waiting = tg.create_task(s2.campaign("c2", {"api": "http://c2"}, l2))

        await asyncio.to_thread(etcd.restart, True)  # SIGKILL, then start again

        mastership = await s1.claim("hv1", "c1", l1)
        assert mastership is not None
        await s1.merge([at(mac(8), 1, 0, "c1")], [first])  # still the leader: lease alive
        assert not k1.done() and not k2.done()
        assert not waiting.done()
        await s1.revoke(l1)
        second = await asyncio.wait_for(waiting, 30)
        assert second.revision > first.revision
        assert "expired or was revoked" in await asyncio.wait_for(k1, 30)
        k2.cancel()


async def test_a_call_made_while_etcd_is_down_completes_once_it_is_back(
    etcd: PrivateEtcd, connect: StoreFactory
) -> None:
    async with connect(lease_ttl=4, patience=30.0) as store:
        lease = await store.grant_lease()
        await asyncio.to_thread(etcd.kill)
        claim = asyncio.create_task(store.claim("hv9", "c1", lease))
        merge = asyncio.create_task(store.merge([at(mac(9), 1, 0, "c1")]))
        await asyncio.to_thread(etcd.start)
        fence = await claim
        await merge
        assert fence is not None
        stored, _ = await store.records()
        assert stored == {mac(9): at(mac(9), 1, 0, "c1")}


async def test_member_and_master_values(store: EtcdStore, etcd: PrivateEtcd) -> None:
    lease = await store.grant_lease()
    await store.register("c1", INFO, lease)
    await store.claim("hv1", "c1", lease)
    seen: dict[str, bytes | None] = {}
    task = asyncio.create_task(
        store.follow("", lambda kvs, _: seen.update({k: v.value for k, v in kvs.items()}),
                     lambda kvs, _: None)
    )  # fmt: skip
    try:
        await eventually(lambda: bool(seen), "the first full read")
    finally:
        task.cancel()
    assert json.loads(seen["members/c1"] or b"") == {**INFO, "id": "c1"}
    assert json.loads(seen["masters/hv1"] or b"") == {"id": "c1"}


def test_several_endpoints_must_be_ip_addresses() -> None:
    EtcdStore(["127.0.0.1:2379", "127.0.0.2:2379"])  # fails over between them
    with pytest.raises(ValueError, match="IPv4"):
        EtcdStore(["etcd-a:2379", "etcd-b:2379"])
