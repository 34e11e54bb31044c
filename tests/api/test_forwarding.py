"""A follower relays migration requests to the leader, once: real controllers over loopback.

Where a controller must see the leader otherwise than the others do, the
store makes it so, as etcd would: a controller cut off from the store
(`partition`) keeps the last leader it heard of, one whose session lease
expired (`expire`) loses its leadership. Only the leadership that moves
between a controller's two looks at it within one request needs a stub
(`ScriptedLeader`): the real service looks twice without yielding.
"""

from __future__ import annotations

import asyncio

import httpx

from tests.api.conftest import VM_A
from tests.rig.cluster import Rig
from tests.rig.http import AUTH, TOKEN, client
from vportd.api.app import create_app
from vportd.api.server import serve
from vportd.cluster.members import Peer
from vportd.cluster.peers import Forwarder
from vportd.node.service import ControllerService

NOTIFY = {"vm": VM_A.mac, "source": "hv0", "destination": "hv1"}
ANSWERED_BY = "x-vportd-answered-by"


async def test_follower_relays_to_the_leader(rig: Rig, follower: httpx.AsyncClient) -> None:
    leader = rig.leader
    got = await follower.post("/v1/migrations", json=NOTIFY)
    assert got.status_code == 201
    assert got.headers[ANSWERED_BY] == leader.id
    mid = got.json()["id"]
    assert [m.id for m in leader.core.migrations()] == [mid]

    again = await follower.post("/v1/migrations", json=NOTIFY)
    assert (again.status_code, again.json()["id"]) == (200, mid)
    listed = await follower.get("/v1/migrations")
    assert [m["id"] for m in listed.json()] == [mid]
    one = await follower.get(f"/v1/migrations/{mid}")
    assert one.json()["state"] == "ready"
    aborted = await follower.delete(f"/v1/migrations/{mid}")
    assert (aborted.status_code, aborted.json()["state"]) == (200, "aborted")
    assert leader.core.migration(mid).state == "aborted"


async def test_leader_errors_are_relayed(follower: httpx.AsyncClient) -> None:
    got = await follower.post("/v1/migrations", json={**NOTIFY, "source": "hv2"})
    assert (got.status_code, got.json()["error"]) == (409, "vm-not-on-source")
    missing = await follower.get("/v1/migrations/nope")
    assert (missing.status_code, missing.json()["error"]) == (404, "unknown-migration")


async def test_leader_unreachable_is_503_and_bad_input_is_refused_here(rig: Rig) -> None:
    leader, follower = rig.leader, rig.followers()[0]
    rig.partition(follower.id)  # it goes on believing the leader it knew
    await rig.crashed(leader.id)
    client = rig.client(follower.id)
    got = await client.post("/v1/migrations", json=NOTIFY)
    assert (got.status_code, got.json()["error"]) == (503, "leader-unreachable")
    assert leader.id in got.json()["detail"]
    # Bad input never reaches the leader: had it been relayed, it would be a 503 too.
    bad = await client.post("/v1/migrations", json={**NOTIFY, "vm": "nope"})
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid-mac")


async def test_no_leader_is_503(rig: Rig) -> None:
    old, (f, g) = rig.leader, rig.followers()
    rig.partition(f.id)  # the followers cannot campaign...
    rig.partition(g.id)
    rig.expire(old.id)  # ...when the leader's lease expires
    assert old.node is not None
    await rig.until(lambda: old.node is not None and old.node.leader_id is None, "no leader")
    rig.partition(old.id)  # and the old leader cannot campaign again
    before = rig.state()
    client = rig.client(old.id)
    for method, path in [("POST", "/v1/migrations"), ("GET", "/v1/migrations")]:
        got = await client.request(method, path, json=NOTIFY)
        assert (got.status_code, got.json()["error"]) == (503, "no-leader")
    assert old.node.leader_id is None
    assert rig.state() == before
    # Reads of the table do not need a leader.
    assert (await client.get("/v1/vports")).status_code == 200


async def test_a_relayed_request_is_not_relayed_again(rig: Rig) -> None:
    """F believes L leads; L knows G leads: F relays once, L answers 503, nothing loops."""
    old, (f, g) = rig.leader, rig.followers()
    rig.partition(f.id)  # F keeps believing `old` leads
    rig.expire(old.id)  # G takes over (`old` waits before its next session)
    await rig.until(lambda: g.core.leading and _sees(old.id, rig, g.id), f"{g.id} leads")
    before, reached = rig.state(), len(g.served.requests)
    got = await rig.client(f.id).post("/v1/migrations", json=NOTIFY)
    assert (got.status_code, got.json()["error"]) == (503, "not-leader")
    assert got.headers[ANSWERED_BY] == old.id
    assert len(g.served.requests) == reached  # not relayed a second time
    assert f.id in got.json()["detail"] and g.id in got.json()["detail"]
    assert rig.state() == before
    # G itself answers.
    assert (await rig.client(g.id).post("/v1/migrations", json=NOTIFY)).status_code == 201


async def test_a_stale_leader_without_a_new_one_is_503(rig: Rig) -> None:
    """Cut off from the store, the leader loses its session but hears of no other leader."""
    old = rig.leader
    rig.partition(old.id)
    await rig.until(lambda: not old.core.leading, f"{old.id} to step down")
    assert old.node is not None and old.node.leader_id == old.id  # (its watch is paused)
    before = rig.state()
    got = await rig.client(old.id).post("/v1/migrations", json=NOTIFY)
    assert (got.status_code, got.json()["error"]) == (503, "not-leader")
    assert rig.state() == before


class ScriptedLeader(ControllerService):
    """A follower's real service, whose idea of the leader is scripted (the last one stays)."""

    def __init__(self, real: ControllerService, script: list[Peer]) -> None:
        super().__init__(real.runtime, real.me, real.node)
        self.script = script

    def leader(self) -> Peer | None:
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]


async def test_leadership_moved_mid_request_is_relayed_once(rig: Rig) -> None:
    """The follower believes it leads (stale), its core says NotLeader, it then learns who
    leads: the request is relayed once, to the leader."""
    leader, follower = rig.leader, rig.followers()[0]
    service = ScriptedLeader(follower.service, [follower.peer, leader.peer])
    forwarder = Forwarder()
    app = create_app(
        service, token=TOKEN, peer_token=None, max_body=1 << 20,
        forwarder=forwarder,
    )  # fmt: skip
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(
        serve(app, "127.0.0.1:0", grace=1, on_listening=lambda _h, p: bound.set_result(p))
    )
    try:
        async with client(f"http://127.0.0.1:{await bound}", AUTH) as stale:
            got = await stale.post("/v1/migrations", json=NOTIFY)
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)
        await forwarder.aclose()
    assert got.status_code == 201
    assert got.headers[ANSWERED_BY] == leader.id
    assert len(leader.core.migrations()) == 1


def _sees(cid: str, rig: Rig, leader: str) -> bool:
    node = rig[cid].node
    return node is not None and node.leader_id == leader
