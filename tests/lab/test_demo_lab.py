"""`vportctl demo` on the real lab: it migrates, reports, ends with JSON and leaves nothing.

Each test builds the demo's own lab in a temp directory: the overlay (3
hosts, 6 VMs in 2 segments; the default) or the patch fabric (3 bridges of
one OVS, 3 VMs), so it cannot share the machine with another lab of its
fabric: when one is up, it skips. Bounds are relations, not timings.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.lab.test_lab import BIN, assert_gone
from tests.lab.test_lab import pytestmark as lab_marks
from vportd.ctl import cli
from vportd_lab.bed import netns, procs, teardown
from vportd_lab.bed.commands import LabError
from vportd_lab.bed.plan import DATAPATH_TAP, OVERLAY_NAMESPACE, VM_HOST_IF, VM_NAMESPACE
from vportd_lab.demo import live as demo_lab

pytestmark = lab_marks  # root, ovs, skipped unless root

# The names the demo's lab uses, for `assert_gone`.
NAMES = {
    "vms": [{"netns": f"vm{k}", "port_name": f"vm{k}h"} for k in range(3)],
    "hypervisors": [{"bridge": f"hv{i}"} for i in range(3)],
}
BUSY = ("runs in this network namespace already", "is held by pid", "VM namespaces of another")


@pytest.fixture(autouse=True)
def datapath_free() -> None:
    """Skip while another lab holds the one userspace datapath (or its VM names)."""
    holders = procs.tap_holders().get(DATAPATH_TAP)
    names = netns.namespaces()
    taken = [n for n in names if VM_NAMESPACE.match(n) or OVERLAY_NAMESPACE.match(n)]
    if holders or taken:
        pytest.skip(f"another lab is up (datapath held by {holders}, namespaces {taken})")


def skip_if_raced(err: str) -> None:
    """Another lab came up between the check and the demo: not the demo's fault."""
    if any(b in err for b in BUSY):
        pytest.skip(f"another lab took the datapath: {err.strip().splitlines()[-1]}")


def last_json(stdout: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return doc


def assert_nothing_left(doc: dict[str, Any]) -> None:
    lab = Path(doc["lab"]["dir"])
    assert doc["lab"]["left"] == [] and doc["lab"]["kept"] is False
    assert not [n for n in netns.namespaces() if OVERLAY_NAMESPACE.match(n)]
    if doc["lab"]["fabric"] == "overlay":
        assert not lab.exists()
        return
    assert_gone(lab, NAMES)
    assert not [e["ifname"] for e in netns.links() if VM_HOST_IF.match(e["ifname"])]
    assert DATAPATH_TAP not in procs.tap_holders()


def test_demo_migrates_reports_and_leaves_nothing(tmp_path: Path) -> None:
    """The default demo: the overlay, a migration of a VM of each segment across hosts."""
    plots = tmp_path / "plots"
    result = subprocess.run(
        [str(BIN / "vportctl"), "demo", "--hops", "1", "--precopy", "0.3", "--plots", str(plots)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    skip_if_raced(result.stderr)
    assert result.returncode == 0, result.stderr
    doc = last_json(result.stdout)
    assert (doc["lab"]["fabric"], doc["lab"]["segments"], doc["lab"]["vms"]) == ("overlay", 2, 6)
    hops = doc["migrations"]
    assert [(m["vm"], m["from"], m["to"]) for m in hops] == [
        ("vm0", "hv0", "hv1"), ("vm1", "hv1", "hv2"),
    ]  # fmt: skip
    assert [m["peer"] for m in hops] == ["vm2", "vm3"]  # a probe peer of its own segment
    for m in hops:
        assert 0 < m["handshake_ms"] < 1000
        assert m["switchover_gap_ms"] >= 50  # the default stop-and-copy pause is inside it
        assert m["longest_gap_ms"] >= 0
        assert isinstance(m["lost_ab"], int) and isinstance(m["lost_ba"], int)
        assert m["lost_ab"] >= 0 and m["lost_ba"] >= 0
        assert m["warnings"] == []  # both directions carried most of their packets
    assert doc["ok"] is True and doc["error"] is None
    assert doc["cluster"]["leader"] in ("c0", "c1", "c2")
    assert set(doc["cluster"]["masters"]) == {"hv0", "hv1", "hv2"}
    # the report for people, before the JSON line; progress on stderr
    assert "migration 2: vm1 hv1 -> hv2" in result.stdout and "leader" in result.stdout
    assert "segment 10" in result.stderr and "segment 20" in result.stderr
    assert "demo: migration 1/1" in result.stderr and "lab: handshake:" in result.stderr
    assert_nothing_left(doc)
    # one plot per migration, named on stderr
    assert doc["plots"] == [str(plots / "migration-1-hv0-hv1.png"),
                            str(plots / "migration-2-hv1-hv2.png")]  # fmt: skip
    for path in doc["plots"]:
        assert Path(path).read_bytes().startswith(b"\x89PNG") and path in result.stderr


def test_json_prints_only_the_json_line() -> None:
    result = subprocess.run(
        [str(BIN / "vportctl"), "demo", "--fabric", "patch", "--json", "--hops", "1",
         "--precopy", "0"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    skip_if_raced(result.stderr)
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    doc = json.loads(line)
    assert [(m["from"], m["to"]) for m in doc["migrations"]] == [("hv0", "hv1")]
    assert_nothing_left(doc)


def test_ctrl_c_tears_the_lab_down() -> None:
    demo = subprocess.Popen(
        [str(BIN / "vportctl"), "demo", "--fabric", "patch", "--hops", "3", "--precopy", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert demo.stderr is not None
    seen = []
    deadline = time.monotonic() + 120
    for line in demo.stderr:  # until the first migration's pre-copy runs
        seen.append(line)
        if "lab: prepare:" in line or time.monotonic() > deadline:
            break
    demo.send_signal(signal.SIGINT)
    out, err = demo.communicate(timeout=120)
    skip_if_raced("".join(seen) + err)
    assert demo.returncode == 130, "".join(seen) + err
    assert "vportctl demo: failed: interrupted" in err
    doc = last_json(out)
    assert doc["ok"] is False and doc["error"] == "interrupted"
    assert_nothing_left(doc)


def test_a_failing_step_tears_the_lab_down(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(opts: object) -> object:
        raise LabError("simulated failure of the migration")

    monkeypatch.setattr(demo_lab, "migrate", broken)
    rc = cli.main(["demo", "--fabric", "patch", "--hops", "1", "--json"])
    out, err = capsys.readouterr()
    skip_if_raced(err)
    assert rc == 1
    assert "vportctl demo: failed: simulated failure of the migration" in err
    doc = last_json(out)
    assert doc["migrations"] == [] and doc["error"] == "simulated failure of the migration"
    assert_nothing_left(doc)


def test_keep_leaves_the_lab_up_and_says_how_to_remove_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc = cli.main(
        ["demo", "--fabric", "patch", "--hops", "1", "--precopy", "0", "--keep", "--json"]
    )
    out, err = capsys.readouterr()
    skip_if_raced(err)
    doc = last_json(out)
    lab = Path(doc["lab"]["dir"])
    try:
        assert rc == 0, err
        assert doc["lab"]["kept"] is True and (lab / "lab.json").exists()
        assert f"`vportctl lab down --dir {lab}` takes it down" in err
        assert os.path.exists("/run/netns/vm0")
    finally:
        assert teardown.down(lab, quiet=True) == 0
    assert_gone(lab, NAMES)
