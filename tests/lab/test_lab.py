"""`vportctl lab up|status|down` on this machine: real namespaces, veths and a userspace OVS.

Each test uses its own lab directory and free ports, so it never touches a
lab an operator runs in /run/vportd-lab. What it cannot share is the one
userspace datapath a network namespace can hold (and the VM namespace names):
if another lab is up, the tests skip and say so.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from vportd.node.config import load_config
from vportd_lab.bed import bed, netns, procs, store
from vportd_lab.bed.commands import LabError
from vportd_lab.bed.plan import vm_id
from vportd_lab.bed.ports import free_block

BIN = Path(sys.executable).parent

pytestmark = [
    pytest.mark.root,
    pytest.mark.ovs,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces, veths, OVS)"),
]

# A controller stand-in: validates its config with vportd's own schema, checks
# that the etcd it names answers, accepts OpenFlow connections on the configured
# address and holds them, and answers the API as a one-member cluster that
# leads and masters every bridge (so that `lab up` sees a settled cluster).
STAND_IN = """\
import json, socket, subprocess, sys, threading, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from vportd.node.config import load_config

cfg = load_config(Path(sys.argv[sys.argv.index("--config") + 1]))
with urllib.request.urlopen(f"http://{cfg.store.endpoints[0]}/health", timeout=5) as answer:
    assert json.load(answer)["health"] == "true"
me, db = cfg.controller.id, cfg.ovsdb.remotes[0]

def answer(path):
    if path == "/v1/cluster":
        return {"leader": me, "members": [{"id": me, "api": "", "healthy": True, "switches": []}]}
    if path == "/v1/healthz":
        return {"ok": True, "detail": {}}
    if path == "/v1/switches":
        names = subprocess.run(["ovs-vsctl", f"--db={db}", "list-br"], capture_output=True,
                               text=True, check=True).stdout.split()
        return [{"name": n, "dpid": "", "master": me, "connected": True, "generation": None}
                for n in names]
    return None

class Api(BaseHTTPRequestHandler):
    def do_GET(self):
        body = answer(self.path)
        self.send_response(404 if body is None else 200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())

    def log_message(self, *args):
        pass

host, port = cfg.api.listen.rsplit(":", 1)
api = ThreadingHTTPServer((host, int(port)), Api)
threading.Thread(target=api.serve_forever, daemon=True).start()
host, port = cfg.openflow.listen.rsplit(":", 1)
server = socket.create_server((host, int(port)))
held = []
while True:
    held.append(server.accept()[0])
"""


def vportctl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "vportctl"), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def sh(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=30).stdout


LAB_PORTS = 8  # more than the controllers of any lab test


def up(lab: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    # Controller c listens on PORT+c: a block of free ports below the ephemeral range, not
    # the kernel's pick for one (PORT+1 could be a busy machine's outgoing connection).
    openflow = free_block(LAB_PORTS)
    assert openflow is not None, "no free block of ports for the controllers' OpenFlow"
    api = free_block(LAB_PORTS, frozenset(range(openflow, openflow + LAB_PORTS)))
    assert api is not None, "no free block of ports for the controllers' API"
    args = ["--openflow-port", str(openflow), "--api-port", str(api)]
    result = vportctl("lab", "up", "--dir", str(lab), "--json", *args, *extra)
    assert result.returncode in (0, 3), result.stderr
    return result, json.loads(result.stdout)


def status(lab: Path) -> dict[str, Any]:
    result = vportctl("lab", "status", "--dir", str(lab), "--json")
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def stand_in(where: Path) -> Path:
    exe = where / "bin" / "vportd"
    exe.parent.mkdir()
    exe.write_text(f"#!{sys.executable}\n{STAND_IN}")
    exe.chmod(0o755)
    return exe


def vsctl(lab: Path, *args: str) -> str:
    return sh("ovs-vsctl", f"--db=unix:{lab}/ovs/db.sock", *args).strip()


def lab_processes(lab: Path) -> list[int]:
    return procs.find(lambda argv: any(str(lab) in a for a in argv))


def assert_gone(lab: Path, names: dict[str, Any]) -> None:
    """Nothing of the lab is left: namespaces, veths, taps, daemons, directory."""
    left_ns = set(netns.namespaces()) & {vm["netns"] for vm in names["vms"]}
    assert not left_ns
    ifnames = {e["ifname"] for e in netns.links()}
    ours = {vm["port_name"] for vm in names["vms"]} | {hv["bridge"] for hv in names["hypervisors"]}
    assert not ifnames & (ours | {"ovs-netdev"})
    assert not lab_processes(lab)
    assert not store.running(lab)  # no etcd of the lab (its --data-dir was under it)
    assert not (lab / "etcd").exists()
    assert not lab.exists()


def test_up_status_down(lab_dir: Path) -> None:
    result, doc = up(lab_dir)
    if result.returncode == 3:  # the controller died: the lab is up all the same
        assert "last lines of" in result.stderr
        assert doc["controllers"][0]["alive"] is False

    check_vms(doc)
    check_bridges(lab_dir, doc)
    check_ports(lab_dir, doc)
    check_status(lab_dir, doc)

    # -- a second `up` refuses; `down` removes everything (and stops what runs in a VM)
    again = vportctl("lab", "up", "--dir", str(lab_dir))
    assert again.returncode == 1 and "already up" in again.stderr
    inside = subprocess.Popen(["ip", "netns", "exec", "vm0", "sleep", "600"])
    assert procs.wait_until(lambda: inside.pid in netns.pids_in("vm0"), 5)
    gone = vportctl("lab", "down", "--dir", str(lab_dir))
    assert gone.returncode == 0, gone.stderr
    assert inside.wait(timeout=5) == -signal.SIGTERM
    assert_gone(lab_dir, doc)
    twice = vportctl("lab", "down", "--dir", str(lab_dir))
    assert twice.returncode == 0 and "nothing to do" in twice.stderr
    none = vportctl("lab", "status", "--dir", str(lab_dir), "--json")
    assert none.returncode == 1 and json.loads(none.stdout)["error"] == "no-lab"


def check_vms(doc: dict[str, Any]) -> None:
    """Namespaces, veths, MACs, IPs, lo up, IPv6 off, tx offload off on both ends."""
    assert {vm["name"] for vm in doc["vms"]} == {"vm0", "vm1", "vm2"}
    for k, vm in enumerate(doc["vms"]):
        assert vm == {
            "name": f"vm{k}", "mac": f"02:00:00:00:00:{k + 1:02x}", "ip": f"10.0.0.{k + 1}",
            "cidr": f"10.0.0.{k + 1}/24", "hypervisor": f"hv{k % 2}", "netns": f"vm{k}",
            "port": k + 1, "port_name": f"vm{k}h", "iface_id": f"vm{k}-eth0", "vm_id": vm_id(k),
            "segment": 0,
        }  # fmt: skip
        assert vm["netns"] in netns.namespaces()
        eth0 = netns.link("eth0", netns=vm["netns"])
        assert eth0 is not None
        assert eth0["address"] == vm["mac"]
        assert "UP" in eth0["flags"]
        assert netns.addresses("eth0", netns=vm["netns"]) == [vm["cidr"]]
        lo = netns.link("lo", netns=vm["netns"])
        assert lo is not None and "UP" in lo["flags"]
        ipv6 = netns.ns_exec(vm["netns"], "sysctl", "-n", "net.ipv6.conf.all.disable_ipv6")
        assert ipv6.strip() == "1"
        host = netns.link(vm["port_name"])
        assert host is not None and netns.kind(host) == "veth" and "UP" in host["flags"]
        for where, dev in ((None, vm["port_name"]), (vm["netns"], "eth0")):
            features = sh("ethtool", "-k", dev) if where is None else netns.ns_exec(
                where, "ethtool", "-k", dev
            )  # fmt: skip
            assert "tx-checksumming: off" in features, (where, dev)


def check_bridges(lab_dir: Path, doc: dict[str, Any]) -> None:
    """Secure, netdev, OpenFlow 1.3, fixed dpids, in-band off, pointed at our controller."""
    openflow = doc["controllers"][0]["openflow"]
    for i, hv in enumerate(doc["hypervisors"]):
        assert hv["name"] == hv["bridge"] == f"hv{i}"
        assert hv["dpid"] == f"{i + 1:016x}"
        b = hv["bridge"]
        assert vsctl(lab_dir, "get", "Bridge", b, "fail_mode") == "secure"
        assert vsctl(lab_dir, "get", "Bridge", b, "datapath_type") == "netdev"
        assert vsctl(lab_dir, "get", "Bridge", b, "protocols") == "[OpenFlow13]"
        assert vsctl(lab_dir, "get", "Bridge", b, "datapath_id") == f'"{i + 1:016x}"'
        assert vsctl(lab_dir, "get", "Bridge", b, "other_config:disable-in-band") == '"true"'
        assert vsctl(lab_dir, "get-controller", b) == f"tcp:{openflow}"


def check_ports(lab_dir: Path, doc: dict[str, Any]) -> None:
    """The patch link, and the VM ports with their numbers and external_ids."""
    assert doc["links"] == [
        {"a": "hv0", "a_port": 101, "a_name": "p0-1", "b": "hv1", "b_port": 100, "b_name": "p1-0"}
    ]
    for name, bridge, port, peer in (("p0-1", "hv0", 101, "p1-0"), ("p1-0", "hv1", 100, "p0-1")):
        assert vsctl(lab_dir, "port-to-br", name) == bridge
        assert vsctl(lab_dir, "get", "Interface", name, "ofport") == str(port)
        assert vsctl(lab_dir, "get", "Interface", name, "type") == "patch"
        assert vsctl(lab_dir, "get", "Interface", name, "options:peer") == peer
    for vm in doc["vms"]:
        name = vm["port_name"]
        assert vsctl(lab_dir, "port-to-br", name) == vm["hypervisor"]
        assert vsctl(lab_dir, "get", "Interface", name, "ofport") == str(vm["port"])
        assert vsctl(lab_dir, "get", "Interface", name, "type") == '""'
        ids = vsctl(lab_dir, "get", "Interface", name, "external_ids")
        for key, value in (("attached-mac", vm["mac"]), ("iface-id", vm["iface_id"]),
                           ("vm-id", vm["vm_id"])):  # fmt: skip
            assert f'{key}="{value}"' in ids or f"{key}={value}" in ids, ids


def check_status(lab_dir: Path, doc: dict[str, Any]) -> None:
    """`lab status`: the contract's fields, a config vportd accepts, a private token."""
    st = status(lab_dir)
    assert set(st) >= {"controllers", "hypervisors", "vms", "ovs", "token_file"}
    assert st["vms"] == doc["vms"] and st["hypervisors"][0]["dpid"] == "0000000000000001"
    (c0,) = st["controllers"]
    assert set(c0) >= {"id", "api", "openflow", "pid", "alive"} and c0["id"] == "c0"
    assert st["ovs"] == {
        "db": f"unix:{lab_dir}/ovs/db.sock", "rundir": f"{lab_dir}/ovs", "datapath": "netdev",
        "ovsdb_server": st["ovs"]["ovsdb_server"], "ovs_vswitchd": st["ovs"]["ovs_vswitchd"],
    }  # fmt: skip
    assert st["ovs"]["ovsdb_server"] and st["ovs"]["ovs_vswitchd"]
    config = load_config(Path(c0["config"]))
    assert config.controller.id == "c0" and config.openflow.listen == c0["openflow"]
    assert config.ovsdb.remotes == [st["ovs"]["db"]] and config.topology.lldp is False
    assert config.api.listen == c0["api"]
    check_etcd(st)
    assert config.store.kind == "etcd" and config.store.endpoints == [st["etcd"]["endpoint"]]
    tokens = [Path(st["token_file"]), Path(st["peer_token_file"])]
    assert [config.api.token_file, config.api.peer_token_file] == tokens
    for token in tokens:
        assert stat.S_IMODE(token.stat().st_mode) == 0o600 and len(token.read_text().strip()) >= 32
    assert tokens[0].read_text() != tokens[1].read_text()
    text = vportctl("lab", "status", "--dir", str(lab_dir))
    assert text.returncode == 0 and "vm2" in text.stdout and "hv1" in text.stdout
    assert f"etcd: {st['etcd']['endpoint']} (pid {st['etcd']['pid']})" in text.stdout


def check_etcd(st: dict[str, Any]) -> None:
    """The lab's etcd runs, detached, where status says, and answers on its endpoint."""
    etcd = st["etcd"]
    assert etcd["alive"] is True and procs.alive(etcd["pid"])
    assert etcd["data_dir"] == f"{st['dir']}/etcd/data" and Path(etcd["data_dir"]).is_dir()
    assert os.getsid(etcd["pid"]) == etcd["pid"]  # its own session: it outlives `lab up`
    with urllib.request.urlopen(f"http://{etcd['endpoint']}/health", timeout=5) as answer:
        assert json.load(answer)["health"] == "true"


@pytest.mark.parametrize("controller", ["killed", "left running"])
def test_down_after_a_crash(lab_dir: Path, controller: str) -> None:
    """kill -9 the daemons (OVS; the controller and etcd too, or not), delete the state
    file: `lab down` still removes everything."""
    result, doc = up(lab_dir, "--vportd", str(stand_in(lab_dir.parent)))
    assert result.returncode == 0, result.stderr
    # The stand-in never answers OpenFlow's hello, so OVS drops and retries its
    # connections: `up` saw both, a later look may not.
    assert "controller c0: all 2 bridges connected" in result.stderr
    st = status(lab_dir)
    (c0,) = st["controllers"]
    assert c0["alive"] is True
    assert st["cluster"]["leader"] == "c0" and st["hypervisors"][0]["master"] == "c0"
    check_etcd(st)
    victims = [st["ovs"]["ovsdb_server"], st["ovs"]["ovs_vswitchd"]]
    if controller == "killed":
        victims += [c0["pid"], st["etcd"]["pid"]]
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    for pid in victims:
        assert procs.wait_gone(pid, 5)
    (lab_dir / "lab.json").unlink()
    # the userspace datapath's taps outlive ovs-vswitchd
    assert {"ovs-netdev", "hv0", "hv1"} <= {e["ifname"] for e in netns.links()}

    gone = vportctl("lab", "down", "--dir", str(lab_dir))
    assert gone.returncode == 0, gone.stderr
    assert "stale tap ovs-netdev" in gone.stderr
    assert f"removed etcd data {lab_dir}/etcd" in gone.stderr
    assert_gone(lab_dir, doc)


def test_a_failed_up_leaves_nothing_behind(
    lab_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A step that fails half-way (the second VM's veth) takes down what was built."""
    real = netns.add_vm_link

    def second_fails(**kw: str) -> None:
        if kw["host"] == "vm1h":
            raise LabError("ip link add vm1h: simulated failure")
        real(**kw)

    monkeypatch.setattr(netns, "add_vm_link", second_fails)
    rc = bed.up(bed.UpOptions(dir=lab_dir, controllers=0))
    assert rc == 1
    err = capsys.readouterr().err
    assert "lab up failed: ip link add vm1h: simulated failure" in err
    assert "removing what was built" in err
    assert_gone(lab_dir, {"vms": [{"netns": f"vm{k}", "port_name": f"vm{k}h"} for k in range(3)],
                          "hypervisors": [{"bridge": "hv0"}, {"bridge": "hv1"}]})  # fmt: skip


def test_up_refuses_a_controller_that_is_not_executable(lab_dir: Path) -> None:
    result = vportctl("lab", "up", "--dir", str(lab_dir), "--vportd", "/nonexistent/vportd")
    assert result.returncode == 2
    assert "--vportd /nonexistent/vportd: not an executable file" in result.stderr
    assert not lab_dir.exists()


def test_up_refuses_a_busy_port_before_touching_anything(lab_dir: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = vportctl("lab", "up", "--dir", str(lab_dir), "--openflow-port", str(port))
    assert result.returncode == 1
    assert f"127.0.0.1:{port}" in result.stderr and "--openflow-port" in result.stderr
    assert not lab_dir.exists()
