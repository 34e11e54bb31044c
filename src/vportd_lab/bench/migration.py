"""The migration downtime benchmark: one emulation, six cases on the two fabrics.

Measured, never asserted. For each case in turn (`CASES`) a fresh lab
(`vportctl lab up --mode M`: 3 hypervisors, 3 VMs, 3 controllers; none in
`standalone`) runs `runs` live migrations of vm0 back and forth between hv0
and hv1 (`lab.migrate.migrate`, the same emulation as `vportctl lab migrate`:
destination tap, pre-copy, old down, stop-and-copy pause, new up, GARP+RARP,
source delete) under the traffic probe against vm2 on hv2, after one
unmeasured warm-up migration; then `lab down`. The cases differ only in what
the network side is, and in whether the VM announces itself:

- `aware`: vportd as it is; the VMM notifies, waits for notify complete, migrates;
- `naive`: vportd with `migration.aware = false`, and the VMM sends no notify;
- `standalone`: no controller, bridges in fail_mode=standalone (OVS NORMAL);
- `aware, silent`: as `aware`, but the VM sends no GARP or RARP after the
  switchover (only its own traffic, the probe's, reaches the network);
- `overlay aware` (and `, silent`): the overlay fabric (`lab up --fabric
  overlay --segments 2`: a host per hypervisor, Geneve tunnels; vm0 and vm2
  in segment 10, vm1 in segment 20 on hv1), so that every migration goes to a
  host with no VM of vm0's segment: the destination joins the segment during
  the pre-copy.

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
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vportd_lab.bed import netns, procs
from vportd_lab.bed.migrate import MigrateOptions, MigrationReport, migrate
from vportd_lab.bed.plan import (
    DATAPATH_TAP,
    OVERLAY,
    OVERLAY_NAMESPACE,
    STANDALONE,
    VM_NAMESPACE,
)
from vportd_lab.bed.ports import free_block
from vportd_lab.bench.doc import write_markdown
from vportd_lab.bench.machine import machine
from vportd_lab.bench.migration_report import goals, markdown, plot, summary
from vportd_lab.bench.migration_results import (
    CASES,
    PLOT,
    RESULTS,
    RUNS,
    WINDOW_MS,
    Case,
    ModeResult,
    Phases,
    Result,
    Run,
)

VM, PEER, HOMES = "vm0", "vm2", ("hv1", "hv0")  # vm0 goes hv0 -> hv1 -> hv0 ...; vm2 on hv2
FREE_WAIT = 900.0  # s to wait for another lab to give the datapath back
TELL_EVERY = 60.0  # s between "waiting" lines
UP_ATTEMPTS = 3


# -- running ------------------------------------------------------------------------
def _vportctl(*args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vportd.ctl.cli", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def _datapath_free(fabric: str) -> bool:
    """No other lab of `fabric` here: on the patch fabric nobody holds the userspace
    datapath and no lab VM namespaces exist; on the overlay, no overlay lab's namespaces."""
    if fabric == OVERLAY:
        return not any(OVERLAY_NAMESPACE.match(n) for n in netns.namespaces())
    if DATAPATH_TAP in procs.tap_holders():
        return False
    return not any(VM_NAMESPACE.match(n) for n in netns.namespaces())


def _await_datapath(fabric: str) -> None:
    """Only one userspace-datapath OVS per network namespace (and one overlay lab, its
    namespace names fixed): wait for another lab to end."""
    deadline, told = time.monotonic() + FREE_WAIT, 0.0
    while not _datapath_free(fabric):
        if time.monotonic() > deadline:
            raise RuntimeError(f"another lab held the datapath for {FREE_WAIT:g} s")
        if time.monotonic() - told > TELL_EVERY:
            print("  another lab runs here (one userspace datapath per namespace): waiting")
            told = time.monotonic()
        time.sleep(5)


@contextlib.contextmanager
def _lab(lab_dir: Path, case: Case) -> Iterator[None]:
    """A lab for `case` in `lab_dir` (waiting for the datapath first), always taken down:
    also after an interrupted `up` (its leftovers)."""
    try:
        _up(lab_dir, case)
        yield
    finally:
        down = _vportctl("lab", "down", "--dir", str(lab_dir))
        if down.returncode != 0:
            print(f"  lab down failed ({down.returncode}): {down.stderr.strip()}")


def _up(lab_dir: Path, case: Case) -> None:
    controllers = 0 if case.mode == STANDALONE else 3
    fabric = ["--fabric", OVERLAY, "--segments", "2"] if case.fabric == OVERLAY else []
    for attempt in range(1, UP_ATTEMPTS + 1):
        _await_datapath(case.fabric)
        base = free_block(2 * max(controllers, 1))
        if base is None:
            raise RuntimeError("no free port range for the lab's controllers")
        up = _vportctl(
            "lab", "up", "--dir", str(lab_dir), "--mode", case.mode, "--controllers",
            str(controllers), "--hypervisors", "3", "--vms", "3", "--openflow-port", str(base),
            "--api-port", str(base + max(controllers, 1)), "--json", *fabric,
        )  # fmt: skip
        if up.returncode == 0:
            return
        _vportctl("lab", "down", "--dir", str(lab_dir))
        # a lab that started meanwhile took the datapath (exit 1): wait for it, retry
        if up.returncode != 1 or attempt == UP_ATTEMPTS:
            raise RuntimeError(f"lab up for {case.name} failed ({up.returncode}): {up.stderr}")


def _migrate(lab_dir: Path, to: str, phases: Phases, silent: bool) -> MigrationReport:
    """One migration, its progress lines kept quiet (shown only if it fails)."""
    opts = MigrateOptions(
        dir=lab_dir, vm=VM, to=to, precopy=phases.precopy, pause_ms=phases.pause_ms,
        probe=True, peer=PEER, settle=phases.settle, announce_rounds=0 if silent else 1,
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


def bench_mode(case: Case, runs: int, phases: Phases, base: Path) -> ModeResult:
    started = time.monotonic()
    lab_dir = base / str(CASES.index(case))  # short: OVS's unix socket paths are limited
    measured: list[Run] = []
    with _lab(lab_dir, case):
        for k in range(phases.warmup + runs):
            report = _migrate(lab_dir, HOMES[k % 2], phases, case.silent)
            if k < phases.warmup:
                continue
            run = _run(case.name, len(measured), report)
            measured.append(run)
            print(
                f"  {case.name:<21} run {run.n + 1:>2}/{runs}: longest gap "
                f"{run.longest_gap_ms:6.1f} ms, switchover {run.switchover_gap_ms:5.1f} ms, "
                f"excess {run.excess_ms:6.1f} ms, lost {run.lost_ab}/{run.lost_ba}"
                + (f", handshake {run.handshake_ms:.1f} ms" if case.notifies else ""),
                flush=True,
            )
    seconds = round(time.monotonic() - started, 1)
    return ModeResult(case.name, measured, seconds, case.fabric, case.silent)


def bench(runs: int = RUNS, phases: Phases | None = None) -> Result:
    phases = phases or Phases()
    started = time.monotonic()
    mach = machine()
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    base = Path(tempfile.mkdtemp(prefix="vbm-", dir="/tmp"))  # short: unix socket paths
    try:
        modes = [bench_mode(case, runs, phases, base) for case in CASES]
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


# -- entry points -------------------------------------------------------------------
def run_migration_bench(output: Path, runs: int = RUNS, phases: Phases | None = None) -> int:
    """Run, print a summary, write `output`'s section, the raw JSON and the plot next to it."""
    print(f"migration downtime: {len(CASES)} cases x {runs} runs (root, OVS, etcd)", flush=True)
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
        description="Migration downtime in six cases (aware, naive, standalone; aware with a "
        "silent VM; the overlay, aware, with an announcing and a silent VM); root.",
    )
    d = Phases()
    p.add_argument("--runs", type=int, default=RUNS, help="measured migrations per case")
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
