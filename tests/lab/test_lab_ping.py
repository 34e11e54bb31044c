"""The lab with its real controllers: every pair of VMs pings through the controllers' flows.

`vportctl lab up` (2 hypervisors, 3 VMs, one `vportd` or a cluster of three on
the lab's etcd), then ping between every ordered pair of VM namespaces. The
bridges are in secure mode and hold no NORMAL action: a ping that gets
through went through the flows vportd installed (whose packet counters show
it). With three controllers, `lab status` also shows the etcd, a leader and
a master for every bridge, and `lab down` leaves nothing behind. With
`--tls` every channel is encrypted: the bridges' controller targets are
`ssl:`, the controllers read OVSDB over `ssl:`, their API is https only (plain
http gets no answer) and vportctl finds the lab's CA with its token.
"""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.lab.test_lab import assert_gone, check_etcd, status, up, vportctl
from tests.lab.test_lab import pytestmark as lab_marks

pytestmark = lab_marks  # root, ovs, skipped unless root

# vportd's cookie kinds (core/flows.py, runtime.py): VM, arrival, flood, base, LLDP
OUR_COOKIES = {0x01, 0x02, 0x03, 0x04, 0x05}


def ping(src: dict[str, Any], dst: dict[str, Any], attempts: int = 5) -> str:
    """Ping `dst` from `src`'s namespace until 3 of 3 answers come back (the first
    attempt may lose a packet to ARP); the last attempt's output."""
    out = ""
    for _ in range(attempts):
        done = subprocess.run(
            ["ip", "netns", "exec", src["netns"], "ping", "-n", "-c", "3", "-i", "0.2", "-W", "1",
             dst["ip"]],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        out = done.stdout + done.stderr
        if done.returncode == 0 and " 0% packet loss" in out:
            break
    return out


def flows(lab: Path, bridge: str) -> list[str]:
    mgmt = f"unix:{lab}/ovs/{bridge}.mgmt"
    text = subprocess.run(
        ["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", mgmt],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    return [line.strip() for line in text.splitlines() if "cookie=" in line]


def cookie_kind(line: str) -> int:
    cookie = line.partition("cookie=")[2].partition(",")[0]
    return int(cookie, 16) >> 56


@pytest.mark.parametrize(
    ("controllers", "tls"), [(1, False), (3, False), (3, True)], ids=["1", "3", "3-tls"]
)
def test_every_pair_of_vms_pings_through_the_controllers_flows(
    lab_dir: Path, controllers: int, tls: bool
) -> None:
    result, doc = up(lab_dir, "--controllers", str(controllers), *(["--tls"] if tls else []))
    assert result.returncode == 0, result.stderr
    check_cluster(lab_dir, controllers)
    if tls:
        check_tls(lab_dir, doc)
    vms = doc["vms"]
    assert len(vms) == 3 and {vm["hypervisor"] for vm in vms} == {"hv0", "hv1"}

    for src, dst in itertools.permutations(vms, 2):
        out = ping(src, dst)
        assert " 0% packet loss" in out, f"{src['name']} -> {dst['name']}:\n{out}"

    for hv in doc["hypervisors"]:
        bridge = hv["bridge"]
        mode = subprocess.run(
            ["ovs-vsctl", f"--db=unix:{lab_dir}/ovs/db.sock", "get-fail-mode", bridge],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.strip()  # fmt: skip
        assert mode == "secure"
        lines = flows(lab_dir, bridge)
        assert lines
        assert not any("NORMAL" in line.upper() for line in lines), lines
        assert {cookie_kind(line) for line in lines} <= OUR_COOKIES, lines
    # Each VM's own flow, on its hypervisor, delivered the pings to it.
    for vm in vms:
        mine = [
            line for line in flows(lab_dir, vm["hypervisor"])
            if f"dl_dst={vm['mac']} " in line and f"actions=output:{vm['port']}" in line
        ]  # fmt: skip
        assert len(mine) == 1, mine
        assert "n_packets=0," not in mine[0], mine[0]

    gone = vportctl("lab", "down", "--dir", str(lab_dir))
    assert gone.returncode == 0, gone.stderr
    assert_gone(lab_dir, doc)


def log_tail(path: str, lines: int = 25) -> str:
    return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])


def check_cluster(lab_dir: Path, controllers: int) -> None:
    """Every controller runs with every bridge connected; the etcd runs; `lab status` shows
    a running leader and a running master for every hypervisor (the cluster's choice)."""
    st = status(lab_dir)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if all(c["alive"] and c["connections"] == 2 for c in st["controllers"]):
            break
        time.sleep(0.2)
        st = status(lab_dir)
    assert [c["id"] for c in st["controllers"]] == [f"c{n}" for n in range(controllers)]
    for c in st["controllers"]:
        assert c["alive"] and c["pid"] and c["connections"] == 2, (c, log_tail(c["log"]))
    check_etcd(st)
    ids = {c["id"] for c in st["controllers"]}
    assert st["cluster"]["error"] is None and st["cluster"]["leader"] in ids, st["cluster"]
    for hv in st["hypervisors"]:
        assert hv["master"] in ids, hv
        assert st["cluster"]["masters"][hv["bridge"]] == hv["master"]


def check_tls(lab_dir: Path, doc: dict[str, Any]) -> None:
    """Every channel of a lab up with --tls is encrypted (module docstring)."""
    ca = lab_dir / "tls" / "ca.pem"
    assert doc["tls"]["ca"] == str(ca) and ca.is_file()
    assert all(c["api"].startswith("https://127.0.0.1:") for c in doc["controllers"])
    targets = vsctl_lines(lab_dir, "--columns=target", "list", "Controller")
    assert targets and all('"ssl:127.0.0.1:' in line for line in targets), targets
    for c in doc["controllers"]:
        config = Path(c["config"]).read_text()
        assert f'remotes = ["{doc["tls"]["ovsdb"]}"]' in config and "[tls]" in config
        host, _, port = c["api"].removeprefix("https://").rpartition(":")
        assert plain_http(host, int(port)) == b""  # closed unanswered, no HTTP at all
    # vportctl finds the lab's CA as it finds its token
    st = vportctl("--lab", str(lab_dir), "--json", "status")
    assert st.returncode == 0, st.stderr
    assert {m["api"] for m in json.loads(st.stdout)["cluster"]["members"]} == {
        c["api"] for c in doc["controllers"]
    }


def vsctl_lines(lab_dir: Path, *args: str) -> list[str]:
    text = subprocess.run(
        ["ovs-vsctl", f"--db=unix:{lab_dir}/ovs/db.sock", *args],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    return [line for line in text.splitlines() if line.strip()]


def plain_http(host: str, port: int) -> bytes:
    """What a TLS API answers a plain http request: b"" (at most a TLS alert, no HTTP)."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        said = b""
        while chunk := sock.recv(4096):
            said += chunk
    return b"" if b"HTTP/" not in said else said
