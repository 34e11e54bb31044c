"""A follower relays migration requests to the leader: two (three) apps over routed HTTP."""

from __future__ import annotations

import httpx

from tests.api.conftest import AUTH, Rig
from tests.api.fake import NO_LEADER, VM_A, state

NOTIFY = {"vm": VM_A, "source": "hv0", "destination": "hv1"}


async def test_follower_relays_notify_to_the_leader(rig: Rig, follower: httpx.AsyncClient) -> None:
    got = await follower.post("/v1/migrations", json=NOTIFY, headers=AUTH)
    assert got.status_code == 201
    assert got.headers["x-vportd-answered-by"] == "c0"
    mid = got.json()["id"]
    assert [m.id for m in rig.services["c0"].migrations()] == [mid]

    again = await follower.post("/v1/migrations", json=NOTIFY, headers=AUTH)
    assert (again.status_code, again.json()["id"]) == (200, mid)
    listed = await follower.get("/v1/migrations", headers=AUTH)
    assert [m["id"] for m in listed.json()] == [mid]
    one = await follower.get(f"/v1/migrations/{mid}", headers=AUTH)
    assert one.json()["state"] == "ready"
    aborted = await follower.delete(f"/v1/migrations/{mid}", headers=AUTH)
    assert (aborted.status_code, aborted.json()["state"]) == (200, "aborted")


async def test_leader_errors_are_relayed(rig: Rig, follower: httpx.AsyncClient) -> None:
    got = await follower.post("/v1/migrations", json={**NOTIFY, "source": "hv2"}, headers=AUTH)
    assert (got.status_code, got.json()["error"]) == (409, "vm-not-on-source")
    missing = await follower.get("/v1/migrations/nope", headers=AUTH)
    assert (missing.status_code, missing.json()["error"]) == (404, "unknown-migration")


async def test_follower_refuses_bad_input_itself(rig: Rig, follower: httpx.AsyncClient) -> None:
    rig.router.down.add("c0.test")  # had it been relayed, this would be a 503
    got = await follower.post("/v1/migrations", json={**NOTIFY, "vm": "nope"}, headers=AUTH)
    assert (got.status_code, got.json()["error"]) == (400, "invalid-mac")


async def test_no_leader_is_503(rig: Rig, follower: httpx.AsyncClient) -> None:
    rig.services["c1"].default_leader = NO_LEADER
    before = state(rig.sim)
    for method, path in [("POST", "/v1/migrations"), ("GET", "/v1/migrations")]:
        got = await follower.request(method, path, json=NOTIFY, headers=AUTH)
        assert (got.status_code, got.json()["error"]) == (503, "no-leader")
    assert state(rig.sim) == before
    # Reads of the table do not need a leader.
    assert (await follower.get("/v1/vports", headers=AUTH)).status_code == 200


async def test_leader_unreachable_is_503(rig: Rig, follower: httpx.AsyncClient) -> None:
    rig.router.down.add("c0.test")
    got = await follower.post("/v1/migrations", json=NOTIFY, headers=AUTH)
    assert (got.status_code, got.json()["error"]) == (503, "leader-unreachable")
    assert "c0" in got.json()["detail"]


async def test_split_views_never_loop(rig: Rig, follower: httpx.AsyncClient) -> None:
    # c1 believes c2 leads and c2 believes c1 leads: one relay, then a 503.
    rig.services["c1"].default_leader = "c2"
    rig.services["c2"].default_leader = "c1"
    before = state(rig.sim)
    got = await follower.post("/v1/migrations", json=NOTIFY, headers=AUTH)
    assert (got.status_code, got.json()["error"]) == (503, "not-leader")
    assert got.headers["x-vportd-answered-by"] == "c2"
    assert state(rig.sim) == before


async def test_leadership_moved_mid_request_is_relayed_once(
    rig: Rig, follower: httpx.AsyncClient
) -> None:
    # c1 believes it leads (stale); its core says NotLeader; then it learns c0 leads.
    rig.services["c1"].leader_script = ["c1", "c0"]
    got = await follower.post("/v1/migrations", json=NOTIFY, headers=AUTH)
    assert got.status_code == 201
    assert got.headers["x-vportd-answered-by"] == "c0"
    assert len(rig.services["c0"].migrations()) == 1


async def test_not_leader_without_a_new_leader_is_503(
    rig: Rig, follower: httpx.AsyncClient
) -> None:
    rig.services["c1"].default_leader = "c1"
    got = await follower.post("/v1/migrations", json=NOTIFY, headers=AUTH)
    assert (got.status_code, got.json()["error"]) == (503, "not-leader")
