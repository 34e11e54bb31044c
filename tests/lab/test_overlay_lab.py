"""`vportctl lab up --fabric overlay`: hosts, controllers and etcd in namespaces of their own.

Each test builds its own overlay lab (namespaces `ov-*`, the root
namespace's leg `ov-mgmt`; the patch lab's datapath and names are not
touched) and takes it down, checking that nothing is left:

- with two real controllers: `lab status --json`'s overlay fields, every
  host's OVSDB as a controller reads it (over TCP from the controller's
  namespace), every br-int as the controller contract wants it and
  connected to every controller, the underlay between every pair of hosts,
  and a cut management link partitioning one controller;
- without controllers, per encapsulation: a VM pings a VM on another host
  through the tunnel ports, with tunnel flows written here by hand (the
  fabric, independent of the controller);
- standalone (OVS's NORMAL switch, no controller): VMs of one segment on a
  host reach each other, of two segments do not; `lab migrate` moves a VM's
  port from one host's OVSDB to the other's.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.test_lab import lab_processes, sh, vportctl
from tests.lab.test_lab import pytestmark as lab_marks
from tests.lab.test_lab_ping import ping
from vportd_lab.bed import netns, procs, store
from vportd_lab.bed.plan import OVERLAY_NAMESPACE, ROOT_LEG, TUNNEL_NAME, TUNNEL_PORT

pytestmark = lab_marks  # root, ovs, skipped unless root


@pytest.fixture
def lab_dir() -> Iterator[Path]:
    """A fresh lab directory; `lab down` after, whatever happened."""
    taken = [n for n in netns.namespaces() if OVERLAY_NAMESPACE.match(n)]
    if taken:
        pytest.skip(f"namespaces of another overlay lab exist ({', '.join(taken)})")
    base = Path(tempfile.mkdtemp(prefix="ov-", dir="/tmp"))  # short: unix sockets below
    try:
        yield base / "lab"
    finally:
        vportctl("lab", "down", "--dir", str(base / "lab"))
        shutil.rmtree(base, ignore_errors=True)


def up(lab: Path, *extra: str) -> dict[str, Any]:
    result = vportctl("lab", "up", "--dir", str(lab), "--fabric", "overlay", "--json", *extra)
    # 3: up, but the cluster did not settle: the controller side of the overlay (one switch
    # per host, named after it) is not this test's subject.
    assert result.returncode in (0, 3), result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def status(lab: Path) -> dict[str, Any]:
    result = vportctl("lab", "status", "--dir", str(lab), "--json")
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def in_ns(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *args], capture_output=True, text=True, timeout=30, check=check
    )


def vsctl(hv: dict[str, Any], *args: str) -> str:
    return sh("ovs-vsctl", f"--db={hv['db']}", *args).strip()


def ofctl(hv: dict[str, Any], *args: str) -> str:
    cmd, *rest = args
    mgmt = f"unix:{hv['rundir']}/br-int.mgmt"
    return sh("ovs-ofctl", "-O", "OpenFlow13", cmd, mgmt, *rest)


def get(hv: dict[str, Any], table: str, record: str, column: str) -> str:
    return vsctl(hv, "get", table, record, column).strip('"')


def assert_gone(lab: Path, doc: dict[str, Any]) -> None:
    """Nothing of the lab is left: namespaces, the root leg, processes, directory."""
    assert not [n for n in netns.namespaces() if OVERLAY_NAMESPACE.match(n)]
    assert netns.link(ROOT_LEG) is None
    assert not lab_processes(lab)
    assert not store.running(lab)
    assert not lab.exists()
    ifnames = {e["ifname"] for e in netns.links()}
    assert not ifnames & {"br-int", "br-phy", *(vm["port_name"] for vm in doc["vms"])}


def down(lab: Path, doc: dict[str, Any]) -> None:
    result = vportctl("lab", "down", "--dir", str(lab))
    assert result.returncode == 0, result.stderr
    assert_gone(lab, doc)


def wait_for(condition: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


# -- with controllers ---------------------------------------------------------------------
def test_overlay_lab_with_controllers(lab_dir: Path) -> None:
    doc = up(lab_dir, "--hypervisors", "2", "--vms", "4", "--segments", "2",
             "--controllers", "2", "--wait", "8")  # fmt: skip
    check_layout(lab_dir, doc)
    for hv in doc["hypervisors"]:
        check_ovsdb_over_tcp(doc, hv)
        check_br_int(doc, hv)
    check_connected(doc)
    check_underlay(doc)
    check_partition(doc)
    # the hosts' datapaths are not this namespace's: a patch lab may still start here
    held = set(procs.tap_holders().get("ovs-netdev", []))
    assert not held & {hv["ovs_vswitchd"] for hv in doc["hypervisors"]}
    st = status(lab_dir)
    assert [(h["netns"], h["ovsdb"]) for h in st["hypervisors"]] == [
        (h["netns"], h["ovsdb"]) for h in doc["hypervisors"]
    ]
    down(lab_dir, doc)


def check_layout(lab: Path, doc: dict[str, Any]) -> None:
    assert doc["fabric"] == "overlay"
    assert doc["ovs"] is None
    assert doc["segments"] == [
        {"tag": 10, "vni": 10, "name": "seg10"}, {"tag": 20, "vni": 20, "name": "seg20"},
    ]  # fmt: skip
    for i, hv in enumerate(doc["hypervisors"]):
        assert hv["name"] == f"hv{i}" and hv["bridge"] == "br-int"
        assert hv["netns"] == f"ov-hv{i}"
        assert hv["ovsdb"] == f"tcp:172.30.0.{100 + i}:6640"
        assert hv["encap_ip"] == f"172.31.0.{i + 1}"
        assert hv["rundir"] == str(lab / f"hv{i}") and Path(hv["rundir"]).is_dir()
        assert hv["ovs_vswitchd"] and hv["ovsdb_server"]
    for c, ctrl in enumerate(doc["controllers"]):
        assert ctrl["netns"] == f"ov-c{c}" and ctrl["alive"]
        assert ctrl["openflow"].startswith(f"172.30.0.{10 + c}:")
    for k, vm in enumerate(doc["vms"]):
        assert vm["netns"] == f"ov-vm{k}" and vm["hypervisor"] == f"hv{k % 2}"
        assert vm["segment"] == (10, 20)[k % 2]
    assert doc["etcd"]["endpoint"] == "172.30.0.2:2379" and doc["etcd"]["alive"]
    assert {n for n in netns.namespaces() if OVERLAY_NAMESPACE.match(n)} == {
        "ov-fab", "ov-etcd", "ov-c0", "ov-c1", "ov-hv0", "ov-hv1",
        *(f"ov-vm{k}" for k in range(4)),
    }  # fmt: skip


def check_ovsdb_over_tcp(doc: dict[str, Any], hv: dict[str, Any]) -> None:
    """The host's OVSDB as a controller reads it: over TCP, from the controller's namespace."""
    for ctrl in doc["controllers"]:
        done = in_ns(ctrl["netns"], "ovs-vsctl", f"--db={hv['ovsdb']}", "--timeout=10",
                     "get", "Open_vSwitch", ".", "external_ids")  # fmt: skip
        ids = done.stdout
        assert f"hostname={hv['name']}" in ids and f"system-id={hv['name']}" in ids
        assert f'vportd-encap-ip="{hv["encap_ip"]}"' in ids


def check_br_int(doc: dict[str, Any], hv: dict[str, Any]) -> None:
    assert get(hv, "Bridge", "br-int", "datapath_type") == "netdev"
    assert get(hv, "Bridge", "br-int", "fail_mode") == "secure"
    assert get(hv, "Bridge", "br-int", "other_config:datapath-id") == hv["dpid"]
    assert get(hv, "Bridge", "br-int", "other_config:disable-in-band") == "true"
    targets = set(vsctl(hv, "get-controller", "br-int").split())
    assert targets == {f"tcp:{c['openflow']}" for c in doc["controllers"]}
    assert get(hv, "Interface", TUNNEL_NAME, "type") == "geneve"
    assert get(hv, "Interface", TUNNEL_NAME, "options") == "{key=flow, remote_ip=flow}"
    assert get(hv, "Interface", TUNNEL_NAME, "ofport") == str(TUNNEL_PORT)
    assert "br-int" not in vsctl(hv, "port-to-br", "uplink")  # the uplink is in br-phy
    assert vsctl(hv, "port-to-br", "uplink") == "br-phy"
    for vm in doc["vms"]:
        if vm["hypervisor"] != hv["name"]:
            continue
        port = vm["port_name"]
        assert get(hv, "Port", port, "tag") == str(vm["segment"])
        assert get(hv, "Interface", port, "ofport") == str(vm["port"])
        assert get(hv, "Interface", port, "external_ids:attached-mac") == vm["mac"]
        assert get(hv, "Interface", port, "external_ids:iface-id") == vm["iface_id"]
        assert get(hv, "Interface", port, "external_ids:vm-id") == vm["vm_id"]


def check_connected(doc: dict[str, Any]) -> None:
    """Every br-int is connected to every controller (OVSDB's is_connected)."""

    def connected() -> bool:
        for hv in doc["hypervisors"]:
            flags = vsctl(hv, "--columns=is_connected", "--bare", "list", "Controller").split()
            if flags != ["true"] * len(doc["controllers"]):
                return False
        return True

    assert wait_for(connected), [
        vsctl(hv, "list", "Controller") for hv in doc["hypervisors"]
    ]  # fmt: skip


def check_underlay(doc: dict[str, Any]) -> None:
    """br-phy to br-phy, both ways, over the underlay."""
    for a in doc["hypervisors"]:
        for b in doc["hypervisors"]:
            if a is not b:
                done = in_ns(a["netns"], "ping", "-n", "-c", "2", "-W", "1", b["encap_ip"],
                             check=False)  # fmt: skip
                assert done.returncode == 0, done.stdout


def check_partition(doc: dict[str, Any]) -> None:
    """Cutting controller c1's link to the management network partitions it, and only it."""
    hv = doc["hypervisors"][0]

    def reads(ctrl: str) -> bool:
        done = in_ns(ctrl, "ovs-vsctl", f"--db={hv['ovsdb']}", "--timeout=2", "get",
                     "Open_vSwitch", ".", "external_ids:hostname", check=False)  # fmt: skip
        return done.returncode == 0

    sh("ip", "-n", "ov-fab", "link", "set", "dev", "c1-m", "down")
    try:
        assert not reads("ov-c1") and reads("ov-c0")
    finally:
        sh("ip", "-n", "ov-fab", "link", "set", "dev", "c1-m", "up")
    assert wait_for(lambda: reads("ov-c1"))


# -- the fabric alone: hand-written tunnel flows ------------------------------------------
@pytest.mark.parametrize("encap", ["geneve", "vxlan"])
def test_overlay_tunnel_carries_vm_traffic(lab_dir: Path, encap: str) -> None:
    doc = up(lab_dir, "--hypervisors", "2", "--vms", "2", "--controllers", "0",
             "--encap", encap)  # fmt: skip
    hv0, hv1 = doc["hypervisors"]
    vm0, vm1 = doc["vms"]
    assert get(hv0, "Interface", TUNNEL_NAME, "type") == encap
    vni = 5001
    for hv, vm, other in ((hv0, vm0, hv1), (hv1, vm1, hv0)):
        ofctl(hv, "add-flow", f"in_port={vm['port']},actions=set_field:{other['encap_ip']}"
              f"->tun_dst,set_field:{vni}->tun_id,output:{TUNNEL_PORT}")  # fmt: skip
        ofctl(hv, "add-flow", f"in_port={TUNNEL_PORT},tun_id={vni},actions=output:{vm['port']}")
    out = ping(vm0, vm1)
    assert " 0% packet loss" in out, out
    # a full-size frame too (1500 bytes, not fragmented): the underlay has room for the headers
    full = in_ns(vm0["netns"], "ping", "-n", "-c", "2", "-W", "1", "-s", "1472", "-M", "do",
                 vm1["ip"], check=False)  # fmt: skip
    assert full.returncode == 0, full.stdout
    # frames came in through the tunnel port with the VNI: its flow counted some (the
    # datapath reports its counts with a lag)
    for hv in (hv0, hv1):
        flows = ofctl(hv, "dump-flows", f"in_port={TUNNEL_PORT},tun_id={vni}")
        counts = re.findall(r"n_packets=(\d+)", flows)
        assert counts and int(counts[0]) > 0, flows
    down(lab_dir, doc)


# -- standalone: segments on a host, and a migration between hosts ------------------------
def test_overlay_segments_and_migrate_standalone(lab_dir: Path) -> None:
    # VM k on hv{k%2}, segment (10, 20, 30)[k%3]: vm0 and vm6 share hv0 and segment 10,
    # vm2 is on hv0 in segment 30, vm3 on hv1 in segment 10.
    doc = up(lab_dir, "--hypervisors", "2", "--vms", "7", "--segments", "3",
             "--mode", "standalone")  # fmt: skip
    vms = {vm["name"]: vm for vm in doc["vms"]}
    assert " 0% packet loss" in ping(vms["vm0"], vms["vm6"])
    apart = in_ns("ov-vm0", "ping", "-n", "-c", "2", "-W", "1", vms["vm2"]["ip"], check=False)
    assert apart.returncode != 0, "a frame crossed from segment 10 to segment 30"

    hv0, hv1 = doc["hypervisors"]
    result = vportctl("lab", "migrate", "vm0", "--to", "hv1", "--dir", str(lab_dir),
                      "--precopy", "0.2", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["outcome"] == "migrated" and report["host_if"] == "vm0h1"
    # the port left hv0's OVSDB and joined hv1's, as libvirt would add it there
    assert "vm0h" not in vsctl(hv0, "list-ports", "br-int").split()
    assert "vm0h1" in vsctl(hv1, "list-ports", "br-int").split()
    assert get(hv1, "Port", "vm0h1", "tag") == "10"
    assert get(hv1, "Interface", "vm0h1", "ofport") == "1"
    assert get(hv1, "Interface", "vm0h1", "external_ids:attached-mac") == vms["vm0"]["mac"]
    # the veths: the new one's host end in hv1's namespace, none left in hv0's or here
    assert netns.link("vm0h1", "ov-hv1") is not None
    assert netns.link("vm0h", "ov-hv0") is None and netns.link("vm0h1") is None
    assert [e["ifname"] for e in netns.links("ov-vm0")] == ["lo", "eth0"]
    moved = {vm["name"]: vm for vm in status(lab_dir)["vms"]}["vm0"]
    assert (moved["hypervisor"], moved["port_name"], moved["port"]) == ("hv1", "vm0h1", 1)
    # on hv1 it reaches vm3, of its segment there
    assert " 0% packet loss" in ping(moved, vms["vm3"])
    down(lab_dir, doc)


def test_overlay_down_without_a_state_file(lab_dir: Path) -> None:
    """After a crash that lost the state file, `lab down` finds the lab by its names and marks."""
    doc = up(lab_dir, "--hypervisors", "2", "--vms", "2", "--controllers", "1", "--wait", "3")
    (lab_dir / "lab.json").unlink()
    down(lab_dir, doc)
