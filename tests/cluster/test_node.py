"""ClusterNode against a real etcd: a master's records reach the store of record even when
its session, or the master itself, goes away while they are on their way.

The boot storm showed both holes: a controller's merge in flight when its lease
went was dropped with the session (no retry: the records were only in its own
table and in the peer copies of the members of that moment), and the next
master of those switches re-fed their ports, found its table already right and
wrote nothing. A controller that was not a member at that moment never got them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.cluster.support import at, eventually, eventually_async, mac
from vportd.cluster.etcd import KV, EtcdStore, Fence
from vportd.cluster.members import Peer
from vportd.cluster.node import ClusterNode
from vportd.cluster.peers import PeerClient
from vportd.core.messages import EventKind, Reason, Write
from vportd.core.model import VPortRecord
from vportd.node.config import Config
from vportd.node.runtime import Runtime
from vportd.southbound.ovsdb.snapshot import IfaceRow, Snapshot
from vportd_lab.bed.etcd import PrivateEtcd

pytestmark = pytest.mark.etcd


class GatedStore(EtcdStore):
    """An EtcdStore whose first record merge waits for the test's word before it goes out."""

    def __init__(self, endpoints: list[str], prefix: str) -> None:
        super().__init__(endpoints, prefix, lease_ttl=2)
        self.leases: list[int] = []
        self.in_flight = asyncio.Event()
        self.go_on = asyncio.Event()
        self._gated = True

    async def grant_lease(self) -> int:
        lease = await super().grant_lease()
        self.leases.append(lease)
        return lease

    async def merge(self, records: Sequence[VPortRecord], fences: Sequence[Fence] = ()) -> None:
        if self._gated:
            self._gated = False
            self.in_flight.set()
            await self.go_on.wait()
        await super().merge(records, fences)


def runtime(me: str, tmp_path: Path) -> Runtime:
    token = tmp_path / "peer-token"
    token.write_text("t")
    config = Config.model_validate({
        "controller": {"id": me},
        "store": {"kind": "etcd", "lease_ttl": 2},
        "api": {"peer_token_file": str(token)},
        "ovsdb": {"remotes": []},
    })  # fmt: skip
    return Runtime(config)


@asynccontextmanager
async def running(rt: Runtime, store: EtcdStore) -> AsyncIterator[ClusterNode]:
    """`rt`'s ClusterNode in a session on `store` (its runtime's effects carried out too)."""
    node = ClusterNode(store, PeerClient(None), Peer(rt.core.me, "http://127.0.0.1:9"), rt)
    rt.attach(node)
    tasks = [asyncio.create_task(node.run()), asyncio.create_task(rt.executor.run())]
    try:
        await eventually(lambda: node.in_session, "the first session")
        yield node
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def stored(store: EtcdStore, vm: str) -> VPortRecord | None:
    records, _ = await store.records()
    return records.get(vm)


@pytest.mark.parametrize("how", ["fenced", "cancelled"])
async def test_records_in_flight_when_the_session_ends_are_written_by_the_next(
    etcd: PrivateEtcd, store: EtcdStore, tmp_path: Path, how: str
) -> None:
    """The lease goes while a merge is on its way: the records land in the next session.

    fenced: the merge goes out after the lease went and fails its fence;
    cancelled: it is still waiting when keep_alive ends the session.
    """
    rec = at(mac(1), 0, 3, "c0")
    gated = GatedStore([etcd.endpoint], "/test")
    async with gated, running(runtime("c0", tmp_path), gated) as node:
        node.persist([Write(rec, EventKind.MODIFY, Reason.PORT)])
        await asyncio.wait_for(gated.in_flight.wait(), 10)
        await gated.revoke(gated.leases[-1])
        if how == "fenced":
            gated.go_on.set()
        await eventually(lambda: len(gated.leases) > 1, "a new session")
        await eventually_async(lambda: _equals(store, rec), "the record in etcd", timeout=10)


async def _equals(store: EtcdStore, rec: VPortRecord) -> bool:
    return await stored(store, rec.vm) == rec


async def test_a_new_master_writes_the_records_of_its_switch_the_old_one_did_not(
    store: EtcdStore, tmp_path: Path
) -> None:
    """c1 mastered hv1 and died with a port's record sent to c0 but not yet in etcd:
    c0, the new master, re-reads the port from OVSDB and finds its table right, and
    must still write the record (else a controller that missed c1's copy never gets it)."""
    vm = mac(2)
    rt = runtime("c0", tmp_path)
    row = IfaceRow("tap1", "hv1", 1, True, vm)
    await rt._on_snapshot("ovsdb", Snapshot({"hv1": 1}, {"tap1": row}))
    copy = at(vm, 0, 1, "c1")  # c1's entry: added (rev 0), then up (rev 1)
    rt.stored([copy])
    assert rt.core.record(vm) == copy
    async with running(rt, store) as node:
        await eventually(lambda: "hv1" in node._mine, "c0 masters hv1")
        await eventually_async(
            lambda: _present(store, vm), "the entry of hv1's port in etcd", timeout=10
        )
    held = rt.core.record(vm)
    assert held is not None and held.loc.ovs == "hv1"
    assert await stored(store, vm) == held


async def _present(store: EtcdStore, vm: str) -> bool:
    return await stored(store, vm) is not None


async def test_events_older_than_our_claim_do_not_take_the_switch_away(
    store: EtcdStore, tmp_path: Path
) -> None:
    """The watch lags behind our own claim: the previous master's key and its deletion
    arrive after it (seen in CI: c1 claimed hv0 from c0, then read c0's old key and let
    hv0 go, and no one mastered it). Those events are older than our key: not news."""
    rt = runtime("c0", tmp_path)
    await rt._on_snapshot("ovsdb", Snapshot({"hv1": 1}, {}))
    async with running(rt, store) as node:
        await eventually(lambda: "hv1" in node._mine, "c0 masters hv1")
        ours = node._mine["hv1"].revision
        old = json.dumps({"id": "c9"}).encode()
        node._masters_changed(
            [KV("masters/hv1", old, ours - 2, ours - 2), KV("masters/hv1", None, 0, ours - 1)],
            ours - 1,
        )
        assert "hv1" in node._mine and rt.mastered("hv1")
        assert node.masters["hv1"] == ("c0", ours)
