"""The migration downtime benchmark's report: its goals, a Markdown section, a summary
for the terminal and a plot of the received packets around the switchover."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vportd_lab.bench.migration_results import (
    GOAL_EXCESS_MEDIAN_MS,
    GOAL_EXCESS_MS,
    GOAL_EXCESS_WORST_MS,
    GOAL_HANDSHAKE_P99_MS,
    HEADING,
    PLOT,
    PLOT_BIN_MS,
    RESULTS,
    WINDOW_MS,
    ModeResult,
    Result,
    Run,
    Spread,
)


# -- goals --------------------------------------------------------------------------
@dataclass(frozen=True)
class Goal:
    what: str
    target: str
    measured: str
    met: bool


def p99(values: list[float]) -> float:
    """Nearest rank: with fewer than 100 runs, the largest."""
    ranked = sorted(values)
    return ranked[max(0, math.ceil(0.99 * len(ranked)) - 1)]


def goals(r: Result) -> list[Goal]:
    """The goals, as measured: `aware` against the switchover and `standalone` (issue 5),
    and every aware case's excess (issue 15)."""
    by = {m.mode: m for m in r.modes}
    aware, alone = by["aware"], by["standalone"]
    longest = aware.spread(lambda x: x.longest_gap_ms)
    switch = aware.spread(lambda x: x.switchover_gap_ms)
    alone_longest = alone.spread(lambda x: x.longest_gap_ms)
    hs = p99([x.handshake_ms for x in aware.runs])
    return [
        Goal("aware: median longest gap ≤ median switchover gap + 5 ms",
             f"≤ {switch.median + GOAL_EXCESS_MS:.1f} ms", f"{longest.median:.1f} ms",
             longest.median <= switch.median + GOAL_EXCESS_MS),
        Goal("aware never worse than standalone: median longest gap",
             f"≤ {alone_longest.median:.1f} ms", f"{longest.median:.1f} ms",
             longest.median <= alone_longest.median),
        Goal("aware never worse than standalone: worst longest gap",
             f"≤ {alone_longest.max:.1f} ms", f"{longest.max:.1f} ms",
             longest.max <= alone_longest.max),
        Goal(f"aware: handshake p99 (nearest rank over {len(aware.runs)} runs)",
             f"≤ {GOAL_HANDSHAKE_P99_MS:g} ms", f"{hs:.1f} ms", hs <= GOAL_HANDSHAKE_P99_MS),
        *(g for m in r.modes if _notifies(m) for g in _excess_goals(m)),
    ]  # fmt: skip


def _notifies(m: ModeResult) -> bool:
    return all(x.handshake_ms > 0 for x in m.runs)


def _excess_goals(m: ModeResult) -> list[Goal]:
    """Excess over the switchover gap, median and worst: the network adds nothing to it."""
    excess = m.spread(lambda x: x.excess_ms)
    median, worst = GOAL_EXCESS_MEDIAN_MS, GOAL_EXCESS_WORST_MS
    return [
        Goal(f"{m.mode}: excess, median of {len(m.runs)}", f"≤ {median:g} ms",
             f"{excess.median:.1f} ms", excess.median <= median),
        Goal(f"{m.mode}: excess, worst of {len(m.runs)}", f"≤ {worst:g} ms",
             f"{excess.max:.1f} ms", excess.max <= worst),
    ]  # fmt: skip


# -- the report ---------------------------------------------------------------------
METRICS: list[tuple[str, Callable[[Run], float], bool]] = [
    ("longest gap, ms (max of both directions)", lambda r: r.longest_gap_ms, False),
    ("switchover gap, ms (old down → new up)", lambda r: r.switchover_gap_ms, False),
    ("excess, ms (longest - switchover)", lambda r: r.excess_ms, False),
    ("longest gap VM → peer, ms", lambda r: r.longest_gap_ab_ms, False),
    ("longest gap peer → VM, ms", lambda r: r.longest_gap_ba_ms, False),
    ("lost VM → peer, packets", lambda r: r.lost_ab, True),
    ("lost peer → VM, packets", lambda r: r.lost_ba, True),
]


def _cell(s: Spread, integer: bool) -> str:
    if integer:
        return f"{s.min:.0f} / {s.median:g} / {s.max:.0f}"
    return f"{s.min:.1f} / {s.median:.1f} / {s.max:.1f}"


def table(r: Result) -> list[str]:
    names = [m.mode for m in r.modes]
    lines = [
        "| min / median / max | " + " | ".join(f"`{n}`" for n in names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for label, metric, integer in METRICS:
        cells = [_cell(m.spread(metric), integer) for m in r.modes]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    cells = [_handshakes(m) for m in r.modes]
    lines.append(
        "| handshake, ms (notify → notify complete; p50 / p99) | " + " | ".join(cells) + " |"
    )
    return lines


def _handshakes(m: ModeResult) -> str:
    if not _notifies(m):
        return "-"
    hs = [x.handshake_ms for x in m.runs]
    return f"{statistics.median(hs):.1f} / {p99(hs):.1f}"


def _where(r: Result) -> list[str]:
    """Where each case's longest gaps lie, relative to the switchover start (median run)."""
    lines = []
    for m in r.modes:
        x = m.representative
        lines.append(
            f"`{m.mode}` run {x.n + 1} ({x.source} → {x.destination}): switchover 0 .. "
            f"{x.switchover_gap_ms:.1f} ms, source port deleted at ≈ {x.source_delete_ms:.0f} "
            f"ms; longest gap VM → peer {_span(x.gap_ab)}, peer → VM {_span(x.gap_ba)}."
        )
    return lines


def _span(gap: tuple[float, float] | None) -> str:
    return (
        "none (fewer than two packets arrived)"
        if gap is None
        else f"{gap[0]:.1f} .. {gap[1]:.1f} ms"
    )


def markdown(r: Result) -> str:
    m, ph = r.machine, r.phases
    per_mode = ", ".join(f"{x.mode} {x.seconds:.0f} s" for x in r.modes)
    out = [
        HEADING,
        "",
        f"Command: {r.command}  ",
        f"Date: {r.date}, commit `{m['commit']}`  ",
        f"Machine: {m['platform']}; {m['cpu']}, {m['cores']} cores; {m['python']}; {m['ovs']}, "
        f"userspace (netdev) datapath; load average {m['load_average']} at the start, "
        f"{m['load_average_end']} at the end (1 / 5 / 15 min)",
        "",
        "Goals (issues 5 and 15), as measured:",
        "",
        "| goal | target | measured | result |",
        "|---|---:|---:|---|",
        *(
            f"| {g.what} | {g.target} | {g.measured} | {'met' if g.met else '**missed**'} |"
            for g in goals(r)
        ),
        "",
        f"**Method.** The same lab for each case (`vportctl lab up --mode MODE --hypervisors 3 "
        f"--vms 3`, 3 controllers on a private etcd; none in `standalone`; on the overlay "
        f"`--fabric overlay --segments 2`: hv0..hv2 hosts joined by Geneve tunnels, vm0 and "
        f"vm2 in segment 10, vm1 in segment 20 on hv1, so that each migration's destination "
        f"joins vm0's segment during the pre-copy), brought up fresh per case, and the same "
        f"emulation (`vportctl lab migrate`'s code acting as the VMM): "
        f"vm0 migrates between hv0 and hv1, alternately, {r.runs} measured runs per case after "
        f"{ph.warmup} unmeasured warm-up; the traffic probe sends sequence-numbered UDP every "
        f"1 ms each way between vm0 and vm2 (on hv2). Per run: destination tap added, pre-copy "
        f"{ph.precopy:g} s, switchover (old interface down, stop-and-copy pause "
        f"{ph.pause_ms:g} ms, new interface up with the same MAC and IP), GARP + RARP, source "
        f"port deleted, probe kept running {ph.settle:g} s; a *silent* VM sends no GARP or "
        f"RARP (only its probe traffic). `aware`: vportd as it is, the VMM "
        f"notifies and waits for notify complete first. `naive`: vportd with "
        f"`migration.aware = false`, no notify (the controllers see the port events and the "
        f"announcements; the source delete is the VM leaving). `standalone`: no controller, "
        f"bridges in `fail_mode=standalone` (OVS NORMAL learning), linked in a star from hv0 "
        f"instead of the mesh (NORMAL flooding around a loop would storm); in the userspace "
        f"datapath patch ports cost no extra hop. Longest gap: the longest time between two "
        f"packets received in one direction (kernel receive timestamps), max over both; the "
        f"switchover gap is itself part of it, which is why the issue compares by the excess "
        f"(DESIGN §5). Lost: sequence numbers never received (those the VM could not send "
        f"while its interface was down count too).",
        "",
        *table(r),
        "",
        f"![received packets around the switchover]({PLOT.as_posix()})",
        "",
        f"The plot ([{PLOT.as_posix()}]({PLOT.as_posix()})): packets received per "
        f"{PLOT_BIN_MS} ms in each direction, x = ms from the switchover start, for each case's "
        f"median run (the run with the median longest gap):",
        "",
        *(f"- {line}" for line in _where(r)),
        "",
        f"The suite took {r.seconds:.0f} s ({per_mode}: lab up, warm-up, runs, lab down). "
        f"Raw runs (with the 1 ms series): `{RESULTS.as_posix()}`.",
    ]
    return "\n".join(out) + "\n"


def summary(r: Result) -> str:
    lines = [f"migration downtime ({r.runs} runs per case, {r.seconds:.0f} s):", *table(r)]
    lines += [f"  {'met' if g.met else 'MISSED'}: {g.what} ({g.measured}, {g.target})"
              for g in goals(r)]  # fmt: skip
    return "\n".join(lines)


# -- the plot -----------------------------------------------------------------------
def plot(r: Result, path: Path) -> None:
    """Received packets per PLOT_BIN_MS around the switchover, one line per case, a panel
    per direction (matplotlib, Agg: no display needed)."""
    import matplotlib  # noqa: PLC0415 (dev extra: only the benchmark needs it)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    x = list(range(WINDOW_MS[0], WINDOW_MS[1], PLOT_BIN_MS))  # each bin's left edge
    panels: list[tuple[str, Callable[[Run], list[int]]]] = [
        ("VM → peer", lambda run: run.series_ab),
        ("peer → VM", lambda run: run.series_ba),
    ]
    for ax, (label, pick) in zip(axes, panels, strict=True):
        for m in r.modes:
            run = m.representative
            ax.step(x, _rebin(pick(run)), where="post", label=f"{m.mode} (run {run.n + 1})")
        aware = next(m for m in r.modes if m.mode == "aware").representative
        ax.axvspan(0, aware.switchover_gap_ms, color="grey", alpha=0.2, label="switchover (aware)")
        ax.set_ylabel(f"packets / {PLOT_BIN_MS} ms\n{label}")
        ax.set_ylim(-0.3, PLOT_BIN_MS * 1.6)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize="small", ncol=2)
    axes[1].set_xlabel("ms from the switchover start (old interface down)")
    fig.suptitle(f"Live migration under a 1 ms UDP probe: median run of {r.runs} per case")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _rebin(series: list[int]) -> list[int]:
    return [sum(series[i : i + PLOT_BIN_MS]) for i in range(0, len(series), PLOT_BIN_MS)]
