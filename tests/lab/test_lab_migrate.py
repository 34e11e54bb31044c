"""`vportctl lab migrate`: a lab VM live-migrated through a 3-controller cluster under the probe.

With every channel over TLS (`lab up --tls`, its own lab, first): vm0 moves
hv0 -> hv1 under the probe, the VMM's notify and the controllers' handshake
over https.

One lab (3 controllers, 3 hypervisors, 3 VMs) for the rest of the module: vm0 moves
hv0 -> hv1 -> hv2 with the traffic probe running against another VM; then
failed migrations (`--fail-at`) leave it at hv2, reachable and not
migrating. After each step: the VM pings from every other VM, every
controller's API shows it not-migrating where it is, `lab status` shows its
new place; `lab down` leaves nothing behind (the new veths included).
Bounds are generous relations, never tight timings.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.conftest import lab_up
from tests.lab.test_lab import assert_gone, status, up, vportctl
from tests.lab.test_lab import pytestmark as lab_marks
from tests.lab.test_lab_ping import ping
from vportd.ctl.client import Client
from vportd.ctl.target import read_token
from vportd_lab.bed import netns
from vportd_lab.bed.migrate import MigrateOptions, migrate
from vportd_lab.bed.plan import VM_HOST_IF

pytestmark = lab_marks  # root, ovs, skipped unless root

MAC = "02:00:00:00:00:01"


LAYOUT = ("--controllers", "3", "--hypervisors", "3", "--vms", "3")


def test_with_tls_vm0_moves_under_the_probe(lab_dir: Path) -> None:
    """First in the module: its lab is down before the module's lab comes up."""
    result, doc = up(lab_dir, *LAYOUT, "--tls")
    assert result.returncode == 0, result.stderr
    assert doc["tls"]["ca"] and doc["controllers"][0]["api"].startswith("https://")
    done = lab_migrate(lab_dir, "vm0", "--to", "hv1", "--probe")
    assert done["outcome"] == "migrated" and done["migration_id"]
    assert 0 < done["handshake_ms"] < done["phases"]["precopy"]
    check_probe(done)
    check_placed(lab_dir, "hv1", "vm0h1")
    names = status(lab_dir)
    gone = vportctl("lab", "down", "--dir", str(lab_dir))
    assert gone.returncode == 0, gone.stderr
    assert_gone(lab_dir, names)


@pytest.fixture(scope="module")
def lab() -> Iterator[Path]:
    """One lab for the module (up takes seconds), with the checks of `lab_dir`."""
    with lab_up(*LAYOUT) as lab_dir:
        yield lab_dir


def lab_migrate(lab: Path, *args: str) -> dict[str, Any]:
    result = vportctl("lab", "migrate", "--dir", str(lab), "--json", *args)
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def vm_of(lab: Path, name: str) -> dict[str, Any]:
    return next(vm for vm in status(lab)["vms"] if vm["name"] == name)


def check_placed(lab: Path, hypervisor: str, port_name: str) -> None:
    """lab status, every controller and the pings agree: vm0 runs on `hypervisor`."""
    st = status(lab)
    vm0 = next(vm for vm in st["vms"] if vm["name"] == "vm0")
    assert (vm0["hypervisor"], vm0["port_name"], vm0["port"]) == (hypervisor, port_name, 1)
    token = read_token(Path(st["token_file"]))
    ca = Path(st["tls"]["ca"]) if st["tls"] else None
    for c in st["controllers"]:
        with Client(c["api"], token, ca=ca) as client:
            v = client.vport(MAC)
        assert v["migration_state"] == "not-migrating", (c["id"], v)
        assert (v["ovs"], v["port"], v["port_name"]) == (hypervisor, 1, port_name), (c["id"], v)
    for other in st["vms"]:
        if other["name"] != "vm0":
            out = ping(other, vm0)
            assert " 0% packet loss" in out, f"{other['name']} -> vm0:\n{out}"


def check_probe(doc: dict[str, Any]) -> None:
    """The probe saw the VM move: a gap about as long as the switchover, little loss."""
    gap = doc["switchover_gap_ms"]
    assert gap is not None and gap >= 50  # the default stop-and-copy pause is inside it
    assert doc["longest_gap_ms"] == max(doc["longest_gap_ab_ms"], doc["longest_gap_ba_ms"])
    assert doc["longest_gap_ms"] < gap + 500
    sent = doc["probe"]["a_to_b"]["sent"]
    assert sent > 1000  # about 1 ms apart over more than 1 s
    assert doc["lost_ab"] + doc["lost_ba"] < (gap + 500) * 2
    # the longest gap overlaps the switchover (both on the probe's clock)
    a_to_b = doc["probe"]["a_to_b"]
    assert a_to_b["gap_end_ms"] > doc["switchover_start_ms"]


def test_refuses_what_it_cannot_do(lab: Path) -> None:
    same = vportctl("lab", "migrate", "--dir", str(lab), "vm1", "--to", "hv1")
    assert same.returncode == 2 and "already" in same.stderr
    unknown = vportctl("lab", "migrate", "--dir", str(lab), "vm7", "--to", "hv0", "--json")
    assert unknown.returncode == 2 and json.loads(unknown.stdout)["error"] == "unknown-vm"
    plot = vportctl("lab", "migrate", "--dir", str(lab), "vm0", "--to", "hv1", "--plot", "p.png")
    assert plot.returncode == 2 and "--plot needs --probe" in plot.stderr


def test_migrate_under_the_probe_and_fail_back(lab: Path, tmp_path: Path) -> None:
    assert vm_of(lab, "vm0")["hypervisor"] == "hv0"
    plot = tmp_path / "migration-1.png"
    first = lab_migrate(lab, "vm0", "--to", "hv1", "--probe", "--plot", str(plot))
    assert plot.stat().st_size > 0 and plot.read_bytes().startswith(b"\x89PNG")
    assert {"notify", "notified", "port_added", "old_down", "switchover_end",
            "source_deleted"} <= set(first["timeline"])  # fmt: skip
    assert (first["vm"], first["source"], first["destination"]) == ("vm0", "hv0", "hv1")
    assert first["outcome"] == "migrated" and first["migration_id"]
    assert first["peer"] == "vm2"  # on neither hv0 nor hv1
    assert 0 < first["handshake_ms"] < first["phases"]["precopy"]
    check_probe(first)
    check_placed(lab, "hv1", "vm0h1")

    second = lab_migrate(lab, "vm0", "--to", "hv2", "--probe", "vm1", "--precopy", "0.5")
    assert (second["source"], second["destination"], second["peer"]) == ("hv1", "hv2", "vm1")
    assert second["migration_id"] != first["migration_id"]
    check_probe(second)
    check_placed(lab, "hv2", "vm0h2")

    # A VMM failing after the stop-and-copy pause: the source VM resumes, the probe
    # sees about the pause and no more.
    failed = lab_migrate(lab, "vm0", "--to", "hv0", "--probe", "--fail-at", "switchover")
    assert failed["outcome"] == "aborted" and failed["fail_at"] == "switchover"
    assert failed["longest_gap_ms"] < failed["switchover_gap_ms"] + 500
    check_placed(lab, "hv2", "vm0h2")

    # From Python (as the demo and the benchmark call it): failing right after notify.
    report = migrate(MigrateOptions(lab, "vm0", "hv0", precopy=0.0, fail_at="notify"))
    assert report.outcome == "aborted" and report.switchover_gap_ms is None
    check_placed(lab, "hv2", "vm0h2")

    names = status(lab)
    gone = vportctl("lab", "down", "--dir", str(lab))
    assert gone.returncode == 0, gone.stderr
    assert_gone(lab, names)
    assert not [e["ifname"] for e in netns.links() if VM_HOST_IF.match(e["ifname"])]
