"""The migration downtime benchmark: one lab, one emulation, three modes.

Measured, never asserted. For each mode in turn (`plan.MODES`) a fresh lab
(`vportctl lab up --mode M`: 3 hypervisors, 3 VMs, 3 controllers; none in
`standalone`) runs `runs` live migrations of vm0 back and forth between hv0
and hv1 (`lab.migrate.migrate`, the same emulation as `vportctl lab migrate`:
destination tap, pre-copy, old down, stop-and-copy pause, new up, GARP+RARP,
source delete) under the traffic probe against vm2 on hv2, after one
unmeasured warm-up migration; then `lab down`. The modes differ only in what
the network side is:

- `aware`: vportd as it is; the VMM notifies, waits for notify complete, migrates;
- `naive`: vportd with `migration.aware = false`, and the VMM sends no notify;
- `standalone`: no controller, bridges in fail_mode=standalone (OVS NORMAL).

Per run: the probe's longest gap (max over both directions), the switchover
gap (old interface down -> new one up), the excess (longest - switchover, DESIGN
§5), the packets lost each way and, aware only, the handshake. The result:
`output`'s "Migration downtime" section (benchdoc), the raw runs in
`bench-results/migration.json` and a plot of the received packets around the
switchover (`docs/bench/migration-downtime.png`), both next to `output`.

`python -m vportd_lab.bench.migration --runs 1 --precopy 0.2` runs it with other
sizes (the smoke test does).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vportd_lab.bed import netns, procs
from vportd_lab.bed.migrate import MigrateOptions, MigrationReport, migrate
from vportd_lab.bed.plan import AWARE, DATAPATH_TAP, MODES, STANDALONE, VM_NAMESPACE
from vportd_lab.bed.ports import free_block
from vportd_lab.bench.doc import write_markdown
from vportd_lab.bench.machine import machine

RESULTS = Path("bench-results") / "migration.json"
PLOT = Path("docs") / "bench" / "migration-downtime.png"
HEADING = "## Migration downtime: aware, naive, standalone"
RUNS = 10
VM, PEER, HOMES = "vm0", "vm2", ("hv1", "hv0")  # vm0 goes hv0 -> hv1 -> hv0 ...; vm2 on hv2
WINDOW_MS = (-100, 500)  # the plot and the stored series, ms from the switchover start
PLOT_BIN_MS = 5
FREE_WAIT = 900.0  # s to wait for another lab to give the datapath back
TELL_EVERY = 60.0  # s between "waiting" lines
UP_ATTEMPTS = 3
GOAL_EXCESS_MS = 5.0
GOAL_HANDSHAKE_P99_MS = 25.0


@dataclass(frozen=True)
class Phases:
    """The emulation's knobs, the same in every mode (lab migrate's defaults)."""

    precopy: float = 1.0  # s
    pause_ms: float = 50.0  # stop-and-copy
    settle: float = 0.3  # s the probe runs on after the source delete
    warmup: int = 1  # unmeasured migrations per mode first


@dataclass
class Run:
    """One measured migration; ms. The series: received packets per 1 ms, WINDOW_MS around
    the switchover start (bin 0 = the ms in which the switchover started)."""

    mode: str
    n: int
    source: str
    destination: str
    handshake_ms: float
    switchover_gap_ms: float
    longest_gap_ms: float
    longest_gap_ab_ms: float
    longest_gap_ba_ms: float
    excess_ms: float
    lost_ab: int
    lost_ba: int
    converged_ms: float
    source_delete_ms: float  # the end of the source delete, from the switchover start (approx.)
    gap_ab: tuple[float, float] | None  # the longest gap's start and end, from the switchover
    gap_ba: tuple[float, float] | None  # start (None: fewer than two packets arrived)
    series_ab: list[int] = field(default_factory=list)
    series_ba: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Spread:
    min: float
    median: float
    max: float

    @staticmethod
    def of(values: list[float]) -> Spread:
        return Spread(min(values), statistics.median(values), max(values))


@dataclass
class ModeResult:
    mode: str
    runs: list[Run]
    seconds: float  # wall time: lab up, warm-up, runs, lab down

    def spread(self, metric: Callable[[Run], float]) -> Spread:
        return Spread.of([metric(r) for r in self.runs])

    @property
    def representative(self) -> Run:
        """The run with the median longest gap (the lower one of two)."""
        ranked = sorted(self.runs, key=lambda r: r.longest_gap_ms)
        return ranked[(len(ranked) - 1) // 2]


@dataclass
class Result:
    date: str
    command: str
    machine: dict[str, str]
    phases: Phases
    runs: int
    modes: list[ModeResult]
    seconds: float


# -- running ------------------------------------------------------------------------
def _vportctl(*args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vportd.ctl.cli", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def _datapath_free() -> bool:
    """No other lab here: nobody holds the userspace datapath, no lab VM namespaces."""
    if DATAPATH_TAP in procs.tap_holders():
        return False
    return not any(VM_NAMESPACE.match(n) for n in netns.namespaces())


def _await_datapath() -> None:
    """Only one userspace-datapath OVS per network namespace: wait for another lab to end."""
    deadline, told = time.monotonic() + FREE_WAIT, 0.0
    while not _datapath_free():
        if time.monotonic() > deadline:
            raise RuntimeError(f"another lab held the datapath for {FREE_WAIT:g} s")
        if time.monotonic() - told > TELL_EVERY:
            print("  another lab runs here (one userspace datapath per namespace): waiting")
            told = time.monotonic()
        time.sleep(5)


@contextlib.contextmanager
def _lab(lab_dir: Path, mode: str) -> Iterator[None]:
    """A lab in `mode` in `lab_dir` (waiting for the datapath first), always taken down:
    also after an interrupted `up` (its leftovers)."""
    try:
        _up(lab_dir, mode)
        yield
    finally:
        down = _vportctl("lab", "down", "--dir", str(lab_dir))
        if down.returncode != 0:
            print(f"  lab down failed ({down.returncode}): {down.stderr.strip()}")


def _up(lab_dir: Path, mode: str) -> None:
    controllers = 0 if mode == STANDALONE else 3
    for attempt in range(1, UP_ATTEMPTS + 1):
        _await_datapath()
        base = free_block(2 * max(controllers, 1))
        if base is None:
            raise RuntimeError("no free port range for the lab's controllers")
        up = _vportctl(
            "lab", "up", "--dir", str(lab_dir), "--mode", mode, "--controllers", str(controllers),
            "--hypervisors", "3", "--vms", "3", "--openflow-port", str(base),
            "--api-port", str(base + max(controllers, 1)), "--json",
        )  # fmt: skip
        if up.returncode == 0:
            return
        _vportctl("lab", "down", "--dir", str(lab_dir))
        # a lab that started meanwhile took the datapath (exit 1): wait for it, retry
        if up.returncode != 1 or attempt == UP_ATTEMPTS:
            raise RuntimeError(f"lab up --mode {mode} failed ({up.returncode}): {up.stderr}")


def _migrate(lab_dir: Path, to: str, phases: Phases) -> MigrationReport:
    """One migration, its progress lines kept quiet (shown only if it fails)."""
    opts = MigrateOptions(
        dir=lab_dir, vm=VM, to=to, precopy=phases.precopy, pause_ms=phases.pause_ms,
        probe=True, peer=PEER, settle=phases.settle,
    )  # fmt: skip
    lines = io.StringIO()
    try:
        with contextlib.redirect_stderr(lines):
            return migrate(opts)
    except Exception:
        sys.stderr.write(lines.getvalue())
        raise


def _run(mode: str, n: int, r: MigrationReport) -> Run:
    probe = r.probe or {}
    start = r.switchover_start_ms or 0.0
    ab, ba = probe.get("a_to_b", {}), probe.get("b_to_a", {})

    def rel(d: dict[str, Any]) -> tuple[float, float] | None:
        if d.get("gap_start_ms") is None:  # fewer than two packets arrived: no gap to place
            return None
        return (round(d["gap_start_ms"] - start, 3), round(d["gap_end_ms"] - start, 3))

    def window(d: dict[str, Any]) -> list[int]:
        first = math.floor(start / (probe.get("series_bin_ms") or 1.0))
        series = d.get("series") or []
        return [
            series[i] if 0 <= i < len(series) else 0
            for i in range(first + WINDOW_MS[0], first + WINDOW_MS[1])
        ]

    assert r.switchover_gap_ms is not None and r.longest_gap_ms is not None
    deleted = r.phases.get("switchover", 0.0) + r.phases.get("cleanup", 0.0)
    return Run(
        mode=mode, n=n, source=r.source, destination=r.destination,
        handshake_ms=r.handshake_ms, switchover_gap_ms=r.switchover_gap_ms,
        longest_gap_ms=r.longest_gap_ms, longest_gap_ab_ms=r.longest_gap_ab_ms or 0.0,
        longest_gap_ba_ms=r.longest_gap_ba_ms or 0.0, excess_ms=r.excess_ms or 0.0,
        lost_ab=r.lost_ab or 0, lost_ba=r.lost_ba or 0, converged_ms=r.converged_ms,
        source_delete_ms=round(deleted, 3), gap_ab=rel(ab), gap_ba=rel(ba),
        series_ab=window(ab), series_ba=window(ba),
    )  # fmt: skip


def bench_mode(mode: str, runs: int, phases: Phases, base: Path) -> ModeResult:
    started = time.monotonic()
    lab_dir = base / mode[:2]  # short: OVS's unix socket paths are limited
    measured: list[Run] = []
    with _lab(lab_dir, mode):
        for k in range(phases.warmup + runs):
            report = _migrate(lab_dir, HOMES[k % 2], phases)
            if k < phases.warmup:
                continue
            run = _run(mode, len(measured), report)
            measured.append(run)
            print(
                f"  {mode:<10} run {run.n + 1:>2}/{runs}: longest gap {run.longest_gap_ms:6.1f} "
                f"ms, switchover {run.switchover_gap_ms:5.1f} ms, excess {run.excess_ms:6.1f} ms, "
                f"lost {run.lost_ab}/{run.lost_ba}"
                + (f", handshake {run.handshake_ms:.1f} ms" if mode == AWARE else ""),
                flush=True,
            )
    return ModeResult(mode, measured, round(time.monotonic() - started, 1))


def bench(runs: int = RUNS, phases: Phases | None = None) -> Result:
    phases = phases or Phases()
    started = time.monotonic()
    mach = machine()
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    base = Path(tempfile.mkdtemp(prefix="vbm-", dir="/tmp"))  # short: unix socket paths
    try:
        modes = [bench_mode(mode, runs, phases, base) for mode in MODES]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    mach["load_average_end"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return Result(date, command(runs, phases), mach, phases, runs, modes,
                  round(time.monotonic() - started, 1))  # fmt: skip


def command(runs: int, phases: Phases) -> str:
    if (runs, phases) == (RUNS, Phases()):
        return f"`make bench` (= `vportctl bench --suite migration --runs {RUNS}`, within `all`)"
    return (
        f"`python -m vportd_lab.bench.migration --runs {runs} --precopy {phases.precopy:g} "
        f"--pause {phases.pause_ms:g} --settle {phases.settle:g} --warmup {phases.warmup}`"
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
    """The goals for `aware`, as measured."""
    by = {m.mode: m for m in r.modes}
    aware, alone = by[AWARE], by[STANDALONE]
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
    aware = next(m for m in r.modes if m.mode == AWARE)
    hs = [x.handshake_ms for x in aware.runs]
    blank = " | -" * (len(names) - 1)
    lines.append(
        f"| handshake, ms (notify → notify complete; p50 / p99) | "
        f"{statistics.median(hs):.1f} / {p99(hs):.1f}{blank} |"
    )
    return lines


def _where(r: Result) -> list[str]:
    """Where each mode's longest gaps lie, relative to the switchover start (median run)."""
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
        "Goals (issue 5), as measured:",
        "",
        "| goal | target | measured | result |",
        "|---|---:|---:|---|",
        *(
            f"| {g.what} | {g.target} | {g.measured} | {'met' if g.met else '**missed**'} |"
            for g in goals(r)
        ),
        "",
        f"**Method.** The same lab for each mode (`vportctl lab up --mode MODE --hypervisors 3 "
        f"--vms 3`, 3 controllers on a private etcd; none in `standalone`), brought up fresh "
        f"per mode, and the same emulation (`vportctl lab migrate`'s code acting as the VMM): "
        f"vm0 migrates between hv0 and hv1, alternately, {r.runs} measured runs per mode after "
        f"{ph.warmup} unmeasured warm-up; the traffic probe sends sequence-numbered UDP every "
        f"1 ms each way between vm0 and vm2 (on hv2). Per run: destination tap added, pre-copy "
        f"{ph.precopy:g} s, switchover (old interface down, stop-and-copy pause "
        f"{ph.pause_ms:g} ms, new interface up with the same MAC and IP), GARP + RARP, source "
        f"port deleted, probe kept running {ph.settle:g} s. `aware`: vportd as it is, the VMM "
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
        f"{PLOT_BIN_MS} ms in each direction, x = ms from the switchover start, for each mode's "
        f"median run (the run with the median longest gap):",
        "",
        *(f"- {line}" for line in _where(r)),
        "",
        f"The suite took {r.seconds:.0f} s ({per_mode}: lab up, warm-up, runs, lab down). "
        f"Raw runs (with the 1 ms series): `{RESULTS.as_posix()}`.",
    ]
    return "\n".join(out) + "\n"


def summary(r: Result) -> str:
    lines = [f"migration downtime ({r.runs} runs per mode, {r.seconds:.0f} s):", *table(r)]
    lines += [f"  {'met' if g.met else 'MISSED'}: {g.what} ({g.measured}, {g.target})"
              for g in goals(r)]  # fmt: skip
    return "\n".join(lines)


# -- the plot -----------------------------------------------------------------------
def plot(r: Result, path: Path) -> None:
    """Received packets per PLOT_BIN_MS around the switchover, one line per mode, a panel
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
        aware = next(m for m in r.modes if m.mode == AWARE).representative
        ax.axvspan(0, aware.switchover_gap_ms, color="grey", alpha=0.2, label="switchover (aware)")
        ax.set_ylabel(f"packets / {PLOT_BIN_MS} ms\n{label}")
        ax.set_ylim(-0.3, PLOT_BIN_MS * 1.6)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize="small", ncol=2)
    axes[1].set_xlabel("ms from the switchover start (old interface down)")
    fig.suptitle(f"Live migration under a 1 ms UDP probe: median run of {r.runs} per mode")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _rebin(series: list[int]) -> list[int]:
    return [sum(series[i : i + PLOT_BIN_MS]) for i in range(0, len(series), PLOT_BIN_MS)]


# -- entry points -------------------------------------------------------------------
def run_migration_bench(output: Path, runs: int = RUNS, phases: Phases | None = None) -> int:
    """Run, print a summary, write `output`'s section, the raw JSON and the plot next to it."""
    print(f"migration downtime: {len(MODES)} modes x {runs} runs (root, OVS, etcd)", flush=True)
    result = bench(runs, phases)
    print(summary(result))
    plot(result, output.parent / PLOT)
    write_markdown(output, markdown(result))
    raw = output.parent / RESULTS
    raw.parent.mkdir(parents=True, exist_ok=True)
    doc = asdict(result)
    doc["goals"] = [asdict(g) for g in goals(result)]
    raw.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"  written: {output}, {raw}, {output.parent / PLOT}")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m vportd_lab.bench.migration",
        description="Migration downtime in three modes (aware, naive, standalone); root.",
    )
    d = Phases()
    p.add_argument("--runs", type=int, default=RUNS, help="measured migrations per mode")
    p.add_argument("--precopy", type=float, default=d.precopy, help="pre-copy, s")
    p.add_argument("--pause", type=float, default=d.pause_ms, help="stop-and-copy pause, ms")
    p.add_argument("--settle", type=float, default=d.settle, help="probe after the delete, s")
    p.add_argument("--warmup", type=int, default=d.warmup, help="unmeasured migrations first")
    p.add_argument("--output", type=Path, default=Path("BENCHMARKS.md"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    phases = Phases(args.precopy, args.pause, args.settle, args.warmup)
    return run_migration_bench(args.output, args.runs, phases)


if __name__ == "__main__":
    sys.exit(main())
