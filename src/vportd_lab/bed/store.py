"""The lab's etcd: the controllers' store, started detached, found again after a crash.

`up` starts it with `PrivateEtcd(detached=True)` in DIR/etcd, so that it
outlives `vportctl lab up` like the controllers do. `down` never needs the
object (or a pid) that started it: it finds the process by its command line
(an `etcd` whose --data-dir lies under DIR), stops it, and only then removes
DIR/etcd (data and log).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from vportd_lab.bed import procs
from vportd_lab.bed.etcd import PrivateEtcd
from vportd_lab.bed.plan import Etcd
from vportd_lab.bed.ports import free_port

# A revision-based retention: a long-running lab does not grow without bound,
# yet a controller's watch that resumes after a reconnect finds its history.
RETENTION = "10000"
START_TIMEOUT = 20.0


def start(etcd: Etcd) -> int:
    """Start the lab's etcd, detached, and wait until it is healthy; its pid."""
    member = PrivateEtcd(
        etcd.workdir, auto_compaction=RETENTION, detached=True,
        client_port=etcd.client_port, peer_port=etcd.peer_port, host=etcd.host,
        netns=etcd.netns,
    )  # fmt: skip
    member.start(START_TIMEOUT)
    pid = member.pid
    assert pid is not None  # start() returned: it runs and answered /health
    return pid


def owned_by(lab_dir: Path) -> procs.Matcher:
    """A command-line test: an `etcd` whose --data-dir lies under `lab_dir`."""
    prefix = str(lab_dir).rstrip("/") + "/"

    def matches(argv: procs.Cmdline) -> bool:
        if not argv or Path(argv[0]).name != "etcd":
            return False
        for n, arg in enumerate(argv):
            if arg == "--data-dir" and n + 1 < len(argv) and argv[n + 1].startswith(prefix):
                return True
            if arg.startswith("--data-dir=") and arg.partition("=")[2].startswith(prefix):
                return True
        return False

    return matches


def running(lab_dir: Path, recorded: int | None = None) -> list[int]:
    """The lab's etcd processes: the recorded pid (if it still is ours) and any other found."""
    matches = owned_by(lab_dir)
    pids = set(procs.find(matches))
    if procs.alive(recorded, matches):
        assert recorded is not None
        pids.add(recorded)
    return sorted(pids)


def stop(lab_dir: Path, pids: Iterable[int]) -> list[int]:
    """Stop these etcd processes of the lab; the pids that were running."""
    matches = owned_by(lab_dir)
    return [pid for pid in pids if procs.stop(pid, matches)]


def remove_files(workdir: Path) -> bool:
    """Remove the etcd's data and log (it must be stopped); True if there was something."""
    if not workdir.is_dir():
        return False
    shutil.rmtree(workdir / "data", ignore_errors=True)
    (workdir / "etcd.log").unlink(missing_ok=True)
    workdir.rmdir()  # OSError if something else was put there: reported, not removed
    return True


def free_ports(avoid: set[int], count: int = 2) -> list[int]:
    """`count` distinct TCP ports free on 127.0.0.1 now (the kernel's pick), none in `avoid`."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in avoid and port not in ports:
            ports.append(port)
    return ports
