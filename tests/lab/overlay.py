"""Helpers of the overlay lab's behaviour tests: one lab per module, the controllers' API
from inside any namespace, etcd's records, a host's flows, a VM's frames.

The controllers are asked from inside their own namespace (`ip netns exec`), so a
controller cut off from the management network still answers the test. etcd is
read through its JSON gateway from the root namespace's leg of the management
network.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.test_lab import vportctl
from vportd.cluster.codec import decode_record
from vportd_lab.bed import netns
from vportd_lab.bed.plan import OVERLAY_NAMESPACE

Doc = dict[str, Any]
PREFIX = "/vportd/"  # the controllers' default key prefix in etcd
# The fields of a vPort entry that the API shows and etcd's record holds alike.
ENTRY = ("vm", "ovs", "port", "port_name", "migration_state", "port_state", "seq", "segment")


@contextlib.contextmanager
def overlay_lab(*layout: str) -> Iterator[Doc]:
    """An overlay lab of `layout`, up until the block ends (`lab up --json`'s document)."""
    taken = [n for n in netns.namespaces() if OVERLAY_NAMESPACE.match(n)]
    if taken:
        pytest.skip(f"namespaces of another overlay lab exist ({', '.join(taken)})")
    base = Path(tempfile.mkdtemp(prefix="ov-", dir="/tmp"))  # short: unix sockets below
    lab = base / "lab"
    try:
        done = vportctl("lab", "up", "--dir", str(lab), "--fabric", "overlay", "--json", *layout)
        assert done.returncode == 0, done.stderr
        doc: Doc = json.loads(done.stdout)
        yield doc
    finally:
        vportctl("lab", "down", "--dir", str(lab))
        shutil.rmtree(base, ignore_errors=True)


def in_ns(ns: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *args], capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip


def sh(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=True).stdout


def wait_for(condition: Callable[[], object], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)
    return True


# -- the controllers' API, from inside their namespaces ------------------------------------
# A stdlib client run by the venv's Python in the controller's namespace: prints the
# status and the body, 0 for no answer (refused, timed out).
CLIENT = """\
import sys, urllib.error, urllib.request
method, url, token, body = sys.argv[1:5]
req = urllib.request.Request(url, data=body.encode() or None, method=method,
                             headers={"Authorization": f"Bearer {token}",
                                      "Content-Type": "application/json"})
try:
    with urllib.request.urlopen(req, timeout=float(sys.argv[5])) as answer:
        print(answer.status); print(answer.read().decode())
except urllib.error.HTTPError as err:
    print(err.code); print(err.read().decode())
except OSError as err:
    print(0); print(err)
"""


def request(
    doc: Doc, c: int, method: str, path: str, body: object = None, *, timeout: float = 10
) -> tuple[int, Any]:
    """(status, JSON body or text) of controller c's answer; status 0: no answer."""
    ctrl = doc["controllers"][c]
    token = Path(doc["token_file"]).read_text().strip()
    url = f"http://{ctrl['api']}{path}"
    data = "" if body is None else json.dumps(body)
    done = in_ns(ctrl["netns"], sys.executable, "-c", CLIENT, method, url, token, data,
                 str(timeout), timeout=timeout + 10)  # fmt: skip
    status, _, text = done.stdout.partition("\n")
    assert status, done.stderr
    try:
        return int(status), json.loads(text)
    except json.JSONDecodeError:
        return int(status), text.strip()


def get(doc: Doc, c: int, path: str) -> Any:
    status, body = request(doc, c, "GET", path)
    assert status == 200, (c, path, status, body)
    return body


def metric(doc: Doc, c: int, name: str) -> float:
    """The sum of a metric's samples on controller c's /metrics."""
    status, text = request(doc, c, "GET", "/metrics")
    assert status == 200, text
    return sum(float(line.rsplit(" ", 1)[1]) for line in str(text).splitlines()
               if line.startswith((name + "{", name + " ")))  # fmt: skip


def entries(vports: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted(tuple(v[f] for f in ENTRY) for v in vports)


# -- etcd -----------------------------------------------------------------------------------
def etcd_range(doc: Doc, sub: str) -> dict[str, bytes]:
    """The keys under PREFIX+sub (relative to PREFIX) and their values."""
    return {key: value for key, (value, _) in etcd_read(doc, sub)[0].items()}


def etcd_read(doc: Doc, sub: str) -> tuple[dict[str, tuple[bytes, int]], int]:
    """The keys under PREFIX+sub (relative to PREFIX) with their values and mod revisions,
    and etcd's revision, through etcd's JSON gateway."""
    key = (PREFIX + sub).encode()
    end = key[:-1] + bytes([key[-1] + 1])
    body = {"key": base64.b64encode(key).decode(), "range_end": base64.b64encode(end).decode()}
    url = f"http://{doc['etcd']['endpoint']}/v3/kv/range"
    with urllib.request.urlopen(url, json.dumps(body).encode(), timeout=5) as answer:
        reply = json.load(answer)
    kvs = {base64.b64decode(kv["key"]).decode()[len(PREFIX) :]:
           (base64.b64decode(kv["value"]), int(kv["mod_revision"]))
           for kv in reply.get("kvs", [])}  # fmt: skip
    return kvs, int(reply["header"]["revision"])


def etcd_entries(doc: Doc) -> list[tuple[Any, ...]]:
    """The vPort records of etcd, as ENTRY tuples."""
    out = []
    for value in etcd_range(doc, "vports/").values():
        rec = decode_record(value)
        loc = rec.loc
        out.append((rec.vm, loc.ovs, loc.port, loc.port_name, rec.migration_state.value,
                    rec.port_state.value, rec.seq, loc.segment))  # fmt: skip
    return sorted(out)


def etcd_masters(doc: Doc) -> dict[str, str]:
    return {k.removeprefix("masters/"): json.loads(v)["id"]
            for k, v in etcd_range(doc, "masters/").items()}  # fmt: skip


# -- the hosts ------------------------------------------------------------------------------
def vsctl(hv: Doc, *args: str) -> str:
    return sh("ovs-vsctl", f"--db={hv['db']}", *args).strip()


def flows(hv: Doc) -> list[str]:
    """br-int's flows, without counters."""
    mgmt = f"unix:{hv['rundir']}/br-int.mgmt"
    out = sh("ovs-ofctl", "-O", "OpenFlow13", "--no-stats", "dump-flows", mgmt)
    return [line.strip() for line in out.splitlines() if "actions=" in line]


def ovs_roles(hv: Doc) -> dict[str, str]:
    """br-int's controller targets and the role OVS gives each ("" if disconnected)."""
    out = vsctl(hv, "--format=json", "--columns=target,role", "list", "Controller")
    rows = json.loads(out)["data"]
    return {target: role if isinstance(role, str) else "" for target, role in rows}


# -- frames in a VM ---------------------------------------------------------------------------
# Counts the frames received on eth0 that contain a marker, for a while; "ready" once bound.
CAPTURE = """\
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(("eth0", 0))
s.settimeout(0.05)
marker, end = bytes.fromhex(sys.argv[1]), time.monotonic() + float(sys.argv[2])
print("ready", flush=True)
seen = 0
while time.monotonic() < end:
    try:
        frame, addr = s.recvfrom(65535)
    except TimeoutError:
        continue
    if addr[2] != socket.PACKET_OUTGOING and marker in frame:
        seen += 1
print(seen, flush=True)
"""

# Sends a frame (hex) out of eth0 a few times.
SEND = """\
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
for _ in range(int(sys.argv[2])):
    s.send(bytes.fromhex(sys.argv[1]))
    time.sleep(0.05)
"""


def _popen(ns: str, argv: list[str], stdout: int) -> subprocess.Popen[str]:
    return subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=stdout, text=True)


def popen_in(ns: str, *argv: str) -> subprocess.Popen[str]:
    """`argv` started in namespace `ns`, its output discarded."""
    return _popen(ns, list(argv), subprocess.DEVNULL)


def arp_request(src: Doc, dst_mac: str, target_ip: str) -> tuple[bytes, bytes]:
    """An ARP request from VM `src` for `target_ip`, to `dst_mac`: (frame, a marker in it)."""
    mac = bytes.fromhex(src["mac"].replace(":", ""))
    body = (bytes.fromhex("0001080006040001") + mac + _ip(src["ip"]) + bytes(6)
            + _ip(target_ip))  # fmt: skip
    frame = bytes.fromhex(dst_mac.replace(":", "")) + mac + bytes.fromhex("0806") + body
    return frame, body[8:]


def _ip(addr: str) -> bytes:
    return bytes(int(part) for part in addr.split("."))


def who_sees(sender: Doc, frame: bytes, marker: bytes, listeners: list[Doc]) -> dict[str, int]:
    """Send `frame` from `sender` while the listeners capture: frames with `marker` each saw."""
    capture = [sys.executable, "-c", CAPTURE, marker.hex(), "2.5"]
    procs = {vm["name"]: _popen(vm["netns"], capture, subprocess.PIPE) for vm in listeners}
    seen = {}
    try:
        for proc in procs.values():
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        done = in_ns(sender["netns"], sys.executable, "-c", SEND, frame.hex(), "3")
        assert done.returncode == 0, done.stderr
        for name, proc in procs.items():
            out, _ = proc.communicate(timeout=15)
            seen[name] = int(out.strip())
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return seen
