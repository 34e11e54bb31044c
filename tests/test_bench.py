"""The core benchmark's machinery, on a tiny run: counts and reports, never timings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vportd_lab.bench.core.fabric import build_fabric
from vportd_lab.bench.core.report import SECTION, Result
from vportd_lab.bench.core.run import bench, run_bench
from vportd_lab.bench.core.timed import TimedCluster
from vportd_lab.bench.core.workload import Workload
from vportd_lab.bench.doc import notes, write_markdown
from vportd_lab.sim.cluster import SimCluster

EVENTS = 2000
SWITCHES = 40
CONTROLLERS = 3


@pytest.fixture(scope="module")
def result() -> Result:
    return bench(EVENTS, SWITCHES, CONTROLLERS)


def test_the_fabric_is_a_pod_tree_rooted_at_the_core() -> None:
    fabric = build_fabric(1000)
    topo = fabric.topology
    assert len(topo.switches) == 1000
    assert fabric.pods == 31
    assert len(fabric.hypervisors) == 1000 - 1 - 31
    assert topo.root == "core"
    # A hypervisor's only link is to its pod: its default port leads there.
    assert all(len(topo.link_ports(hv)) == 1 for hv in fabric.hypervisors)


@pytest.mark.parametrize("switches", [1, 2, 3, 4, 10])
def test_tiny_fabrics_still_have_hypervisors(switches: int) -> None:
    fabric = build_fabric(switches)
    assert len(fabric.topology.switches) == switches
    assert fabric.hypervisors


def test_every_port_event_is_counted_once(result: Result) -> None:
    assert sum(result.port_events.values()) == EVENTS
    assert set(result.port_events) == {"add", "modify", "delete"}
    per = result.per_controller
    assert len(per) == CONTROLLERS
    assert sum(c["own_port_events"] for c in per.values()) == EVENTS
    # The store's watch brings every record written to every controller.
    updates = [c["store_updates"] for c in per.values()]
    assert updates[0] > 0 and updates == [updates[0]] * CONTROLLERS
    for c in per.values():
        assert c["events"] == c["own_port_events"] + c["store_updates"]
        assert c["seconds"] > 0
        assert c["events_per_second"] > 0
    assert sum(c["switches"] for c in per.values()) == SWITCHES
    assert sum(c["flow_mods"] for c in per.values()) == result.flow_mods > 0


def test_the_workload_mixes_every_operation_without_refusals(result: Result) -> None:
    assert set(result.ops) == {"boot", "migrate", "flap", "remove", "abort", "address"}
    assert result.errors == {}
    assert result.outcomes["migrated"] > 0
    assert result.outcomes["aborted"] == result.aborts > 0
    assert result.notifies >= result.outcomes["migrated"] + result.aborts
    # The handshake ran: the leader alone got the sync-complete answers.
    leader = [c for c in result.per_controller.values() if c["leader"]]
    assert len(leader) == 1
    assert leader[0]["calls"]["notify"] == result.notifies
    answered = [c for c in result.per_controller.values() if c["calls"].get("sync_answered")]
    assert answered == leader


def test_memory_is_measured_per_live_vport(result: Result) -> None:
    m = result.memory
    assert 0 < m["live_vports"] <= result.ops["boot"]
    assert m["tombstones"] <= result.ops["remove"]
    for c in m["per_controller"].values():
        assert 0 < c["table_traced"] <= c["state_traced"]
        assert 0 < c["flows_traced"] <= c["state_traced"]
        assert c["state_walked"] > 0
    assert m["worst_bytes_per_vport"] > 0
    assert m["cluster_bytes"] > 0
    speed, memory = result.goals
    assert speed["pass"] == (speed["measured"] >= 50_000)
    assert memory["pass"] == (memory["measured"] <= 1024)


def test_the_workload_is_deterministic_and_the_tables_converge() -> None:
    def run() -> tuple[dict[str, int], dict[str, int], int, TimedCluster]:
        fabric = build_fabric(SWITCHES)
        fabric.topology.precompute()
        cluster = TimedCluster(SimCluster.build(fabric.topology, CONTROLLERS, fabric=False))
        workload = Workload(cluster, fabric.hypervisors)
        workload.run(EVENTS)
        return dict(cluster.port_events), dict(workload.ops), cluster.sim.flow_mods, cluster

    first, second = run(), run()
    assert first[:3] == second[:3]
    sim = first[3].sim
    assert sim.queue == []
    for ctl in sim.controllers.values():  # each table is the store of record
        assert {rec.vm: rec for rec in ctl.records()} == sim.store


def test_run_bench_writes_its_section_and_keeps_the_others(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\nIntro.\n\n## Other: something else\n\nTheir figures.\n")

    assert run_bench(EVENTS, SWITCHES, CONTROLLERS, out) == 0
    assert run_bench(EVENTS, SWITCHES, CONTROLLERS, out) == 0  # replaced, not appended

    text = out.read_text()
    assert text.count(SECTION) == 1
    assert "## Other: something else\n\nTheir figures.\n" in text
    assert text.startswith("# Benchmarks\n\n## Goals at a glance\n")
    assert "\n\nIntro.\n\n## " in text  # kept, below the table of goals
    assert f"vportctl bench --events {EVENTS} --switches {SWITCHES}" in text
    assert "events/s per controller" in text
    assert notes("core") in text  # the prose under the figures, from the package's notes
    raw = json.loads((tmp_path / "bench-results" / "core.json").read_text())
    assert sum(raw["port_events"].values()) == EVENTS
    assert raw["machine"]["cores"]


def test_write_markdown_replaces_only_its_section(tmp_path: Path) -> None:
    out = tmp_path / "B.md"
    write_markdown(out, f"{SECTION}\n\nfirst\n")
    assert out.read_text().endswith(f"\n\n{SECTION}\n\nfirst\n")
    out.write_text(out.read_text() + "\n## Later\n\nkept\n")
    write_markdown(out, f"{SECTION}\n\nsecond\n")
    assert out.read_text().endswith(f"\n\n{SECTION}\n\nsecond\n\n## Later\n\nkept\n")
