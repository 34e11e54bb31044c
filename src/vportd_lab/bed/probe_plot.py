"""The plot of one migration under the probe: packets received per ms, per direction, with the
migration's steps as vertical lines (`lab migrate --probe --plot`, the demo).

Left: the whole run; right: close up on the switchover. Times are ms from the probe's t0,
the clock of both the probe's series and the migration's timeline. matplotlib (the `lab`
extra) is imported only when a plot is drawn.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from vportd_lab.bed.migrate import MigrationReport
from vportd_lab.bed.probe_report import DirectionReport, ProbeReport

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# The timeline's steps that are drawn (`lab migrate`'s clock marks), in order, with labels.
STEPS = {
    "notify": "notify",
    "notified": "notify complete",
    "port_added": "destination port added",
    "old_down": "old interface down",
    "switchover_end": "new interface up",
    "source_deleted": "source deleted",
    "abort": "abort",
}
STEP_GID = "step:"  # the gid prefix of a step's line: what tests and readers look for
MARGIN_MS = 40.0  # around the switchover in the close-up
_COLOURS = ("tab:blue", "tab:green", "tab:olive", "tab:red", "tab:purple", "tab:brown", "k")


def steps(timeline: Mapping[str, float]) -> dict[str, float]:
    """The drawn steps of a migration's timeline (ms from the probe's t0), in STEPS order."""
    return {name: timeline[name] for name in STEPS if name in timeline}


def figure(probe: ProbeReport, timeline: Mapping[str, float], title: str) -> Figure:
    """Two rows (VM -> peer, peer -> VM), two columns (the run, the switchover close up)."""
    from matplotlib.figure import Figure  # noqa: PLC0415 (lab extra: only plots need it)

    fig = Figure(figsize=(12, 6.5))
    axes = fig.subplots(2, 2, sharey=True, gridspec_kw={"width_ratios": [3, 2]})
    marks = steps(timeline)
    window = close_up(probe, marks)
    rows = (("VM → peer", probe.a_to_b), ("peer → VM", probe.b_to_a))
    for (label, direction), (whole, near) in zip(rows, axes, strict=True):
        _series(whole, probe, direction, None)
        _series(near, probe, direction, window)
        whole.set_ylabel(f"packets / {probe.series_bin_ms or 1:g} ms\n{label}")
        for ax in (whole, near):
            _marks(ax, marks)
    for ax in axes[1]:
        ax.set_xlabel("ms from the probe's t0")
    axes[0][1].set_title("close up on the switchover", fontsize="small")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize="small")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def close_up(probe: ProbeReport, marks: Mapping[str, float]) -> tuple[float, float]:
    """The close-up's x range: the switchover (else the longest gaps), MARGIN_MS either side."""
    edges = [marks[n] for n in ("old_down", "switchover_end") if n in marks]
    for d in probe.directions:
        edges += [t for t in (d.gap_start_ms, d.gap_end_ms) if t is not None]
    if not edges:
        return (0.0, probe.duration_ms)
    return (max(0.0, min(edges) - MARGIN_MS), max(edges) + MARGIN_MS)


def _series(
    ax: Axes, probe: ProbeReport, d: DirectionReport, window: tuple[float, float] | None
) -> None:
    bin_ms = probe.series_bin_ms or 1.0
    counts = d.series or []
    x = [i * bin_ms for i in range(len(counts))]
    ax.step(x, counts, where="post", color="0.3", linewidth=0.8)
    gap = d.longest_gap
    if gap is not None:
        ax.axvspan(gap.start_ms, gap.end_ms, color="tab:orange", alpha=0.25,
                   label="longest gap")  # fmt: skip
    if window is not None:
        ax.set_xlim(*window)
    ax.grid(alpha=0.3)


def _marks(ax: Axes, marks: Mapping[str, float]) -> None:
    for (name, ms), colour in zip(marks.items(), _COLOURS, strict=False):
        ax.axvline(ms, color=colour, linestyle="--", linewidth=1, label=STEPS[name],
                   gid=f"{STEP_GID}{name}")  # fmt: skip


def write(probe: ProbeReport, timeline: Mapping[str, float], title: str, path: Path) -> Path:
    """Draw and save the plot as PNG at `path` (its directory made if missing)."""
    fig = figure(probe, timeline, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, format="png")
    return path


def plot_report(r: MigrationReport, path: Path) -> Path:
    """The plot of a `lab migrate --probe` report; ValueError if it ran without the probe."""
    if r.probe is None:
        raise ValueError("the migration ran without the probe: nothing to plot")
    probe = ProbeReport.from_json(json.dumps(r.probe))
    title = f"{r.vm} {r.source} → {r.destination} ({r.mode}): {r.outcome}, probe with {r.peer}"
    return write(probe, r.timeline, title, path)
