"""follow() against a real etcd: resume after an etcd restart, full resync after compaction."""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading

import pytest

from tests.cluster.conftest import StoreFactory
from tests.cluster.support import PATIENCE, Mirror, at, eventually, eventually_async, mac
from vportd.cluster.codec import decode_record, encode_record
from vportd.cluster.etcd import EtcdStore
from vportd.cluster.store import KV
from vportd_lab.bed.etcd import PrivateEtcd

pytestmark = pytest.mark.etcd


async def equal_to_etcd(mirror: Mirror, store: EtcdStore) -> bool:
    stored, _ = await store.records()
    return mirror.records() == stored


async def test_follow_resumes_after_an_etcd_restart(
    etcd: PrivateEtcd, connect: StoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vportd.etcd")
    mirror = Mirror()
    before = [at(mac(n), 1, 0, "w") for n in range(50)]
    unseen = [at(mac(n), 2, 0, "w") for n in range(40, 60)]  # written just before the crash
    after = [at(mac(n), 3, 0, "w") for n in range(55, 80)]
    async with connect(patience=30.0) as follower, connect(patience=30.0) as writer:
        task = asyncio.create_task(follower.follow("vports/", mirror.reset, mirror.change))
        try:
            await eventually(lambda: bool(mirror.resets), "the first full read")
            await writer.merge(before)
            await eventually_async(lambda: equal_to_etcd(mirror, writer), "the first writes")
            await writer.merge(unseen)
            await asyncio.to_thread(etcd.restart, True)  # SIGKILL and start again
            await writer.merge(after)
            await eventually_async(lambda: equal_to_etcd(mirror, writer), "the view equals etcd")
        finally:
            task.cancel()
    assert len(mirror.resets) == 1  # resumed, never reloaded
    assert mirror.revisions == sorted(set(mirror.revisions))  # no revision twice, in order
    assert {f"vports/{r.vm}" for r in before + unseen + after} <= mirror.keys_seen
    assert any("watching again after revision" in r.getMessage() for r in caplog.records)


async def test_follow_resyncs_when_its_revision_was_compacted(
    etcd: PrivateEtcd, connect: StoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vportd.etcd")
    mirror = Mirror()
    outage_done = threading.Event()
    missed = [at(mac(n), 5, 0, "gw") for n in range(10, 30)]

    def outage() -> None:
        """While the follower is stuck: restart etcd, write, compact past the follower."""
        etcd.restart(hard=True)
        for rec in missed:
            etcd.put(f"/test/vports/{rec.vm}", encode_record(rec))
        etcd.compact()
        outage_done.set()

    def pause_follower() -> None:
        # Blocks the event loop on purpose: the follower can neither read nor
        # reconnect until etcd has restarted and compacted past its revision.
        worker = threading.Thread(target=outage)
        worker.start()
        outage_done.wait(PATIENCE)
        worker.join(PATIENCE)

    mirror.on_hook = pause_follower
    mirror.hook = f"vports/{mac(99)}"
    async with connect(patience=30.0) as follower, connect(patience=30.0) as writer:
        task = asyncio.create_task(follower.follow("vports/", mirror.reset, mirror.change))
        try:
            await eventually(lambda: bool(mirror.resets), "the first full read")
            await writer.merge([at(mac(n), 1, 0, "w") for n in range(20)])
            await writer.merge([at(mac(99), 1, 0, "w")])  # the hook: pauses the follower
            await eventually(outage_done.is_set, "the outage")
            await eventually(lambda: len(mirror.resets) == 2, "a second full read")
            await writer.merge([at(mac(n), 6, 0, "w") for n in range(25, 35)])
            await eventually_async(lambda: equal_to_etcd(mirror, writer), "the view equals etcd")
        finally:
            task.cancel()
    assert mirror.resets[1] > mirror.resets[0]
    assert any("full resync" in r.getMessage() for r in caplog.records)
    for rec in missed[:15]:  # written only while the follower was paused (not after)
        assert mirror.records()[rec.vm] == rec


async def test_follow_sees_deletions_of_role_keys(store: EtcdStore) -> None:
    mirror = Mirror()
    lease = await store.grant_lease()
    task = asyncio.create_task(store.follow("masters/", mirror.reset, mirror.change))
    try:
        await eventually(lambda: bool(mirror.resets), "the first full read")
        fence = await store.claim("hv1", "c1", lease)
        assert fence is not None
        await eventually(lambda: "masters/hv1" in mirror.view, "the claim")
        assert mirror.view["masters/hv1"].create_revision == fence.revision
        await store.release(fence)
        await eventually(lambda: "masters/hv1" not in mirror.view, "the release")
    finally:
        task.cancel()


async def test_follow_reloads_when_etcd_comes_back_with_another_history(
    etcd: PrivateEtcd, connect: StoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """etcd restored empty (data dir lost): the follower must not wait for its old revision."""
    caplog.set_level(logging.INFO, logger="vportd.etcd")
    mirror = Mirror()
    async with connect(patience=30.0) as follower, connect(patience=30.0) as writer:
        task = asyncio.create_task(follower.follow("vports/", mirror.reset, mirror.change))
        try:
            await eventually(lambda: bool(mirror.resets), "the first full read")
            for n in range(10):  # ten revisions: more than the new history will have
                await writer.merge([at(mac(n), 1, 0, "w")])
            await eventually_async(lambda: equal_to_etcd(mirror, writer), "the first writes")

            def wipe() -> None:
                etcd.stop()
                shutil.rmtree(etcd.data_dir)
                etcd.start()

            await asyncio.to_thread(wipe)
            await writer.merge([at(mac(50), 1, 0, "w")])
            await eventually(lambda: len(mirror.resets) == 2, "a second full read")
            await eventually_async(lambda: equal_to_etcd(mirror, writer), "the view equals etcd")
        finally:
            task.cancel()
    assert set(mirror.records()) == {mac(50)}
    assert any("another history" in r.getMessage() for r in caplog.records)


async def test_follow_hands_back_the_records_of_its_own_writes_and_decodes_the_others(
    connect: StoreFactory,
) -> None:
    """Our own writes come back with the record we wrote (equal to what decoding gives);
    another writer's, and a value of ours overwritten since, are decoded as ever."""
    mirror = Mirror()
    mine = [at(mac(n), 1, 0, "me") for n in range(5)]
    theirs = [at(mac(n), 1, 0, "they") for n in range(5, 10)]
    newer = at(mac(0), 2, 0, "they")
    async with connect() as follower, connect() as other:
        task = asyncio.create_task(follower.follow("vports/", mirror.reset, mirror.change))
        try:
            await eventually(lambda: bool(mirror.resets), "the first full read")
            await follower.merge(mine)
            await other.merge(theirs)
            await other.merge([newer])
            await eventually_async(lambda: equal_to_etcd(mirror, other), "every write seen")
        finally:
            task.cancel()
    by_key: dict[str, list[KV]] = {}
    for kv in mirror.events:
        by_key.setdefault(kv.key, []).append(kv)
    for rec in mine:
        first = by_key[f"vports/{rec.vm}"][0]
        assert first.record == rec and first.value is not None
        assert decode_record(first.value) == first.record
    for rec in [*theirs, newer]:
        assert by_key[f"vports/{rec.vm}"][-1].record is None
