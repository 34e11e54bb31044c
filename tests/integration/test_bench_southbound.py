"""Smoke test of `python -m vportd_lab.bench.southbound` at a tiny size: counts, never times."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vportd_lab.bench.doc import notes, write_markdown
from vportd_lab.bench.southbound.report import SECTION
from vportd_lab.bench.southbound.run import run_southbound_bench
from vportd_lab.bench.southbound.vmms import OVSDB, VSCTL

OTHER = "## Core: port events on an in-process cluster\n\nthe other bench's text\n"
PARTS = ("end_to_end", "commit", "ofport", "link_up", "entry_up", "controller", "vmm_call")


@pytest.mark.ovs
@pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="Open vSwitch not installed")
def test_a_tiny_run_measures_every_port_and_installs_every_flow(tmp_path: Path) -> None:
    output = tmp_path / "BENCHMARKS.md"
    output.write_text(f"# Benchmarks\n\n{OTHER}")
    assert run_southbound_bench(output, ports=6, switches=3, floor_runs=4) == 0

    doc = json.loads((tmp_path / "bench-results" / "southbound.json").read_text())
    latency, install = doc["latency"], doc["install"]
    persistent, floor = doc["persistent"], doc["floor"]
    assert (latency["vmm"], persistent["vmm"]) == (VSCTL, OVSDB)
    for run, raw in ((latency, doc["raw_ms"]), (persistent, doc["persistent_raw_ms"])):
        assert (run["ports"], run["switches"]) == (6, 3)
        for part in PARTS:
            assert run[part]["n"] == 6
            assert len(raw[part]) == 6
        assert 0 <= run["in_table_before_vmm_returned"] <= 6
        assert run["flow_mods"] > 0
    assert latency["reply"] is None and "reply" not in doc["raw_ms"]
    assert persistent["reply"]["n"] == 6 and len(doc["persistent_raw_ms"]["reply"]) == 6
    # the same ports, as many at each step: the two runs install the same flows
    assert persistent["flow_mods"] == latency["flow_mods"]
    assert floor["runs"] == floor["version"]["n"] == floor["add_port"]["n"] == 4
    assert [len(doc["floor_raw_ms"][k]) for k in ("version", "add_port")] == [4, 4]
    assert (install["switches"], install["vms"]) == (3, 6)
    assert install["equal"] is True
    assert install["flows"] == sum(install["flows_per_switch"].values()) == install["ofctl_flows"]
    assert install["flow_mods"] == install["flows"]  # from nothing: one add per flow
    assert install["restart_flow_mods"] == 0

    text = output.read_text()
    assert text.count(SECTION) == 1 and OTHER.strip() in text
    assert "--ports 6 --switches 3 --floor-runs 4" in text
    assert "| one OVSDB connection: transaction sent → entry in the core's table, p50 |" in text
    assert "| `ovs-vsctl add-port` to the entry in the core's table, p50 |" in text
    assert "**ovs-vsctl's floor**" in text
    assert notes("southbound") in text


def test_the_section_is_replaced_and_the_others_kept(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(f"# Benchmarks\n\n{SECTION}\n\nold\n\n{OTHER}")
    write_markdown(path, f"{SECTION}\n\nnew\n")
    assert path.read_text().endswith(f"{SECTION}\n\nnew\n\n{OTHER}")
    write_markdown(path, f"{SECTION}\n\nnewer\n")
    assert path.read_text().endswith(f"{SECTION}\n\nnewer\n\n{OTHER}")
    assert path.read_text().count(SECTION) == 1
