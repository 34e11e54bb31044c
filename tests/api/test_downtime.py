"""A migration's timeline in `GET /v1/migrations`, and `PUT /v1/migrations/{id}/downtime`: what
a VMM or the lab measured of its traffic, kept by the leader, shown with the migration and
observed in `vportd_migration_downtime_seconds`; refused at the edge in any bad shape."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import VM_A
from tests.rig.cluster import Rig
from tests.rig.fabric import VmPort
from tests.rig.http import JSON, PEER_AUTH, free_port, notify_body, token_files
from vportd.api.forwarding import ANSWERED_BY
from vportd.ctl.target import Target
from vportd_lab.bed.downtime import MAX_ARRIVALS, body, report_downtime, send
from vportd_lab.bed.migrate import MigrationReport
from vportd_lab.bed.probe_report import DirectionReport, ProbeReport

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
    for what, raw in BAD:
        for client in (leader, follower):
            got = await client.put(path, content=raw, headers=JSON)
            assert 400 <= got.status_code < 500, (what, got.status_code, got.text)
            assert set(got.json()) == {"error", "detail"}, what
    assert rig.leader.core.migration(migrated).downtime is None
    assert downtime_count(rig) == 0.0


def lab_report(
    mid: str, series_ms: int = 1000, gap: tuple[int, int] = (500, 560)
) -> MigrationReport:
    """A `lab migrate --probe` report of migration `mid`: a packet each ms but in `gap`."""
    series = [0 if gap[0] <= ms < gap[1] else 1 for ms in range(series_ms)]

    def direction(source: str, destination: str) -> DirectionReport:
        return DirectionReport(
            source=source, destination=destination, sent=series_ms, received=sum(series),
            lost=series_ms - sum(series), duplicates=0, reordered=0, send_errors=0,
            skipped_slots=0, rate_pps=1000.0, late_us_p50=10.0, late_us_p99=50.0,
            late_us_max=80.0, longest_gap_ms=float(gap[1] - gap[0] + 1),
            gap_start_ms=gap[0] - 1.0, gap_end_ms=float(gap[1]), gap_lost=gap[1] - gap[0],
            first_rx_ms=0.0, last_rx_ms=series_ms - 1.0, latency_ms_p50=0.1,
            latency_ms_max=0.5, series=series,
        )  # fmt: skip

    probe = ProbeReport(
        interval_ms=1.0, t0_ns=10**12, duration_ms=float(series_ms), series_bin_ms=1.0,
        rx_clock="kernel", sched="other", clock_stepped=False,
        a_to_b=direction("vm0/10.0.0.1", "vm2/10.0.0.3"),
        b_to_a=direction("vm2/10.0.0.3", "vm0/10.0.0.1"),
    )  # fmt: skip
    return MigrationReport(
        vm="vm0", mac=VM_A.mac, source="hv0", destination="hv1", outcome="migrated",
        fail_at=None, migration_id=mid, handshake_ms=3.0, switchover_gap_ms=58.0,
        switchover_start_ms=499.0, switchover_end_ms=558.0, longest_gap_ms=61.0,
        longest_gap_ab_ms=61.0, longest_gap_ba_ms=61.0, lost_ab=60, lost_ba=60,
        excess_ms=3.0, converged_ms=5.0, peer="vm2", probe=probe.to_dict(),
    )  # fmt: skip


def test_the_labs_report_is_the_probes_measurement_in_wall_clock_time() -> None:
    doc = body(lab_report("m-1"), t0=1_000_000.0)

    assert doc is not None
    ab, ba = doc["directions"]
    assert (ab["name"], ba["name"]) == ("vm0 -> vm2", "vm2 -> vm0")
    assert (ab["gap_s"], ab["lost"]) == (0.061, 60)
    assert ab["arrivals"][:2] == [1_000_000.0, 1_000_000.001]
    assert 1_000_000.5 not in ab["arrivals"]  # in the gap
    assert len(ab["arrivals"]) == 1000 - 60
    assert body(dataclasses.replace(lab_report("m-1"), probe=None)) is None
    assert body(dataclasses.replace(lab_report("m-1"), migration_id=None)) is None


def test_a_long_run_reports_the_arrivals_nearest_the_gap() -> None:
    doc = body(lab_report("m-1", series_ms=20_000, gap=(15_000, 15_100)), t0=0.0)

    assert doc is not None
    arrivals = doc["directions"][0]["arrivals"]
    assert len(arrivals) == MAX_ARRIVALS
    assert arrivals[0] < 14.999 and arrivals[-1] > 15.1  # the gap is inside, near the middle
    assert not [t for t in arrivals if 15.0 <= t < 15.1]


async def test_the_cluster_takes_the_labs_report(
    rig: Rig, migrated: str, leader: httpx.AsyncClient
) -> None:
    doc = body(lab_report(migrated))
    put = await leader.put(f"/v1/migrations/{migrated}/downtime", json=doc)

    assert put.status_code == 200, put.text
    directions = put.json()["downtime"]["directions"]
    assert [len(d["arrivals"]) for d in directions] == [940, 940]
    assert downtime_count(rig) == 2.0


async def test_the_lab_sends_its_report_and_a_failure_is_a_warning(
    rig: Rig, migrated: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vmm_token, _ = token_files(tmp_path / "tokens")
    follower = Target((rig.followers()[0].url,), "test", vmm_token, "test")
    nowhere = Target((f"http://127.0.0.1:{free_port()}",), "test", vmm_token, "test")
    report = lab_report(migrated)

    assert await asyncio.to_thread(send, follower, report) is True
    shown = rig.leader.core.migration(migrated).downtime
    assert shown is not None and [d.name for d in shown.directions] == ["vm0 -> vm2", "vm2 -> vm0"]

    assert await asyncio.to_thread(send, nowhere, report) is False
    assert await asyncio.to_thread(report_downtime, tmp_path / "no-lab", report) is False
    assert capsys.readouterr().err.count("warning: the probe's measurement was not reported") == 2
    assert downtime_count(rig) == 2.0  # the one report that arrived
