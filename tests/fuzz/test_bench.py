"""`vportctl bench --suite fuzz`'s report from a summary, and where it runs (not the run)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from vportd_lab.bench.doc import write_markdown
from vportd_lab.bench.fuzz import SECTION, checkout, goal_rows, markdown, run_fuzz_bench

pytestmark = pytest.mark.fuzz

CASES = 100
SUMMARY: dict[str, Any] = {
    "rest": {
        "cases": 120, "server_errors": 0, "tracebacks": 0, "refusal_changes": 0,
        "findings": {}, "controllers_down": [], "statuses": {"200": 60, "404": 60},
        "tokens": {"valid": 100, "none": 20}, "operations": {"GET /v1/vports positive": 120},
        "conflicts_that_are_no_refusal": {"sync refused (east-west answer)": 1},
    },
    "openflow": {
        "messages": 100, "findings": {}, "exceptions": 0, "controllers_down": [],
        "displaced": 0, "real_switches_unchanged": True, "unsettled": None,
        "reasons": {f"reason {n}": n for n in range(12)}, "messages_by_session_kind": {"raw": 9},
    },
    "openflow_real_dpid": {
        "connections": 3, "displaced": 3, "exceptions": 0, "controllers_down": [],
        "unsettled": None,
    },
    "ovsdb": {
        "mutations": 100, "findings": {}, "exceptions": 0, "runtime_alive": True,
        "snapshot_clean": True, "table_clean": True, "logged_reasons": {"not JSON | x": 2},
    },
    "run": {"cases": CASES, "date": "2026-01-01 00:00 UTC", "machine": {"commit": "abc"}},
}  # fmt: skip


def test_a_clean_run_meets_every_goal() -> None:
    goals = goal_rows(SUMMARY, CASES)
    assert [g[3] for g in goals] == ["PASS"] * len(goals)


@pytest.mark.parametrize(
    ("part", "key", "value"),
    [
        ("rest", "cases", 99), ("rest", "refusal_changes", 1), ("openflow", "displaced", 1),
        ("openflow", "findings", {"closed without a logged reason": 1}),
        ("openflow", "unsettled", "hv0 is not adopted"), ("ovsdb", "table_clean", False),
        ("openflow_real_dpid", "controllers_down", ["c1"]), ("ovsdb", "mutations", 10),
    ],
)  # fmt: skip
def test_each_shortfall_fails_a_goal(part: str, key: str, value: object) -> None:
    summary = copy.deepcopy(SUMMARY)
    summary[part][key] = value
    assert "**FAIL**" in [g[3] for g in goal_rows(summary, CASES)]


@pytest.mark.parametrize("part", ["rest", "openflow", "openflow_real_dpid", "ovsdb"])
def test_a_part_the_run_did_not_report_fails(part: str) -> None:
    summary = copy.deepcopy(SUMMARY)
    del summary[part]
    assert "**FAIL**" in [g[3] for g in goal_rows(summary, CASES)]


def test_the_section_feeds_the_summary_at_the_top(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    write_markdown(path, markdown(SUMMARY, goal_rows(SUMMARY, CASES)))
    text = path.read_text()
    assert SECTION in text
    assert "| Fuzzing | REST cases" in text  # the goals at a glance
    assert "| 4 other kinds | 6 |" in text  # (the eight commonest reasons, then 0 + 1 + 2 + 3)
    assert "not JSON / x" in text  # a cell holds no column separator


def test_it_runs_from_the_checkout_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert checkout(Path(__file__).parent) == Path(__file__).parents[2]
    monkeypatch.chdir(tmp_path)
    assert run_fuzz_bench(tmp_path / "BENCHMARKS.md", CASES) == 2
    assert "from the repository's checkout" in capsys.readouterr().out
    assert not (tmp_path / "BENCHMARKS.md").exists()
