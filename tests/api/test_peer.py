"""East-west: the leader's vPort sync (`PUT /v1/peer/vports/{vm}`) on real controllers, through
the API and through the daemon's own client (`PeerClient`, `Forwarder`)."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import VM_A
from tests.rig.cluster import Rig
from tests.rig.http import AUTH, PEER_AUTH, PEER_TOKEN, leader_sync, sync_json, sync_path
from vportd.cluster.peers import Forwarder, PeerClient, PeerRejected, PeerUnreachable
from vportd.core.messages import SyncComplete, VPortSync
from vportd.core.pipeline import arrival_flow


def first_sync(rig: Rig, destination: str = "hv1") -> VPortSync:
    """The sync a leader would send for VM_A's first migration, hv0 to `destination`."""
    return leader_sync(rig.stored()[VM_A.mac], destination, rig.leader.id)


async def test_a_sync_is_answered_once_applied(rig: Rig) -> None:
    sync = first_sync(rig)
    destination = rig.master("hv1")
    got = await rig.client(destination.id, auth=False).put(
        sync_path(VM_A.mac), json=sync_json(sync), headers=PEER_AUTH
    )
    assert got.status_code == 200
    assert got.json() == {
        "status": "sync-complete", "migration_id": sync.migration_id, "vm": VM_A.mac,
        "controller": destination.id,
    }  # fmt: skip
    entry = destination.core.vport(VM_A.mac)
    assert (entry.migrating, entry.destination) == (True, "hv1")
    # The readiness barrier: the destination holds the VM's arrival flow already.
    assert arrival_flow(VM_A.mac) in rig.fabric.switch("hv1").table.core_flows()


async def test_a_stale_sync_is_refused_with_409(rig: Rig, leader: httpx.AsyncClient) -> None:
    """A sync of a migration that a newer one replaced (aborted, then hv0 -> hv2)."""
    first = await leader.post("/v1/migrations", json={**_notify(), "destination": "hv1"})
    assert first.status_code == 201
    old = VPortSync(rig.stored()[VM_A.mac], first.json()["id"], rig.leader.id)
    assert old.record.mig is not None and old.record.mig.id == old.migration_id
    assert (await leader.delete(f"/v1/migrations/{old.migration_id}")).status_code == 200
    assert (await leader.post("/v1/migrations", json=_notify())).status_code == 201
    await rig.settle()
    before = rig.state()
    got = await rig.client(rig.master("hv1").id, auth=False).put(
        sync_path(VM_A.mac), json=sync_json(old), headers=PEER_AUTH
    )
    assert got.status_code == 409
    assert got.json()["status"] == "sync-refused" and "newer migration" in got.json()["reason"]
    await rig.settle()
    assert rig.state() == before


def _notify() -> dict[str, str]:
    return {"vm": VM_A.mac, "source": "hv0", "destination": "hv2"}


async def test_bad_sync_bodies_change_nothing(rig: Rig) -> None:
    body = sync_json(first_sync(rig))
    record = body["record"]
    assert isinstance(record, dict)
    path = sync_path(VM_A.mac)
    bad_bodies = [
        (sync_path("02:00:00:00:00:0b"), body, 400),  # the route and the record differ
        (sync_path("nope"), body, 400),
        (path, {**body, "extra": True}, 422),
        (path, {**body, "answer": "yes"}, 422),
        (path, {**body, "record": {**record, "loc": {}}}, 422),
        (path, {**body, "record": {**record, "vm": "zz"}}, 422),
        (path, {**body, "migration_id": 5}, 422),
        (path, {k: v for k, v in body.items() if k != "leader"}, 422),
    ]
    before = rig.state()
    client = rig.client(rig.master("hv1").id, auth=False)
    for route, bad, status in bad_bodies:
        got = await client.put(route, json=bad, headers=PEER_AUTH)
        assert got.status_code == status, (route, got.json())
        assert set(got.json()) == {"error", "detail"}
    await rig.settle()
    assert rig.state() == before


# -- the daemon's own east-west client -------------------------------------------------------
async def test_peer_client_syncs_and_its_failures(rig: Rig) -> None:
    sync = first_sync(rig)
    source, destination = rig.master("hv0"), rig.master("hv1")
    client, wrong = PeerClient(PEER_TOKEN), PeerClient("not-the-peer-token")
    try:
        assert isinstance(await client.sync(destination.peer, sync), SyncComplete)
        assert isinstance(await client.sync(source.peer, sync), SyncComplete)
        with pytest.raises(PeerRejected) as refused:
            await wrong.sync(destination.peer, sync)
        assert refused.value.status == 403
        await rig.crashed(destination.id)
        with pytest.raises(PeerUnreachable) as unreachable:
            await client.sync(destination.peer, sync)
        assert unreachable.value.peer == destination.id
    finally:
        await client.aclose()
        await wrong.aclose()


async def test_forwarder_relays_any_answer_as_is(rig: Rig) -> None:
    forwarder = Forwarder(timeout=5.0)
    url = rig.leader.url
    try:
        relayed = await forwarder.forward(url, "GET", "/v1/vports", b"", AUTH)
        assert (relayed.status, relayed.content_type) == (200, "application/json")
        refused = await forwarder.forward(url, "GET", "/v1/vports", b"", {})
        assert refused.status == 401
    finally:
        await forwarder.aclose()
