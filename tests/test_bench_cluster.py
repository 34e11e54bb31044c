"""The cluster benchmark's machinery on a tiny run: counts and reports, never timings.

Three real `vportd` processes, a private etcd and a dummy-datapath OVS, as
`vportctl bench --suite cluster` runs them, with sizes small enough for a test.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from vportd.ctl.cli import build_parser
from vportd_lab.bench.cluster.report import SECTION
from vportd_lab.bench.cluster.results import RESULTS, Sizes
from vportd_lab.bench.cluster.run import run_cluster_bench
from vportd_lab.bench.cluster.storm import storm_vms
from vportd_lab.bench.doc import notes

pytestmark = [
    pytest.mark.ovs,
    pytest.mark.etcd,
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="Open vSwitch not installed"),
    pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd not installed"),
]

SIZES = Sizes(migrations=6, propagation=4, storm=60, switches=3, failovers=1)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\n## Core: kept\n\nbody\n")
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert run_cluster_bench(out, SIZES) == 0
    (out.parent / "stdout.txt").write_text(printed.getvalue())
    return out


def test_the_last_line_names_every_figure(report: Path) -> None:
    last = (report.parent / "stdout.txt").read_text().splitlines()[-1]
    figures = json.loads(last)
    assert list(figures) == [
        "hypervisors", "storm_ports_per_s", "storm_cpu_us_per_port_max",
        "storm_floor_ovs_cpu_s", "ovsdb_sessions", "handshake_p50_ms", "handshake_p99_ms",
        "handshake_in_storm_p99_ms", "propagation_p99_ms", "failover_s", "bytes_per_vport",
    ]  # fmt: skip
    assert figures["hypervisors"] == SIZES.switches
    # A controller follows the OVSDB servers (one per hypervisor) of what it masters:
    # each server is followed by one controller, its master.
    sessions = figures["ovsdb_sessions"]
    assert set(sessions) == {"c0", "c1", "c2"} and sum(sessions.values()) == SIZES.switches
    measured = {k: v for k, v in figures.items() if k not in ("hypervisors", "ovsdb_sessions")}
    # (A 60-port storm's memory growth and OVS floor round to anything, zero included.)
    assert all(isinstance(v, (int, float)) for v in measured.values()), measured
    assert figures["storm_ports_per_s"] > 0 and figures["storm_cpu_us_per_port_max"] > 0


def test_the_section_is_written_and_the_others_kept(report: Path) -> None:
    text = report.read_text()
    assert "## Core: kept" in text and "body" in text
    assert SECTION in text
    for goal in ("handshake via the leader, p50", "handshake via the follower, p99",
                 "master's entry → every controller", "boot storm", "leader failover",
                 "Storm floor"):  # fmt: skip
        assert goal in text
    assert "--migrations 6" in text  # the command that reproduces it
    assert notes("cluster") in text


def test_the_raw_results_count_every_measurement(report: Path) -> None:
    raw = json.loads((report.parent / RESULTS).read_text())
    assert [h["via"] for h in raw["handshakes"]] == ["leader", "follower"]
    assert all(h["latency"]["n"] == SIZES.migrations for h in raw["handshakes"])
    assert raw["propagation"]["cluster"]["n"] == SIZES.propagation
    assert sum(raw["propagation"]["first_by"].values()) == SIZES.propagation
    assert len(raw["failover"]["seconds"]) == SIZES.failovers
    storm = raw["storm"]
    assert (storm["ports"], storm["switches"]) == (SIZES.storm, SIZES.switches)
    assert set(storm["per_controller"]) == {"c0", "c1", "c2"}
    assert storm["rate"] > 0
    calm = storm["calm"]
    assert calm["masters_moved"] == 0 and calm["leader_kept"]
    assert set(calm["lag_bound"]) == set(calm["lags_over_1s"]) == {"c0", "c1", "c2"}
    floor = raw["storm_floor"]
    assert (floor["ports"], floor["transactions"]) == (SIZES.storm, storm["transactions"])
    assert set(floor["cpu"]) == {"ovs-vswitchd", "ovsdb-server"}
    assert floor["settled"] >= floor["seconds"] - 0.5  # quiet only after the transactions


def test_storm_ports_spread_over_the_switches_with_unique_macs() -> None:
    vms = storm_vms(100, ["hv0", "hv1", "hv2", "hv3"], 0x100000)
    assert len({vm.mac for vm in vms}) == 100
    assert {vm.bridge for vm in vms} == {"hv0", "hv1", "hv2", "hv3"}
    assert len({(vm.bridge, vm.ofport) for vm in vms}) == 100


def test_the_cli_offers_the_cluster_suite() -> None:
    args = build_parser().parse_args(["bench", "--suite", "cluster"])
    assert args.suite == "cluster"
