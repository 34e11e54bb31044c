"""The probe's measurement of a migration, reported to the cluster
(`PUT /v1/migrations/{id}/downtime`).

After `lab migrate --probe`, and after each of the demo's migrations, the lab
sends, with its token, each direction's longest gap, its losses and when its
packets arrived (the series' bins that received any, the `MAX_ARRIVALS`
nearest the gap) in wall-clock unix seconds, the time of the migration's
timeline: the leader keeps it with the migration, its dashboard plots it,
`vportd_migration_downtime_seconds` observes it. A report that cannot be sent
is a warning: the migration happened either way.
"""

from __future__ import annotations

import bisect
import json
import os
import time
from pathlib import Path
from typing import Any

from vportd.ctl.client import ClientError
from vportd.ctl.target import Target, connect, resolve_target
from vportd_lab.bed.endpoints import find_lab
from vportd_lab.bed.messages import say
from vportd_lab.bed.migrate import MigrationReport
from vportd_lab.bed.probe_report import DirectionReport, ProbeReport

MAX_ARRIVALS = 5000  # per direction, the API's bound


def wall_t0(probe: ProbeReport) -> float:
    """The probe's t0 (CLOCK_MONOTONIC) in wall-clock unix seconds, as of now."""
    return time.time() - (time.monotonic_ns() - probe.t0_ns) / 1e9


def body(r: MigrationReport, t0: float | None = None) -> dict[str, Any] | None:
    """The report's body (None: no probe, or no migration the cluster knows of); `t0` is the
    probe's t0 in unix seconds (default: `wall_t0`)."""
    if r.probe is None or r.migration_id is None:
        return None
    probe = ProbeReport.from_json(json.dumps(r.probe))
    start = wall_t0(probe) if t0 is None else t0
    bin_ms = probe.series_bin_ms or probe.interval_ms
    names = (f"{r.vm} -> {r.peer}", f"{r.peer} -> {r.vm}")
    return {
        "directions": [
            _direction(name, d, bin_ms, start)
            for name, d in zip(names, probe.directions, strict=True)
        ]
    }


def _direction(name: str, d: DirectionReport, bin_ms: float, t0: float) -> dict[str, Any]:
    return {
        "name": name,
        "gap_s": round(d.longest_gap_ms / 1000, 6),
        "lost": max(d.lost, 0),
        "arrivals": [round(t0 + ms / 1000, 6) for ms in arrivals_ms(d, bin_ms)],
    }


def arrivals_ms(d: DirectionReport, bin_ms: float) -> list[float]:
    """When packets arrived, ms from t0 (the start of each bin that received any): the
    `MAX_ARRIVALS` nearest the longest gap's start."""
    times = [i * bin_ms for i, count in enumerate(d.series or []) if count]
    if len(times) <= MAX_ARRIVALS:
        return times
    centre = bisect.bisect_left(times, d.gap_start_ms or 0.0)
    first = max(0, min(centre - MAX_ARRIVALS // 2, len(times) - MAX_ARRIVALS))
    return times[first : first + MAX_ARRIVALS]


def report_downtime(lab_dir: Path, r: MigrationReport) -> bool:
    """Send the probe's measurement to the cluster of the lab in `lab_dir` (as `vportctl
    --lab` finds its API and token); False, with a warning, if it was not sent."""
    if body(r) is None:
        return False  # (no probe, or no migration the cluster knows of: nothing to send)
    try:
        target = resolve_target(None, None, lab_dir, os.environ, labs=find_lab)
    except ClientError as err:
        return _unsent(err)
    return send(target, r)


def send(target: Target, r: MigrationReport) -> bool:
    """Send the probe's measurement to the API at `target`; False, with a warning, if it
    was not sent."""
    doc = body(r)
    if doc is None or r.migration_id is None:
        return False
    try:
        with connect(target) as client:
            client.report_downtime(r.migration_id, doc)
    except (ClientError, OSError) as err:
        return _unsent(err)
    say(f"the probe's measurement reported to the cluster (migration {r.migration_id})")
    return True


def _unsent(err: Exception) -> bool:
    say(f"warning: the probe's measurement was not reported to the cluster: {err}")
    return False
