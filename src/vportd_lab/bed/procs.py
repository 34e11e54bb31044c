"""Processes, seen through /proc: is a pid still the process we started, who holds a tap.

A recorded pid is only trusted while its command line still matches what the
lab started (pids are reused after a crash or a reboot), so every check and
every kill here takes a predicate over the command line.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

PROC = Path("/proc")

Cmdline = list[str]
Matcher = Callable[[Cmdline], bool]


def cmdline(pid: int) -> Cmdline | None:
    """The argv of a live (non-zombie) process, or None if it is gone."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # stat is "pid (comm) STATE ...": comm may hold spaces and parentheses.
    state = stat.rpartition(")")[2].split()[:1]
    if not raw or state in (["Z"], ["X"]):
        return None
    return raw.rstrip(b"\0").decode(errors="replace").split("\0")


def alive(pid: int | None, matches: Matcher | None = None) -> bool:
    """True if `pid` runs and (when given) its command line satisfies `matches`."""
    if pid is None or pid <= 0:
        return False
    argv = cmdline(pid)
    return argv is not None and (matches is None or matches(argv))


def pids() -> Iterator[int]:
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def find(matches: Matcher) -> list[int]:
    """Every live process whose command line satisfies `matches` (never this one)."""
    me = os.getpid()
    found = []
    for pid in pids():
        argv = cmdline(pid)
        if pid != me and argv is not None and matches(argv):
            found.append(pid)
    return sorted(found)


def stop(pid: int, matches: Matcher, wait: float = 5.0) -> bool:
    """SIGTERM `pid` if it still matches, SIGKILL it after `wait` s; True if it was running."""
    if not alive(pid, matches):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    if wait_gone(pid, wait):
        return True
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    wait_gone(pid, 2.0)
    return True


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until `pid` has exited (or is a zombie); True if it did within `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        if cmdline(pid) is None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    """Poll `condition` until it holds (True) or `timeout` s pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
    return True


def tap_holders() -> dict[str, list[int]]:
    """Which processes hold which tun/tap device open: {interface name: [pid, ...]}.

    The kernel shows the attached interface as `iff:` in the fdinfo of every
    open /dev/net/tun file. A persistent tap that nobody holds is stale. Only
    processes in this process's network namespace count: an OVS in another
    namespace (the overlay lab's hosts) holds taps of the same names there.
    """
    holders: dict[str, list[int]] = {}
    here = _netns(os.getpid())
    for pid in pids():
        if _netns(pid) != here:
            continue
        fd_dir = PROC / str(pid) / "fd"
        try:
            fds = list(fd_dir.iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) != "/dev/net/tun":
                    continue
                info = (PROC / str(pid) / "fdinfo" / fd.name).read_text()
            except OSError:
                continue
            for line in info.splitlines():
                key, _, value = line.partition(":")
                if key == "iff" and value.strip():
                    holders.setdefault(value.strip(), []).append(pid)
    return holders


def _netns(pid: int) -> str | None:
    """The network namespace of `pid` (as /proc names it), None if it is gone."""
    try:
        return os.readlink(PROC / str(pid) / "ns" / "net")
    except OSError:
        return None


_ESTABLISHED, _LISTEN = "01", "0A"
Address = tuple[str, int]


def _tcp(pid: int, state: str) -> list[tuple[Address, Address]]:
    """(local, remote) IPv4 addresses of the TCP sockets `pid` holds in `state`.

    Matches the socket inodes of /proc/PID/fd in /proc/PID/net/tcp (the table
    of the process's own network namespace).
    """
    inodes = set()
    try:
        fds = list((PROC / str(pid) / "fd").iterdir())
    except OSError:
        return []
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    try:
        table = (PROC / str(pid) / "net" / "tcp").read_text().splitlines()[1:]
    except OSError:
        return []

    def address(text: str) -> Address:
        host, _, port = text.partition(":")
        return socket.inet_ntoa(bytes.fromhex(host)[::-1]), int(port, 16)

    found = []
    for line in table:
        fields = line.split()
        if len(fields) >= 10 and fields[3] == state and fields[9] in inodes:  # noqa: PLR2004
            found.append((address(fields[1]), address(fields[2])))
    return found


def tcp_peers(pid: int) -> list[Address]:
    """The remote end of every established TCP connection that `pid` holds."""
    return [remote for _, remote in _tcp(pid, _ESTABLISHED)]


def listens(pid: int, address: str) -> bool:
    """True if `pid` listens on HOST:PORT (without connecting to it)."""
    host, _, port = address.rpartition(":")
    want = int(port)
    return any(
        lport == want and lhost in (host, "0.0.0.0") for (lhost, lport), _ in _tcp(pid, _LISTEN)
    )


def rss(pid: int) -> int:
    """A process's resident set, bytes (0 if it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0
