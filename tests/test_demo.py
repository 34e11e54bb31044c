"""`vportctl demo`: the in-process narration (`--sim`), and what the lab demo does without a lab.

The lab demo itself (root, a real Open vSwitch) is tested in tests/lab/test_demo_lab.py;
here: its refusals (not root, a lab up already, a bad option) and its report.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from vportd.ctl import cli
from vportd_lab.bed import bed, netns, procs
from vportd_lab.bed.migrate import MigrationReport
from vportd_lab.bed.roles import View
from vportd_lab.demo import live as demo_lab
from vportd_lab.demo.narrated import run_demo


def test_demo_completes_every_migration_and_ends_with_json() -> None:
    out = io.StringIO()

    assert run_demo(out=out) == 0

    lines = out.getvalue().splitlines()
    assert "switchover" in out.getvalue()
    report = json.loads(lines[-1])
    assert [m["state"] for m in report["migrations"]] == ["completed"] * 3
    assert [m["destination"] for m in report["migrations"]] == ["hv1", "hv2", "hv0"]


def test_demo_json_mode_prints_only_the_json_line() -> None:
    out = io.StringIO()
    assert run_demo(json_output=True, out=out) == 0
    (line,) = out.getvalue().splitlines()
    assert json.loads(line)["migrations"]


def test_sim_flag_runs_the_narration(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--sim", "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert len(json.loads(line)["migrations"]) == 3


@pytest.fixture
def no_lab_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to build a lab fails the test: refusals come before anything is made."""

    def fail(*args: object) -> int:
        raise AssertionError("the demo started building a lab")

    monkeypatch.setattr(bed, "up", fail)


@pytest.mark.usefixtures("no_lab_built")
def test_without_root_it_says_so_and_points_at_sim(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cli.main(["demo"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "needs root" in err and "vportctl demo --sim" in err


@pytest.fixture
def as_root_without_lab(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(procs, "tap_holders", dict)
    monkeypatch.setattr(netns, "namespaces", list)


@pytest.mark.usefixtures("no_lab_built", "as_root_without_lab")
def test_refuses_when_a_lab_holds_the_datapath(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "lab.json").write_text("{}")
    pidfile = f"--pidfile={tmp_path}/ovs/ovs-vswitchd.pid"
    monkeypatch.setattr(procs, "tap_holders", lambda: {"ovs-netdev": [4242]})
    monkeypatch.setattr(procs, "cmdline", lambda pid: ["ovs-vswitchd", pidfile])
    assert cli.main(["demo", "--fabric", "patch"]) == 1
    err = capsys.readouterr().err
    assert "pid 4242" in err and f"vportctl lab down --dir {tmp_path}" in err


@pytest.mark.usefixtures("no_lab_built", "as_root_without_lab")
def test_refuses_the_namespaces_of_another_lab(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(netns, "namespaces", lambda: ["vm0", "other"])
    assert cli.main(["demo", "--fabric", "patch"]) == 1
    assert "VM namespaces of another lab exist (vm0)" in capsys.readouterr().err


@pytest.mark.usefixtures("no_lab_built", "as_root_without_lab")
def test_refuses_while_an_overlay_lab_is_up(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(netns, "namespaces", lambda: ["ov-hv0", "ov-fab", "vm0"])
    assert cli.main(["demo"]) == 1
    assert "namespaces of another overlay lab exist (ov-fab, ov-hv0)" in capsys.readouterr().err


@pytest.mark.usefixtures("no_lab_built", "as_root_without_lab")
def test_refuses_an_unknown_vm(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--vm", "vm7"]) == 2
    assert "--vm: no VM 'vm7'" in capsys.readouterr().err


def hop(source: str, destination: str) -> MigrationReport:
    return MigrationReport(
        vm="vm0", mac="02:00:00:00:00:01", source=source, destination=destination,
        outcome="migrated", fail_at=None, migration_id="m-1", handshake_ms=3.25,
        switchover_gap_ms=60.0, switchover_start_ms=1200.0, switchover_end_ms=1260.0,
        longest_gap_ms=63.5, longest_gap_ab_ms=63.5, longest_gap_ba_ms=61.0, lost_ab=58,
        lost_ba=57, excess_ms=3.5, converged_ms=8.0, peer="vm2",
        probe={"a_to_b": {"sent": 1700, "received": 1642},
               "b_to_a": {"sent": 1699, "received": 1642}},
    )  # fmt: skip


def test_report_has_a_table_per_migration_and_the_cluster() -> None:
    outcome = demo_lab.Outcome(Path("/tmp/vportd-demo-x"), up_s=7.0)
    outcome.hops = [hop("hv0", "hv1"), hop("hv1", "hv2")]
    outcome.cluster = View("c0", "c1", {"hv0": "c0", "hv1": "c1", "hv2": "c2"})

    text = demo_lab.report(outcome, 20.0)

    assert "migration 2: vm0 hv1 -> hv2 (m-1, migrated)" in text
    for row in ("handshake (", "switchover gap (", "longest gap (", "excess (",
                "lost vm0 -> vm2", "lost vm2 -> vm0"):  # fmt: skip
        assert text.count(row) == 2, row
    assert "58 of 1700" in text and "63.5 ms" in text
    assert "leader c1; masters hv0 c0, hv1 c1, hv2 c2" in text
    assert "completed in 20.0 s; lab torn down" in text

    doc = demo_lab.summary_json(outcome, 20.0)
    assert json.loads(json.dumps(doc)) == doc
    first = doc["migrations"][0]
    assert {k: first[k] for k in ("vm", "from", "to", "lost_ab", "lost_ba")} == {
        "vm": "vm0", "from": "hv0", "to": "hv1", "lost_ab": 58, "lost_ba": 57,
    }  # fmt: skip
    assert doc["cluster"]["leader"] == "c1" and doc["ok"] is True and doc["error"] is None


def test_a_direction_that_lost_most_packets_is_flagged() -> None:
    """The probe's longest gap is 0 for a direction that received nothing: say so."""
    bad = hop("hv2", "hv0")
    bad.probe = {
        "a_to_b": {"sent": 4101, "received": 0},
        "b_to_a": {"sent": 4101, "received": 4002},
    }
    assert demo_lab.warnings(hop("hv0", "hv1")) == []
    (warning,) = demo_lab.warnings(bad)
    assert warning.startswith("vm0 -> vm2: 0 of 4101 packets arrived")
    assert "WARNING: vm0 -> vm2" in demo_lab.hop_table(3, bad)
    assert demo_lab.hop_json(bad)["warnings"] == [warning]
