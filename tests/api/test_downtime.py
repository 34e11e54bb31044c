"""A migration's timeline in `GET /v1/migrations`, and `PUT /v1/migrations/{id}/downtime`: what
a VMM or the lab measured of its traffic, kept by the leader, shown with the migration and
observed in `vportd_migration_downtime_seconds`; refused at the edge in any bad shape."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.api.conftest import VM_A
from tests.rig.cluster import Rig
from tests.rig.fabric import VmPort
from tests.rig.http import JSON, PEER_AUTH, notify_body
from vportd.api.forwarding import ANSWERED_BY

REPORT = {
    "directions": [
        {"name": "vm -> peer", "gap_s": 0.042, "lost": 12, "arrivals": [1.0, 1.001, 1.05]},
        {"name": "peer -> vm", "gap_s": 0.03, "lost": 0},
    ]
}
GOOD = {"name": "a", "gap_s": 0.1, "lost": 0}
# Bodies no controller takes: (what it is, the raw body).
BAD = [
    ("not JSON", "garbage"),
    ("a list", "[]"),
    ("no directions", "{}"),
    ("none", json.dumps({"directions": []})),
    ("five", json.dumps({"directions": [GOOD] * 5})),
    ("a string", json.dumps({"directions": "a"})),
    ("an unknown field", json.dumps({"directions": [GOOD], "extra": 1})),
    ("a direction's unknown field", json.dumps({"directions": [{**GOOD, "x": 1}]})),
    ("no name", json.dumps({"directions": [{"gap_s": 0.1, "lost": 0}]})),
    ("an empty name", json.dumps({"directions": [{**GOOD, "name": ""}]})),
    ("a long name", json.dumps({"directions": [{**GOOD, "name": "n" * 65}]})),
    ("a negative gap", json.dumps({"directions": [{**GOOD, "gap_s": -0.1}]})),
    ("a string gap", json.dumps({"directions": [{**GOOD, "gap_s": "0.1"}]})),
    ("NaN", '{"directions": [{"name": "a", "gap_s": NaN, "lost": 0}]}'),
    ("Infinity", '{"directions": [{"name": "a", "gap_s": Infinity, "lost": 0}]}'),
    ("too big a float", '{"directions": [{"name": "a", "gap_s": 1e400, "lost": 0}]}'),
    ("negative loss", json.dumps({"directions": [{**GOOD, "lost": -1}]})),
    ("fractional loss", json.dumps({"directions": [{**GOOD, "lost": 1.5}]})),
    ("huge loss", json.dumps({"directions": [{**GOOD, "lost": 10**30}]})),
    ("a null loss", json.dumps({"directions": [{**GOOD, "lost": None}]})),
    ("5001 arrivals", json.dumps({"directions": [{**GOOD, "arrivals": [1.0] * 5001}]})),
    ("a negative arrival", json.dumps({"directions": [{**GOOD, "arrivals": [1.0, -1.0]}]})),
    ("a nested arrival", json.dumps({"directions": [{**GOOD, "arrivals": [[1.0]]}]})),
]


@pytest.fixture
async def migrated(rig: Rig, leader: httpx.AsyncClient) -> str:
    """VM_A's completed migration hv0 -> hv1: its id."""
    done = await leader.post("/v1/migrations", json=notify_body(VM_A.mac, "hv0", "hv1"))
    assert done.status_code == 201, done.text
    await rig.live_migrate(VM_A, VmPort(VM_A.mac, "hv1", 3))
    mid: str = done.json()["id"]
    await rig.until(lambda: rig.leader.core.migration(mid).state == "completed", "completion")
    return mid


def downtime_count(rig: Rig) -> float:
    registry, me = rig.leader.runtime.metrics.registry, rig.leader.id
    name = "vportd_migration_downtime_seconds_count"
    return registry.get_sample_value(name, {"controller": me}) or 0.0


async def test_a_migration_shows_its_timeline_in_wall_clock_time(
    rig: Rig, leader: httpx.AsyncClient, follower: httpx.AsyncClient
) -> None:
    before = time.time()
    done = await leader.post("/v1/migrations", json=notify_body(VM_A.mac, "hv0", "hv1"))
    await rig.live_migrate(VM_A, VmPort(VM_A.mac, "hv1", 3))
    mid = done.json()["id"]
    await rig.until(lambda: rig.leader.core.migration(mid).state == "completed", "completion")
    after = time.time()

    for client in (leader, follower):
        shown = (await client.get(f"/v1/migrations/{mid}")).json()
        listed = (await client.get("/v1/migrations")).json()
        assert [m["timeline"] for m in listed if m["id"] == mid] == [shown["timeline"]]
        steps = [s["step"] for s in shown["timeline"]]
        assert steps[0] == "notify" and steps[-1] == "completed"
        assert "ready" in steps and any(s.startswith("sync c") for s in steps)
        times = [s["at"] for s in shown["timeline"]]
        assert times == sorted(times)
        # Wall-clock: within the test's own before and after (a second's slack either side).
        assert before - 1 <= times[0] <= times[-1] <= after + 1
    # The answer to the notify carries the timeline so far.
    assert [s["step"] for s in done.json()["timeline"]][-1] == "ready"


async def test_a_reported_downtime_shows_with_its_migration_and_in_the_metrics(
    rig: Rig, migrated: str, leader: httpx.AsyncClient, follower: httpx.AsyncClient
) -> None:
    put = await follower.put(f"/v1/migrations/{migrated}/downtime", json=REPORT)

    assert put.status_code == 200, put.text
    assert put.headers[ANSWERED_BY] == rig.leader.id  # the follower relayed it
    expected = [{"arrivals": [], **d} for d in REPORT["directions"]]
    assert put.json()["downtime"]["directions"] == expected
    for client in (leader, follower):
        shown = (await client.get(f"/v1/migrations/{migrated}")).json()
        assert shown["downtime"]["directions"] == expected
        assert shown["state"] == "completed"
    assert downtime_count(rig) == 2.0  # one observation per direction
    scrape = (await rig.client(rig.leader.id, auth=False).get("/metrics")).text
    assert "vportd_migration_downtime_seconds_bucket" in scrape


async def test_a_report_for_an_unknown_migration_is_404(
    rig: Rig, leader: httpx.AsyncClient, follower: httpx.AsyncClient
) -> None:
    for client in (leader, follower):
        got = await client.put("/v1/migrations/nope-1/downtime", json=REPORT)
        assert got.status_code == 404
        assert got.json()["error"] == "unknown-migration"
    assert downtime_count(rig) == 0.0


async def test_a_report_needs_the_northbound_token(rig: Rig, migrated: str) -> None:
    path = f"/v1/migrations/{migrated}/downtime"
    for member in (rig.leader, rig.followers()[0]):
        bare = rig.client(member.id, auth=False)
        assert (await bare.put(path, json=REPORT)).status_code == 401
        # The controllers' own token is for the east-west routes only.
        assert (await bare.put(path, json=REPORT, headers=PEER_AUTH)).status_code in (401, 403)
    assert rig.leader.core.migration(migrated).downtime is None


async def test_a_bad_report_is_refused_at_the_edge(
    rig: Rig, migrated: str, leader: httpx.AsyncClient, follower: httpx.AsyncClient
) -> None:
    path = f"/v1/migrations/{migrated}/downtime"
    for what, body in BAD:
        for client in (leader, follower):
            got = await client.put(path, content=body, headers=JSON)
            assert 400 <= got.status_code < 500, (what, got.status_code, got.text)
            assert set(got.json()) == {"error", "detail"}, what
    assert rig.leader.core.migration(migrated).downtime is None
    assert downtime_count(rig) == 0.0
