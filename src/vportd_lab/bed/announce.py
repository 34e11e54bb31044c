"""A migrated VM announcing itself: a gratuitous ARP and a RARP from inside its namespace.

QEMU announces a VM that resumed on its destination with RARPs (and guests
send a gratuitous ARP); `lab migrate` does the same on the VM's new
interface. The announcement sits in the switchover's critical path, so the
sender is started *before* the switchover (`Announcer`): it runs as
`ip netns exec NS python -m vportd_lab.bed.announce ...`, opens an AF_PACKET
socket bound to the (still down) new interface, which keeps its ifindex
through the renaming, says `ready`, and sends the moment it reads `go`.
Protocol on its stdin/stdout, one line each way:

    end -> parent: `ready`
    parent -> end: `go` (or EOF: exit without sending)
    end -> parent: one JSON line {"sent_ns": [...], "errors": [...]}

Frames (RFC 826, RFC 903): ARP request with sender = target = the VM's IP
(gratuitous), RARP "request reverse" with sender = target = the VM's MAC
(what QEMU's announce sends). Only the standard library: the helper starts fast.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import IO

ETH_ARP = 0x0806
ETH_RARP = 0x8035
BROADCAST = b"\xff" * 6
ARP_REQUEST = 1
RARP_REQUEST = 3
READY_TIMEOUT = 15.0
RESULT_TIMEOUT = 10.0

_ARP = struct.Struct("!HHBBH6s4s6s4s")  # htype, ptype, hlen, plen, oper, sha, spa, tha, tpa


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def gratuitous_arp(mac: str, ip: str) -> bytes:
    """An Ethernet broadcast ARP request for the VM's own IP (sender = target)."""
    sha, spa = _mac(mac), socket.inet_aton(ip)
    body = _ARP.pack(1, 0x0800, 6, 4, ARP_REQUEST, sha, spa, bytes(6), spa)
    return BROADCAST + sha + struct.pack("!H", ETH_ARP) + body


def rarp(mac: str) -> bytes:
    """A broadcast RARP request reverse for the VM's own MAC, as QEMU announces a VM."""
    sha = _mac(mac)
    body = _ARP.pack(1, 0x0800, 6, 4, RARP_REQUEST, sha, bytes(4), sha, bytes(4))
    return BROADCAST + sha + struct.pack("!H", ETH_RARP) + body


# -- the helper inside the namespace ------------------------------------------
def _send_round(sock: socket.socket, frames: Sequence[bytes], errors: list[str]) -> int:
    sent = time.monotonic_ns()
    for frame in frames:
        try:
            sock.send(frame)
        except OSError as err:  # e.g. ENETDOWN if the interface is not up yet
            errors.append(f"{err.strerror or err}")
    return sent


def endpoint(ifname: str, mac: str, ip: str, rounds: int, step: float) -> int:
    """Open the socket, say `ready`, send `rounds` announcements `step` s apart on `go`."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((ifname, 0))
    frames = (gratuitous_arp(mac, ip), rarp(mac))
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 0
    errors: list[str] = []
    sent = [_send_round(sock, frames, errors)]
    for n in range(1, rounds):
        # QEMU spaces its rounds out more and more (announce-step); ours grow linearly too
        time.sleep(step * n)
        sent.append(_send_round(sock, frames, errors))
    print(json.dumps({"sent_ns": sent, "errors": errors}), flush=True)
    return 0


# -- the parent's side ------------------------------------------------------------
class AnnounceError(RuntimeError):
    """The announcing helper did not start or did not answer."""


class Announcer:
    """The helper, started in `netns` before the switchover: `go()` then `result()`."""

    def __init__(
        self, netns: str, ifname: str, mac: str, ip: str, *, rounds: int = 1, step: float = 0.05
    ) -> None:
        argv = [
            "ip", "netns", "exec", netns, sys.executable, "-m", "vportd_lab.bed.announce",
            "--ifname", ifname, "--mac", mac, "--ip", ip, "--rounds", str(rounds),
            "--step", repr(step),
        ]  # fmt: skip
        env = dict(os.environ)
        here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env,
        )  # fmt: skip

    def _line(self, timeout: float) -> str:
        out = self._proc.stdout
        assert out is not None
        ready, _, _ = select.select([out], [], [], timeout)
        line = out.readline() if ready else ""
        if not line:
            self.close()
            why = self._proc.stderr.read().strip() if self._proc.stderr else ""
            raise AnnounceError(f"the announcing helper did not answer: {why or 'no output'}")
        return line.strip()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        if self._line(timeout) != "ready":
            raise AnnounceError("the announcing helper said something unexpected")

    def go(self) -> None:
        """Announce now (non-blocking for the caller: one line down a pipe)."""
        _write(self._proc.stdin, "go\n")

    def result(self, timeout: float = RESULT_TIMEOUT) -> dict[str, list[int] | list[str]]:
        doc: dict[str, list[int] | list[str]] = json.loads(self._line(timeout))
        self.close()
        return doc

    def close(self) -> None:
        """Stop the helper (idempotent); EOF makes a waiting one exit without sending."""
        if self._proc.poll() is None:
            try:
                _write(self._proc.stdin, "")
                if self._proc.stdin is not None:
                    self._proc.stdin.close()
                self._proc.wait(2.0)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()


def _write(stream: IO[str] | None, text: str) -> None:
    if stream is not None and text:
        stream.write(text)
        stream.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="announce a VM (GARP + RARP) on `go`")
    parser.add_argument("--ifname", required=True)
    parser.add_argument("--mac", required=True)
    parser.add_argument("--ip", required=True)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--step", type=float, default=0.05)
    args = parser.parse_args(argv)
    return endpoint(args.ifname, args.mac, args.ip, max(args.rounds, 1), args.step)


if __name__ == "__main__":
    sys.exit(main())
