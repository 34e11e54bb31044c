"""The migration downtime suite, smoke-tested: one run per case, tiny phases, in a tmp dir.

It checks what the suite writes (the BENCHMARKS.md section, the JSON, the PNG)
has the six cases (both fabrics, silent VMs) with sane values (relations only, never timings) and
that nothing of its labs is left. A benchmark is measured, not a timed test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.lab.conftest import fresh_lab_dir
from tests.lab.test_lab import pytestmark as lab_marks
from vportd_lab.bed import netns, procs
from vportd_lab.bench.migration_results import CASES, HEADING, PLOT, RESULTS

pytestmark = lab_marks  # root, ovs, skipped unless root

PAUSE_MS = 20.0


def _bench_dirs() -> set[Path]:
    return set(Path("/tmp").glob("vbm-*"))


def _run_suite(out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable, "-m", "vportd_lab.bench.migration", "--runs", "1", "--warmup", "0",
            "--precopy", "0.2", "--pause", str(PAUSE_MS), "--settle", "0.1",
            "--output", str(out / "BENCHMARKS.md"),
        ],
        capture_output=True, text=True, timeout=600, check=False, cwd=out,
    )  # fmt: skip


def _check_run(notifies: bool, run: dict[str, Any]) -> None:
    assert run["switchover_gap_ms"] >= PAUSE_MS  # the stop-and-copy pause is inside it
    assert run["longest_gap_ms"] == max(run["longest_gap_ab_ms"], run["longest_gap_ba_ms"])
    assert run["excess_ms"] == pytest.approx(
        run["longest_gap_ms"] - run["switchover_gap_ms"], abs=0.01
    )
    assert run["lost_ab"] >= 0 and run["lost_ba"] >= 0
    assert (run["handshake_ms"] > 0) == notifies  # only aware notifies
    # the probe saw traffic before and after the switchover
    assert sum(run["series_ab"]) > 0 and sum(run["series_ba"]) > 0


def test_migration_suite_smoke(tmp_path: Path) -> None:
    with fresh_lab_dir():  # skips if another lab holds the datapath; ours are made by the suite
        before = _bench_dirs()
        result = _run_suite(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

    doc = json.loads((tmp_path / RESULTS).read_text())
    assert [m["mode"] for m in doc["modes"]] == [case.name for case in CASES]
    for m, case in zip(doc["modes"], CASES, strict=True):
        assert len(m["runs"]) == 1
        assert (m["fabric"], m["silent"]) == (case.fabric, case.silent)
        _check_run(case.notifies, m["runs"][0])
    assert {g["met"] for g in doc["goals"]} <= {True, False}

    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert text.count(HEADING) == 1
    for case in CASES:
        assert f"`{case.name}`" in text
    assert PLOT.as_posix() in text
    assert (tmp_path / PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # nothing of the suite's labs is left
    # (by the marks of its own labs: other people's labs may run meanwhile)
    assert _bench_dirs() <= before
    assert not any("/tmp/vbm-" in str(e.get("ifalias", "")) for e in netns.links())
    assert not any("/tmp/vbm-" in " ".join(procs.cmdline(p) or []) for p in procs.pids())
