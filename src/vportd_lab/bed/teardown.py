"""`vportctl lab down`: remove every trace of a lab, also after a crash.

It works from the state file and, when that is missing or partial, from what
the system shows, in this order:

1. controllers: the recorded pids, and any `vportd` whose --config lies in DIR;
2. etcd: the recorded pid, and any `etcd` whose --data-dir lies in DIR; once
   it is stopped, its data and log (DIR/etcd);
3. Open vSwitch: the daemons whose pidfile lies in DIR/ovs, or on the overlay
   fabric in a host's DIR/hv{i} (by pidfile or by command line), ovs-vswitchd
   first with `exit --cleanup` so that it deletes its datapath and tap devices
   itself;
4. the VMs' veths, by recorded name or by the lab's alias mark (deleting the
   host end removes `eth0` at once, whereas a namespace's own deletion is
   asynchronous), and the userspace datapath's tap devices (`ovs-netdev`, one
   per bridge) that no process holds any more: ovs-vswitchd makes them
   persistent and leaves them behind when it dies;
   and on the overlay the root namespace's leg on the management network;
5. the VM namespaces (on the overlay also the fabric's, the hosts', etcd's and
   the controllers'), recorded or carrying the mark (told apart before step 3),
   after stopping any process still running inside;
6. DIR: only the files the lab writes there (DIR/tls's certificates and keys
   among them), then DIR itself if empty.

A resource that carries another lab's mark, or a tap that a live process
holds, is left alone and reported.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vportd_lab.bed import controllers as ctl
from vportd_lab.bed import netns, procs, store
from vportd_lab.bed.commands import LabError
from vportd_lab.bed.messages import EXIT_FAILED, EXIT_OK, say
from vportd_lab.bed.ovs import OVSError, PrivateOVS
from vportd_lab.bed.plan import (
    BRIDGE,
    DATAPATH_TAP,
    OVERLAY_NAMESPACE,
    ROOT_LEG,
    VM_HOST_IF,
    VM_NAMESPACE,
    marker,
)
from vportd_lab.bed.state import State, StateError, load

MARK_PREFIX = "vportd-lab:"

# What the lab writes in its directory: nothing else is ever removed.
LAB_FILES = ("lab.json", ".lab.json.tmp", "api.token", "peer.token")
LAB_PATTERNS = ("c[0-9]*.toml", "c[0-9]*.log")
OVS_PATTERNS = (
    "conf.db", ".conf.db.~lock~", ".conf.db.tmp*", "db.sock", "*.ctl", "*.pid", "*.log",
    "*.mgmt", "*.snoop",
)  # fmt: skip
TLS_PATTERNS = ("*.pem", "*.key", ".*.ext")  # `lab up --tls`'s CA and certificates (pki)
# The lab's own subdirectories, and what the lab writes in each.
SUBDIRS = {"ovs": OVS_PATTERNS, "tls": TLS_PATTERNS}


def leftovers(lab_dir: Path) -> list[Path]:
    """Files of a lab in `lab_dir` (a state file, configs, logs, an OVS run directory)."""
    found = [lab_dir / name for name in LAB_FILES if (lab_dir / name).exists()]
    for pattern in LAB_PATTERNS:
        found += lab_dir.glob(pattern)
    found += [lab_dir / name for name in ("ovs", "etcd", "tls") if (lab_dir / name).is_dir()]
    return found + _host_dirs(lab_dir)


def _host_dirs(lab_dir: Path) -> list[Path]:
    """The run directories of the overlay's hosts' OVS (DIR/hv{i})."""
    return [p for p in lab_dir.glob("hv*") if BRIDGE.match(p.name) and p.is_dir()]


@dataclass
class Teardown:
    dir: Path
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # always shown
    how: list[str] = field(default_factory=list)  # shown when there was something to remove
    state: State | None = None

    @property
    def mark(self) -> str:
        return marker(self.dir)

    def attempt(self, what: str, action: Callable[[], None]) -> None:
        try:
            action()
            self.done.append(what)
        except (LabError, OVSError, OSError) as err:
            self.failed.append(f"{what}: {err}")

    def run(self) -> None:
        try:
            self.state = load(self.dir / "lab.json")
            if self.state is not None:
                self.state.plan()  # the recorded options must still make a plan
        except (StateError, LabError) as err:
            self.state = None
            self.how.append(f"{err}; cleaning up by the lab's names and marks")
        if self.state is None and not self.how:
            self.how.append("no state file; cleaning up by the lab's names and marks")
        self.controllers()
        self.etcd()
        self.ovs()
        doomed = self.lab_namespaces()
        self.links()
        for name in doomed:
            self.processes_in(name)
            self.attempt(f"namespace {name}", _bind(netns.delete_namespace, name))
        self.directory()

    def controllers(self) -> None:
        matches = ctl.owned_by(self.dir)
        pids = set(procs.find(matches))
        if self.state is not None:
            pids |= {p for p in self.state.controllers.values() if procs.alive(p, matches)}
        for pid in sorted(pids):
            if procs.stop(pid, matches):
                self.done.append(f"controller pid {pid}")

    def etcd(self) -> None:
        """Stop the lab's etcd (after the controllers: they would only log its loss), then
        remove its data: only once no etcd of the lab runs on it."""
        recorded = self.state.etcd_pid if self.state is not None else None
        for pid in store.stop(self.dir, store.running(self.dir, recorded)):
            self.done.append(f"etcd pid {pid}")
        left = store.running(self.dir)
        if left:
            self.failed.append(f"etcd: still running: pids {', '.join(map(str, left))}")
            return
        workdir = self.dir / "etcd"
        try:
            if store.remove_files(workdir):
                self.done.append(f"etcd data {workdir}")
        except OSError as err:
            self.failed.append(f"etcd data {workdir}: {err}")

    def processes_in(self, namespace: str) -> None:
        """Stop what runs inside a VM namespace (a ping, a test's server...)."""
        for pid in netns.pids_in(namespace):
            argv = procs.cmdline(pid)
            if argv is not None and procs.stop(pid, _same(argv), wait=2.0):
                self.done.append(f"process {pid} in {namespace} ({' '.join(argv)[:60]})")

    def ovs(self) -> None:
        for rundir in [self.dir / "ovs", *_host_dirs(self.dir)]:
            self.ovs_in(rundir)

    def ovs_in(self, rundir: Path) -> None:
        """Stop the Open vSwitch whose run directory is `rundir` (the patch fabric's one,
        or an overlay host's: its sockets and control files work from any namespace)."""
        ovs = PrivateOVS(rundir, dummy=False)
        running = [*ovs.daemons("ovs-vswitchd"), *ovs.daemons("ovsdb-server")]
        for daemon in ("ovs-vswitchd", "ovsdb-server"):  # pidfile of a daemon not found above
            pid = ovs.running(daemon)
            if pid is not None and pid not in running:
                running.append(pid)
        if not running:
            return

        def stop() -> None:
            ovs.exit_cleanup()
            ovs.stop()
            left = [*ovs.daemons("ovs-vswitchd"), *ovs.daemons("ovsdb-server")]
            if left:
                raise LabError(f"still running: pids {', '.join(map(str, left))}")

        self.attempt(f"Open vSwitch in {ovs.rundir} (pids {', '.join(map(str, running))})", stop)

    def lab_namespaces(self) -> list[str]:
        """The namespaces of this lab: recorded, or holding an interface with its mark."""
        recorded = set(self.state.namespaces) if self.state else set()
        doomed = []
        for name in netns.namespaces():
            ours = VM_NAMESPACE.match(name) or OVERLAY_NAMESPACE.match(name)
            if not ours and name not in recorded:
                continue
            aliases = netns.namespace_alias(name)
            if self.mark in aliases or (name in recorded and not aliases - {self.mark}):
                doomed.append(name)
            elif any(a.startswith(MARK_PREFIX) for a in aliases):
                owners = ", ".join(sorted(aliases))
                self.notes.append(f"namespace {name} left alone: it belongs to {owners}")
        return doomed

    def links(self) -> None:
        recorded_ifs = set(self.state.host_ifs) if self.state else set()
        recorded_taps = {DATAPATH_TAP, *(self.state.bridges if self.state else [])}
        holders = procs.tap_holders()
        for entry in netns.links():
            name, kind = str(entry["ifname"]), netns.kind(entry)
            if kind == "veth" and (VM_HOST_IF.match(name) or name in {*recorded_ifs, ROOT_LEG}):
                if entry.get("ifalias") == self.mark:
                    self.attempt(f"veth {name}", _bind(netns.delete_link, name))
            elif kind == "tun" and (BRIDGE.match(name) or name in recorded_taps):
                if name not in holders:
                    self.attempt(f"stale tap {name}", _bind(netns.delete_link, name))
                elif name in recorded_taps:
                    owner = ", ".join(map(str, holders[name]))
                    self.notes.append(f"tap {name} left alone: pid {owner} (another OVS) holds it")

    def directory(self) -> None:
        if not self.dir.is_dir():
            return
        subdirs = {**SUBDIRS, **{p.name: OVS_PATTERNS for p in _host_dirs(self.dir)}}
        for name, patterns in subdirs.items():
            sub = self.dir / name
            if sub.is_dir():
                for pattern in patterns:
                    for path in sub.glob(pattern):
                        path.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    sub.rmdir()
        for name in LAB_FILES:
            (self.dir / name).unlink(missing_ok=True)
        for pattern in LAB_PATTERNS:
            for path in self.dir.glob(pattern):
                path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.dir.rmdir()
        if self.dir.exists():
            kept = ", ".join(sorted(p.name for p in self.dir.iterdir()))
            self.notes.append(f"{self.dir} kept: it holds files the lab did not write ({kept})")
        else:
            self.done.append(f"directory {self.dir}")


def down(lab_dir: Path, quiet: bool = False, as_json: bool = False) -> int:
    """Remove every trace of the lab in `lab_dir`; 0 unless something could not be removed."""
    work = Teardown(Path(lab_dir).absolute())
    work.run()
    if as_json:
        doc = {
            "dir": str(work.dir),
            "removed": work.done,
            "errors": work.failed,
            "notes": work.notes,
        }
        print(json.dumps(doc, indent=2))
    if not quiet:
        for note in [*(work.how if work.done or work.failed else []), *work.notes]:
            say(note)
        for what in work.done:
            say(f"removed {what}")
        for what in work.failed:
            say(f"error: could not remove {what}")
        if not work.done and not work.failed:
            say(f"nothing to do: no lab in {work.dir}")
        elif not work.failed:
            say("lab is down")
    return EXIT_FAILED if work.failed else EXIT_OK


def _bind(action: Callable[[str], None], name: str) -> Callable[[], None]:
    return lambda: action(name)


def _same(argv: procs.Cmdline) -> procs.Matcher:
    return lambda other: other == argv
