"""The libvirt qemu hook (`contrib/libvirt/qemu`) run as libvirt runs it.

Each test executes the hook file itself (its shebang) with libvirt's
arguments (`GUEST OPERATION SUB-OPERATION EXTRA`), the domain XML on stdin and
an environment as bare as libvirt's, with a fake `vportctl` first on PATH: a
small script that appends its argv to a log and answers from canned rules
(command, first argument) -> (exit code, JSON on stdout, text on stderr), as
the real one does with `--json`. The checks: which vportctl calls, in which
order, with which MAC, source and destination; the hook's exit status,
stdout (empty: for `migrate` it is an XML filter) and stderr; the state file.
One test runs the real `vportctl` against the REST stub of `test_client.py`, over http and
over https (the hook's `ca` passed on as `--ca`).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.pki import Certs
from tests.test_client import TOKEN, StubCluster, _handler
from tests.test_client import VM0 as STUB_VM0

HOOK = Path(__file__).resolve().parents[1] / "contrib" / "libvirt" / "qemu"
GUEST = "web-1"
MAC0, MAC1, MAC_OTHER = "52:54:00:6b:3c:01", "52:54:00:6b:3c:02", "52:54:00:aa:bb:cc"
Json = dict[str, Any]

FAKE_VPORTCTL = """#!{python}
import json, os, sys
argv = sys.argv[1:]
with open(os.environ["FAKE_VPORTCTL_LOG"], "a") as log:
    log.write(json.dumps(argv) + "\\n")
rest, i = [], 0
while i < len(argv):
    if argv[i] in ("--api", "--token-file", "--ca", "--timeout", "--lab"):
        i += 2
        continue
    if argv[i] != "--json":
        rest.append(argv[i])
    i += 1
with open(os.environ["FAKE_VPORTCTL_RULES"]) as f:
    rules = json.load(f)
for rule in rules:
    if rule["cmd"] == rest[0] and rule.get("arg") in (None, rest[1] if len(rest) > 1 else None):
        if "stdout" in rule:
            print(json.dumps(rule["stdout"], indent=2))
        sys.stderr.write(rule.get("stderr", ""))
        sys.exit(rule.get("exit", 0))
sys.stderr.write("fake vportctl: no canned answer for %r\\n" % (rest,))
sys.exit(2)
"""


def interface_ovs(mac: str, bridge: str = "br-int", dev: str = "vnet0") -> str:
    return f"""
    <interface type='bridge'>
      <mac address='{mac}'/>
      <source bridge='{bridge}'/>
      <virtualport type='openvswitch'>
        <parameters interfaceid='0c6a1f0e-2d5c-4a57-9b0e-1b1c2d3e4f50'/>
      </virtualport>
      <target dev='{dev}'/>
      <model type='virtio'/>
      <alias name='net0'/>
      <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
    </interface>"""


INTERFACE_LINUX_BRIDGE = f"""
    <interface type='network'>
      <mac address='{MAC_OTHER}'/>
      <source network='default' bridge='virbr0'/>
      <target dev='vnet9'/>
      <model type='virtio'/>
    </interface>"""


def domain_xml(*interfaces: str) -> str:
    """A domain as libvirt hands it to the hook (trimmed, but the real shape)."""
    return f"""<domain type='kvm' id='7'>
  <name>{GUEST}</name>
  <uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid>
  <memory unit='KiB'>2097152</memory>
  <vcpu placement='static'>2</vcpu>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/web-1.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>{"".join(interfaces)}
    <console type='pty'/>
  </devices>
</domain>
"""


ONE_NIC = domain_xml(interface_ovs(MAC0), INTERFACE_LINUX_BRIDGE)
TWO_NICS = domain_xml(interface_ovs(MAC0), INTERFACE_LINUX_BRIDGE, interface_ovs(MAC1, dev="vnet1"))
NO_OVS = domain_xml(INTERFACE_LINUX_BRIDGE)


def vport(mac: str, ovs: str = "hv1") -> Json:
    return {
        "vm": mac, "ips": [], "ovs": ovs, "dpid": "0000000000000002", "port": 5,
        "port_name": "vnet0", "migration_state": "not-migrating", "port_state": "up",
        "seq": 3, "destination": None,
    }  # fmt: skip


def migration(mid: str, mac: str, state: str = "ready", dst: str = "hv2") -> Json:
    return {"id": mid, "vm": mac, "source": "hv1", "destination": dst, "state": state, "seq": 4}


def error(status: int | None, code: str, detail: str) -> Json:
    return {"error": code, "detail": detail, "status": status}


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


class Bed:
    """A hypervisor as the hook sees it: PATH with the fake vportctl, hook.conf, state dir."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir()
        fake = self.bin / "vportctl"
        fake.write_text(FAKE_VPORTCTL.format(python=sys.executable))
        fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
        self.log = root / "vportctl.log"
        self.rules_file = root / "rules.json"
        self.conf = root / "hook.conf"
        self.state_dir = root / "run" / "vportd-hook"
        self.configure("destination = hv2", "syslog = no")
        self.answer()

    def configure(self, *lines: str) -> None:
        self.conf.write_text("# written by the test\n" + "\n".join(lines) + "\n")

    def answer(self, *rules: Json) -> None:
        self.rules_file.write_text(json.dumps(list(rules)))

    def hook(self, operation: str, sub: str, extra: str = "-", stdin: str = "") -> Run:
        env = {
            # as bare as libvirt's: PATH (ours first), and what the test needs
            "PATH": f"{self.bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LC_ALL": "C",
            "VPORTD_HOOK_CONF": str(self.conf),
            "VPORTD_HOOK_STATE_DIR": str(self.state_dir),
            "FAKE_VPORTCTL_LOG": str(self.log),
            "FAKE_VPORTCTL_RULES": str(self.rules_file),
        }
        done = subprocess.run(
            [str(HOOK), GUEST, operation, sub, extra], input=stdin, capture_output=True,
            text=True, env=env, timeout=60, check=False,
        )  # fmt: skip
        return Run(done.returncode, done.stdout, done.stderr)

    def calls(self) -> list[list[str]]:
        """Each vportctl call's arguments after the global options (--json, --api, ...)."""
        return [_command(c) for c in self.raw_calls()]

    def raw_calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def forget_calls(self) -> None:
        self.log.unlink(missing_ok=True)

    def state(self) -> Json | None:
        path = self.state_dir / f"{GUEST}.json"
        return json.loads(path.read_text()) if path.exists() else None


def _command(argv: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(argv):
        if argv[i] in ("--api", "--token-file", "--ca", "--timeout"):
            i += 2
            continue
        if argv[i] != "--json":
            out.append(argv[i])
        i += 1
    return out


@pytest.fixture
def bed(tmp_path: Path) -> Bed:
    return Bed(tmp_path)


def notify_ok(*macs: str) -> list[Json]:
    rules: list[Json] = []
    for n, mac in enumerate(macs, 1):
        rules.append({"cmd": "vport", "arg": mac, "stdout": vport(mac)})
        rules.append(
            {"cmd": "migrate", "arg": mac, "stdout": {**migration(f"m-{n}", mac), "created": True}}
        )
    return rules


# -- the installed file --------------------------------------------------------


def test_the_hook_is_an_executable_python3_script() -> None:
    assert HOOK.stat().st_mode & stat.S_IXUSR
    assert HOOK.read_text().startswith("#!/usr/bin/env python3\n")


# -- migrate begin: the notify ---------------------------------------------------


def test_one_ovs_vnic_is_notified_and_the_linux_bridge_vnic_ignored(bed: Bed) -> None:
    bed.answer(*notify_ok(MAC0))
    run = bed.hook("migrate", "begin", stdin=ONE_NIC)
    assert run.code == 0, run.stderr
    assert run.stdout == ""  # an XML filter: empty output keeps the domain XML as it is
    assert bed.calls() == [
        ["vport", MAC0],
        ["migrate", MAC0, "--from", "hv1", "--to", "hv2"],
    ]
    assert bed.raw_calls()[0][0] == "--json"
    assert bed.state() == {
        "domain": GUEST,
        "migrations": [{"id": "m-1", "vm": MAC0, "source": "hv1", "destination": "hv2"}],
    }


def test_two_ovs_vnics_are_notified_one_after_the_other(bed: Bed) -> None:
    bed.answer(*notify_ok(MAC0, MAC1))
    run = bed.hook("migrate", "begin", stdin=TWO_NICS)
    assert run.code == 0, run.stderr
    assert run.stdout == ""
    assert bed.calls() == [
        ["vport", MAC0],
        ["migrate", MAC0, "--from", "hv1", "--to", "hv2"],
        ["vport", MAC1],
        ["migrate", MAC1, "--from", "hv1", "--to", "hv2"],
    ]
    state = bed.state()
    assert state is not None
    assert [m["id"] for m in state["migrations"]] == ["m-1", "m-2"]


def test_a_domain_without_ovs_vnics_calls_nothing(bed: Bed) -> None:
    run = bed.hook("migrate", "begin", stdin=NO_OVS)
    assert (run.code, run.stdout, run.stderr) == (0, "", "")
    assert bed.calls() == []
    assert bed.state() is None


def test_the_destination_defaults_to_the_vnic_bridge(bed: Bed) -> None:
    bed.configure("syslog = no")
    bed.answer(*notify_ok(MAC0))
    xml = domain_xml(interface_ovs(MAC0, bridge="hv2"))
    assert bed.hook("migrate", "begin", stdin=xml).code == 0
    assert bed.calls()[1] == ["migrate", MAC0, "--from", "hv1", "--to", "hv2"]


def test_the_configuration_reaches_vportctl(bed: Bed) -> None:
    bed.configure(
        "destination = hv2   # this hypervisor",
        "api = http://c0:8080,http://c1:8080",
        "token_file = /etc/vportd/api.token",
        "ca = /etc/vportd/ca.pem",
        "timeout = 4",
        "wait = 30",
        "syslog = no",
    )
    bed.answer(*notify_ok(MAC0))
    assert bed.hook("migrate", "begin", stdin=ONE_NIC).code == 0
    options = ["--json", "--api", "http://c0:8080,http://c1:8080"]
    options += ["--token-file", "/etc/vportd/api.token", "--ca", "/etc/vportd/ca.pem"]
    options += ["--timeout", "4"]
    assert bed.raw_calls() == [
        [*options, "vport", MAC0],
        [*options, "migrate", MAC0, "--from", "hv1", "--to", "hv2", "--wait", "30"],
    ]


def test_bridges_limits_which_vnics_count(bed: Bed) -> None:
    bed.configure("destination = hv2", "bridges = br-int", "syslog = no")
    bed.answer(*notify_ok(MAC0, MAC1))
    xml = domain_xml(interface_ovs(MAC0), interface_ovs(MAC1, bridge="br-ex", dev="vnet1"))
    assert bed.hook("migrate", "begin", stdin=xml).code == 0
    assert [c[1] for c in bed.calls()] == [MAC0, MAC0]


def test_a_vm_already_on_the_destination_is_not_notified(bed: Bed) -> None:
    bed.answer({"cmd": "vport", "arg": MAC0, "stdout": vport(MAC0, ovs="hv2")})
    assert bed.hook("migrate", "begin", stdin=ONE_NIC).code == 0
    assert bed.calls() == [["vport", MAC0]]
    assert bed.state() is None


def test_a_vm_unknown_to_the_cluster_is_skipped_or_refused(bed: Bed) -> None:
    unknown = {
        "cmd": "vport", "arg": MAC0, "exit": 1,
        "stdout": error(404, "not-found", f"no vPort for {MAC0}"),
        "stderr": f"vportctl: no vPort for {MAC0}\n",
    }  # fmt: skip
    bed.answer(unknown)
    assert bed.hook("migrate", "begin", stdin=ONE_NIC).code == 0
    assert bed.calls() == [["vport", MAC0]]

    bed.configure("destination = hv2", "on_unknown_vm = refuse", "syslog = no")
    run = bed.hook("migrate", "begin", stdin=ONE_NIC)
    assert run.code != 0
    assert f"no vPort for {MAC0}" in run.stderr


# -- migrate begin: failures refuse the migration -------------------------------------


@pytest.mark.parametrize(
    ("exit_code", "status", "detail", "meaning"),
    [
        (1, 409, f"VM {MAC0} is already migrating to hv3", "refused by the cluster"),
        (3, 503, "no leader (gave up after 9 attempts in 10 s)", "cluster unavailable (retryable"),
        (4, 403, "wrong token", "authentication failed (check token_file"),
    ],
)
def test_a_failed_notify_refuses_the_migration_with_a_clear_message(
    bed: Bed, exit_code: int, status: int, detail: str, meaning: str
) -> None:
    bed.answer(
        {"cmd": "vport", "arg": MAC0, "stdout": vport(MAC0)},
        {
            "cmd": "migrate", "arg": MAC0, "exit": exit_code,
            "stdout": error(status, "x", detail), "stderr": f"vportctl: {detail}\n",
        },
    )  # fmt: skip
    run = bed.hook("migrate", "begin", stdin=ONE_NIC)
    assert run.code != 0
    assert run.stdout == ""
    assert run.stderr.startswith(f"vportd-hook: refusing the incoming migration of {GUEST}: ")
    assert f"vportctl migrate {MAC0} --from hv1 --to hv2` exited {exit_code}" in run.stderr
    assert meaning in run.stderr
    assert detail in run.stderr
    assert bed.state() is None


def test_a_failed_lookup_refuses_the_migration(bed: Bed) -> None:
    bed.answer({"cmd": "vport", "arg": MAC0, "exit": 3, "stderr": "vportctl: cannot connect\n"})
    run = bed.hook("migrate", "begin", stdin=ONE_NIC)
    assert run.code != 0
    assert f"`vportctl vport {MAC0}` exited 3, cluster unavailable" in run.stderr
    assert "cannot connect" in run.stderr
    assert bed.calls() == [["vport", MAC0]]


def test_the_second_vnic_refused_aborts_the_first_notify(bed: Bed) -> None:
    bed.answer(
        *notify_ok(MAC0)[:2],
        {"cmd": "vport", "arg": MAC1, "stdout": vport(MAC1)},
        {
            "cmd": "migrate", "arg": MAC1, "exit": 1,
            "stdout": error(409, "conflict", f"VM {MAC1} is not on hv1"),
        },
        {"cmd": "abort", "arg": "m-1", "stdout": migration("m-1", MAC0, "aborted")},
    )  # fmt: skip
    run = bed.hook("migrate", "begin", stdin=TWO_NICS)
    assert run.code != 0
    assert bed.calls() == [
        ["vport", MAC0],
        ["migrate", MAC0, "--from", "hv1", "--to", "hv2"],
        ["vport", MAC1],
        ["migrate", MAC1, "--from", "hv1", "--to", "hv2"],
        ["abort", "m-1"],
    ]
    assert f"VM {MAC1} is not on hv1" in run.stderr
    assert "aborted 1 notify(s) already made" in run.stderr
    assert bed.state() is None


def test_vportctl_missing_refuses_the_migration(bed: Bed) -> None:
    bed.configure("destination = hv2", f"vportctl = {bed.root}/nowhere/vportctl", "syslog = no")
    run = bed.hook("migrate", "begin", stdin=ONE_NIC)
    assert run.code != 0
    assert "vportctl could not be run" in run.stderr


def test_a_bad_configuration_refuses_the_migration(bed: Bed) -> None:
    bed.configure("destination = hv2", "wiat = 10")
    run = bed.hook("migrate", "begin", stdin=ONE_NIC)
    assert run.code != 0
    assert "wiat: unknown key" in run.stderr
    assert bed.calls() == []


def test_unparsable_xml_refuses_the_migration(bed: Bed) -> None:
    run = bed.hook("migrate", "begin", stdin="<domain><devices>")
    assert run.code != 0
    assert "does not parse" in run.stderr


# -- stopped / release: abort what never ran here -------------------------------------


def test_a_failed_incoming_migration_is_aborted_once(bed: Bed) -> None:
    bed.answer(*notify_ok(MAC0))
    assert bed.hook("migrate", "begin", stdin=ONE_NIC).code == 0
    bed.forget_calls()
    bed.answer(
        {"cmd": "migrations", "arg": "m-1", "stdout": migration("m-1", MAC0, "ready")},
        {"cmd": "abort", "arg": "m-1", "stdout": migration("m-1", MAC0, "aborted")},
    )
    # libvirt kills the incoming QEMU: stopped, then release (reason since libvirt 10.5)
    assert bed.hook("stopped", "end", "-", stdin=ONE_NIC).code == 0
    assert bed.hook("release", "end", "failed", stdin=ONE_NIC).code == 0
    assert bed.hook("release", "end", "failed", stdin=ONE_NIC).code == 0
    assert bed.calls() == [["migrations", "m-1"], ["abort", "m-1"]]
    assert bed.state() is None


def test_both_migrations_of_two_vnics_are_aborted(bed: Bed) -> None:
    bed.answer(*notify_ok(MAC0, MAC1))
    assert bed.hook("migrate", "begin", stdin=TWO_NICS).code == 0
    bed.forget_calls()
    bed.answer(
        {"cmd": "migrations", "arg": "m-1", "stdout": migration("m-1", MAC0, "preparing")},
        {"cmd": "migrations", "arg": "m-2", "stdout": migration("m-2", MAC1, "ready")},
        {"cmd": "abort", "stdout": migration("m-x", MAC0, "aborted")},
    )
    assert bed.hook("release", "end", "-", stdin=TWO_NICS).code == 0
    assert bed.calls() == [
        ["migrations", "m-1"], ["abort", "m-1"], ["migrations", "m-2"], ["abort", "m-2"],
    ]  # fmt: skip


@pytest.mark.parametrize("state", ["activated", "completed", "aborted", "failed"])
def test_a_migration_that_moved_on_is_forgotten_not_aborted(bed: Bed, state: str) -> None:
    bed.answer(*notify_ok(MAC0))
    assert bed.hook("migrate", "begin", stdin=ONE_NIC).code == 0
    bed.forget_calls()
    bed.answer({"cmd": "migrations", "arg": "m-1", "stdout": migration("m-1", MAC0, state)})
    # e.g. the VM came in, ran, and is shut down normally later
    assert bed.hook("stopped", "end", "-", stdin=ONE_NIC).code == 0
    assert bed.hook("release", "end", "shutdown", stdin=ONE_NIC).code == 0
    assert bed.calls() == [["migrations", "m-1"]]
    assert bed.state() is None


def test_a_migration_the_cluster_forgot_is_forgotten(bed: Bed) -> None:
    bed.answer(*notify_ok(MAC0))
    assert bed.hook("migrate", "begin", stdin=ONE_NIC).code == 0
    bed.forget_calls()
    bed.answer(
        {"cmd": "migrations", "arg": "m-1", "exit": 1, "stdout": error(404, "not-found", "m-1")}
    )
    assert bed.hook("release", "end", "-", stdin=ONE_NIC).code == 0
    assert bed.calls() == [["migrations", "m-1"]]
    assert bed.state() is None


def test_an_abort_refused_because_the_migration_moved_on_settles_it(bed: Bed) -> None:
    bed.answer(*notify_ok(MAC0))
    assert bed.hook("migrate", "begin", stdin=ONE_NIC).code == 0
    bed.answer(
        {"cmd": "migrations", "arg": "m-1", "stdout": migration("m-1", MAC0, "ready")},
        {"cmd": "abort", "arg": "m-1", "exit": 1, "stdout": error(409, "conflict", "activated")},
    )
    assert bed.hook("release", "end", "-", stdin=ONE_NIC).code == 0
    assert bed.state() is None


def test_an_unavailable_cluster_at_release_keeps_the_state_for_the_next_call(bed: Bed) -> None:
    bed.answer(*notify_ok(MAC0))
    assert bed.hook("migrate", "begin", stdin=ONE_NIC).code == 0
    bed.forget_calls()
    bed.answer(
        {"cmd": "migrations", "arg": "m-1", "exit": 3, "stderr": "vportctl: 503 no leader\n"}
    )
    run = bed.hook("stopped", "end", "-", stdin=ONE_NIC)
    assert run.code != 0  # libvirt logs stderr; the stop itself cannot be undone
    assert "exited 3, cluster unavailable" in run.stderr
    assert "m-1" in run.stderr
    assert bed.state() is not None

    bed.answer(
        {"cmd": "migrations", "arg": "m-1", "stdout": migration("m-1", MAC0, "ready")},
        {"cmd": "abort", "arg": "m-1", "stdout": migration("m-1", MAC0, "aborted")},
    )
    assert bed.hook("release", "end", "failed", stdin=ONE_NIC).code == 0
    assert bed.calls() == [["migrations", "m-1"], ["migrations", "m-1"], ["abort", "m-1"]]
    assert bed.state() is None


def test_a_new_incoming_migration_first_aborts_a_stale_one(bed: Bed) -> None:
    bed.answer(*notify_ok(MAC0))
    assert bed.hook("migrate", "begin", stdin=ONE_NIC).code == 0
    bed.forget_calls()
    # libvirt never called release for the failed attempt; a new attempt begins
    bed.answer(
        {"cmd": "migrations", "arg": "m-1", "stdout": migration("m-1", MAC0, "ready")},
        {"cmd": "abort", "arg": "m-1", "stdout": migration("m-1", MAC0, "aborted")},
        {"cmd": "vport", "arg": MAC0, "stdout": vport(MAC0)},
        {"cmd": "migrate", "arg": MAC0, "stdout": {**migration("m-7", MAC0), "created": True}},
    )
    assert bed.hook("migrate", "begin", stdin=ONE_NIC).code == 0
    assert bed.calls() == [
        ["migrations", "m-1"],
        ["abort", "m-1"],
        ["vport", MAC0],
        ["migrate", MAC0, "--from", "hv1", "--to", "hv2"],
    ]
    state = bed.state()
    assert state is not None
    assert [m["id"] for m in state["migrations"]] == ["m-7"]


# -- everything else: nothing ------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "sub", "extra"),
    [
        ("prepare", "begin", "-"),
        ("start", "begin", "-"),
        ("started", "begin", "-"),
        ("stopped", "end", "-"),
        ("release", "end", "shutdown"),
        ("release", "end", "migrated"),
        ("restore", "begin", "-"),
        ("reconnect", "begin", "-"),
        ("attach", "begin", "-"),
    ],
)
def test_unrelated_operations_call_nothing(bed: Bed, operation: str, sub: str, extra: str) -> None:
    run = bed.hook(operation, sub, extra, stdin=TWO_NICS)
    assert (run.code, run.stdout, run.stderr) == (0, "", "")
    assert bed.calls() == []
    assert not (bed.state_dir / f"{GUEST}.json").exists()


def test_unrelated_operations_ignore_a_broken_configuration(bed: Bed) -> None:
    bed.configure("this is not a configuration")
    assert bed.hook("start", "begin", stdin=ONE_NIC).code == 0
    assert bed.hook("migrate", "begin", stdin=ONE_NIC).code != 0


def test_the_state_dir_is_private(bed: Bed) -> None:
    bed.answer(*notify_ok(MAC0))
    assert bed.hook("migrate", "begin", stdin=ONE_NIC).code == 0
    assert stat.S_IMODE(os.stat(bed.state_dir).st_mode) == 0o700


# -- with the real vportctl against a stub of the REST API ----------------------------


@pytest.fixture(params=["http", "https"])
def stub(request: pytest.FixtureRequest, certs: Certs) -> Iterator[StubCluster]:
    """The stub API, over http or over https with a certificate the cluster's CA signed."""
    cluster = StubCluster()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(cluster))
    if request.param == "https":
        httpd.socket = certs.contexts().rest.wrap_socket(httpd.socket, server_side=True)
    httpd.daemon_threads = True
    cluster.url = f"{request.param}://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield cluster
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_the_real_vportctl_notifies_and_aborts_through_the_api(
    bed: Bed, stub: StubCluster, certs: Certs
) -> None:
    """Over https too, with the hook's `ca` (the cluster's CA) passed on to vportctl."""
    vportctl = Path(sys.executable).parent / "vportctl"
    if not vportctl.exists():
        pytest.skip("vportctl is not installed next to this Python")
    token = bed.root / "api.token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    ca = [f"ca = {certs.ca.cert}"] if stub.url.startswith("https://") else []
    bed.configure(
        f"vportctl = {vportctl}", f"api = {stub.url}", f"token_file = {token}", *ca,
        "timeout = 5", "wait = 0", "destination = hv1", "syslog = no",
    )  # fmt: skip
    xml = domain_xml(interface_ovs(STUB_VM0), INTERFACE_LINUX_BRIDGE)

    run = bed.hook("migrate", "begin", stdin=xml)
    assert (run.code, run.stdout) == (0, ""), run.stderr
    assert stub.posts() == [{"vm": STUB_VM0, "source": "hv0", "destination": "hv1"}]
    assert stub.migrations["m-1"]["state"] == "ready"

    assert bed.hook("release", "end", "failed", stdin=xml).code == 0
    assert bed.hook("release", "end", "failed", stdin=xml).code == 0
    assert [(r.method, r.path) for r in stub.requests] == [
        ("GET", f"/v1/vports/{STUB_VM0}"),
        ("POST", "/v1/migrations"),
        ("GET", "/v1/migrations/m-1"),
        ("DELETE", "/v1/migrations/m-1"),
    ]
    assert stub.migrations["m-1"]["state"] == "aborted"
    assert bed.state() is None
