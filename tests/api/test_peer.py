"""East-west: the vPort sync PUT and port-event POSTs, through the app and the PeerClient."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import PEER_AUTH, PEER_TOKEN, Rig
from tests.api.fake import VM_A, state, url_of
from vportd.api.service import Peer
from vportd.cluster.peers import PeerClient, PeerRejected, PeerUnreachable
from vportd.core.messages import (
    EventKind,
    PortEvent,
    PortEventSync,
    Send,
    SyncComplete,
    SyncRefused,
    VPortSync,
)
from vportd.core.wire import NotifyRequest, to_rest


def leader_syncs(rig: Rig, dst: str = "hv1") -> dict[str, VPortSync]:
    """The leader's vPort syncs for VM_A hv0→dst, per controller, not delivered."""
    _, _, effects = rig.sim.controllers["c0"].notify(VM_A, "hv0", dst, rig.sim.now)
    return {
        e.to: e.message for e in effects if isinstance(e, Send) and isinstance(e.message, VPortSync)
    }


def boot_storm(rig: Rig, n: int) -> list[PortEventSync]:
    """`n` ports added on hv1 by its master c1; the syncs it would send to c0."""
    ctl, msgs = rig.sim.controllers["c1"], []
    for i in range(n):
        mac = f"02:00:00:01:{i // 256:02x}:{i % 256:02x}"
        for e in ctl.port_event(PortEvent(EventKind.ADD, "hv1", 1000 + i, mac), rig.sim.now):
            if isinstance(e, Send) and e.to == "c0" and isinstance(e.message, PortEventSync):
                msgs.append(e.message)
    return msgs


async def test_vport_sync_answers_sync_complete(rig: Rig, follower: httpx.AsyncClient) -> None:
    sync = leader_syncs(rig)["c1"]
    call = to_rest(sync)
    got = await follower.request(call.method, call.path, json=call.body, headers=PEER_AUTH)
    assert got.status_code == 200
    assert got.json() == {
        "status": "sync-complete", "migration_id": sync.migration_id, "vm": VM_A,
        "controller": "c1",
    }  # fmt: skip
    assert rig.sim.controllers["c1"].table.require(VM_A).migrating


async def test_vport_sync_without_answer_is_204(rig: Rig) -> None:
    sync = leader_syncs(rig)["c2"]
    assert not sync.answer
    async with rig.client("c2") as client:
        call = to_rest(sync)
        got = await client.request(call.method, call.path, json=call.body, headers=PEER_AUTH)
    assert (got.status_code, got.content) == (204, b"")
    assert rig.sim.controllers["c2"].table.require(VM_A).migrating


async def test_stale_sync_is_refused_with_409(rig: Rig, follower: httpx.AsyncClient) -> None:
    old = leader_syncs(rig)["c1"]
    rig.sim.deliver_all()
    leader = rig.services["c0"]
    await leader.abort(old.migration_id)
    await leader.notify(NotifyRequest(VM_A, "hv0", "hv2"))
    call = to_rest(old)
    got = await follower.request(call.method, call.path, json=call.body, headers=PEER_AUTH)
    assert got.status_code == 409
    assert got.json()["status"] == "sync-refused" and got.json()["reason"]


async def test_bad_sync_bodies_change_nothing(rig: Rig, follower: httpx.AsyncClient) -> None:
    call = to_rest(leader_syncs(rig)["c1"])
    before = state(rig.sim)
    bad_bodies = [
        ("/v1/peer/vports/02:00:00:00:00:0b", call.body, 400),  # path and record differ
        ("/v1/peer/vports/nope", call.body, 400),
        (call.path, {**call.body, "extra": True}, 422),
        (call.path, {**call.body, "answer": "yes"}, 422),
        (call.path, {**call.body, "record": {**call.body["record"], "loc": {}}}, 422),
        (call.path, {**call.body, "record": {**call.body["record"], "vm": "zz"}}, 422),
    ]
    for path, body, status in bad_bodies:
        got = await follower.put(path, json=body, headers=PEER_AUTH)
        assert got.status_code == status, (path, got.json())
        assert set(got.json()) == {"error", "detail"}
    assert state(rig.sim) == before


async def test_one_port_event_and_a_batch(rig: Rig, leader: httpx.AsyncClient) -> None:
    msgs = boot_storm(rig, 50)
    one = await leader.post("/v1/peer/port-events", json=to_rest(msgs[0]).body, headers=PEER_AUTH)
    assert one.status_code == 204
    assert rig.sim.controllers["c0"].table.get(msgs[0].record.vm) is not None
    batch = {"events": [to_rest(m).body for m in msgs[1:]]}
    got = await leader.post("/v1/peer/port-events", json=batch, headers=PEER_AUTH)
    assert got.status_code == 204
    table = rig.sim.controllers["c0"].table
    assert all(table.get(m.record.vm) is not None for m in msgs)


async def test_a_batch_with_one_bad_event_applies_nothing(
    rig: Rig, leader: httpx.AsyncClient
) -> None:
    bodies = [to_rest(m).body for m in boot_storm(rig, 5)]
    bodies[3] = {**bodies[3], "kind": "explode"}
    before = state(rig.sim)
    got = await leader.post("/v1/peer/port-events", json={"events": bodies}, headers=PEER_AUTH)
    assert got.status_code == 422
    assert state(rig.sim) == before


# -- the client side ---------------------------------------------------------------
@pytest.fixture
async def client(rig: Rig) -> PeerClient:
    return PeerClient(PEER_TOKEN, max_batch_bytes=16 * 1024, http=rig.http())


def peer(cid: str) -> Peer:
    return Peer(cid, url_of(cid))


async def test_peer_client_sync(rig: Rig, client: PeerClient) -> None:
    syncs = leader_syncs(rig)
    assert isinstance(await client.sync(peer("c1"), syncs["c1"]), SyncComplete)
    assert await client.sync(peer("c2"), syncs["c2"]) is None
    assert isinstance(await client.sync(peer("c0"), syncs["c0"]), SyncComplete | SyncRefused)
    await client.aclose()


async def test_peer_client_boot_storm_in_batches(rig: Rig, client: PeerClient) -> None:
    msgs = boot_storm(rig, 2000)  # about 0.9 MB of JSON: several requests under the limit
    await client.port_events(peer("c0"), msgs)
    table = rig.sim.controllers["c0"].table
    assert all(table.get(m.record.vm) is not None for m in msgs)
    await client.aclose()


async def test_peer_client_failures(rig: Rig, client: PeerClient) -> None:
    sync = leader_syncs(rig)["c1"]
    rig.router.down.add("c1.test")
    with pytest.raises(PeerUnreachable) as unreachable:
        await client.sync(peer("c1"), sync)
    assert unreachable.value.peer == "c1"
    rig.router.down.clear()
    wrong = PeerClient("not-the-token", http=rig.http())
    with pytest.raises(PeerRejected) as rejected:
        await wrong.sync(peer("c1"), sync)
    assert rejected.value.status == 403
    await wrong.aclose()
    await client.aclose()
