"""The migration plot (`lab migrate --probe --plot`), from a synthetic probe report and timeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy
import pytest

from vportd_lab.bed.migrate import MigrationReport
from vportd_lab.bed.probe_plot import STEP_GID, STEPS, close_up, figure, plot_report, steps
from vportd_lab.bed.probe_report import DirectionReport, ProbeReport

GAP = (500.0, 560.0)  # ms from t0: no packet arrives in between
TIMELINE = {
    "notify": 200.0, "notified": 230.0, "prepare": 231.0, "port_added": 260.0,
    "precopy": 261.0, "switchover_start": 499.0, "old_down": 500.0, "new_up_start": 550.0,
    "switchover_end": 558.0, "announce": 559.0, "cleanup": 560.0, "source_deleted": 600.0,
}  # fmt: skip


def _values(data: Any) -> list[float]:
    """A line's x or y data as floats (matplotlib keeps them as arrays or sequences)."""
    return [float(v) for v in numpy.asarray(data, dtype=float)]


def _direction(source: str, destination: str) -> DirectionReport:
    series = [0 if GAP[0] <= ms < GAP[1] else 1 for ms in range(1000)]
    return DirectionReport(
        source=source, destination=destination, sent=1000, received=sum(series),
        lost=1000 - sum(series), duplicates=0, reordered=0, send_errors=0, skipped_slots=0,
        rate_pps=1000.0, late_us_p50=10.0, late_us_p99=50.0, late_us_max=80.0,
        longest_gap_ms=GAP[1] - GAP[0], gap_start_ms=GAP[0], gap_end_ms=GAP[1],
        gap_lost=59, first_rx_ms=0.1, last_rx_ms=999.1, latency_ms_p50=0.1,
        latency_ms_max=0.5, series=series,
    )  # fmt: skip


def _probe() -> ProbeReport:
    return ProbeReport(
        interval_ms=1.0, t0_ns=10**12, duration_ms=1000.0, series_bin_ms=1.0, rx_clock="kernel",
        sched="other", clock_stepped=False, a_to_b=_direction("vm0/10.0.0.1", "vm2/10.0.0.3"),
        b_to_a=_direction("vm2/10.0.0.3", "vm0/10.0.0.1"),
    )  # fmt: skip


def _report(probe: ProbeReport | None) -> MigrationReport:
    return MigrationReport(
        vm="vm0", mac="02:00:00:00:00:01", source="hv0", destination="hv1",
        outcome="migrated", fail_at=None, migration_id="m1", handshake_ms=30.0,
        switchover_gap_ms=58.0, switchover_start_ms=499.0, switchover_end_ms=558.0,
        longest_gap_ms=60.0, longest_gap_ab_ms=60.0, longest_gap_ba_ms=60.0, lost_ab=59,
        lost_ba=59, excess_ms=2.0, converged_ms=5.0, peer="vm2",
        probe=probe.to_dict() if probe else None, timeline=dict(TIMELINE),
    )  # fmt: skip


def test_each_step_is_a_vertical_line_in_every_panel_at_its_time() -> None:
    fig = figure(_probe(), TIMELINE, "vm0 hv0 -> hv1")
    axes = fig.get_axes()
    assert len(axes) == 4  # two directions, the run and the close up
    for ax in axes:
        lines = {
            str(line.get_gid()).removeprefix(STEP_GID): _values(line.get_xdata())
            for line in ax.get_lines()
            if (line.get_gid() or "").startswith(STEP_GID)
        }
        assert set(lines) == set(STEPS) - {"abort"}  # each drawn step once; no abort here
        for name, xs in lines.items():
            assert xs == [TIMELINE[name], TIMELINE[name]]


def test_the_panels_plot_the_series_and_the_close_up_shows_the_gap() -> None:
    fig = figure(_probe(), TIMELINE, "title")
    whole, near = fig.get_axes()[:2]
    series = next(line for line in whole.get_lines() if not line.get_gid())
    ys = _values(series.get_ydata())
    assert ys[:3] == [1, 1, 1] and ys[int(GAP[0])] == 0 and len(ys) == 1000
    low, high = near.get_xlim()
    assert low < TIMELINE["old_down"] and high > TIMELINE["switchover_end"]
    assert high - low < 1000  # closer than the whole run


def test_steps_keep_the_drawn_ones_in_order() -> None:
    assert list(steps({"source_deleted": 3.0, "prepare": 1.0, "notify": 0.5})) == [
        "notify",
        "source_deleted",
    ]


def test_without_a_switchover_the_close_up_is_around_the_longest_gap() -> None:
    low, high = close_up(_probe(), {"notify": 200.0, "abort": 300.0})
    assert low < GAP[0] and high > GAP[1]


def test_the_report_is_written_as_a_png(tmp_path: Path) -> None:
    path = plot_report(_report(_probe()), tmp_path / "plots" / "migration.png")
    assert path.stat().st_size > 10_000
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_a_report_without_the_probe_is_refused_and_nothing_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="without the probe"):
        plot_report(_report(None), tmp_path / "m.png")
    assert not (tmp_path / "m.png").exists()
