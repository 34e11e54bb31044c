"""One end of the traffic probe, inside its namespace: sends on schedule, receives, reports.

The parent (`vportd_lab.bed.probe.Probe`) starts it as `python -m
vportd_lab.bed.probe endpoint ...` and drives it over stdin/stdout with the
line protocol of that module's docstring. Pacing: packet n is due at t0 +
n*interval; a sender that wakes late sends the packets due since, at most
`max_burst` back to back, and skips older slots (they get no sequence
number, so they are never counted as lost). Arrival times come from the
receiver's kernel (SO_TIMESTAMPNS), turned into CLOCK_MONOTONIC.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import socket
import struct
import sys
import time
from array import array
from dataclasses import asdict, dataclass, field
from typing import IO, Any

from vportd_lab.bed.probe_report import (
    longest_gaps,
    percentile,
    sequence_counts,
    time_series,
    to_ms,
)

MAX_BURST = 5
DRAIN = 0.2  # s a receiver keeps reading after `stop`: packets still in flight are not lost
GAP_LIST = 20  # the longest gaps listed per direction (beyond the longest one)

_PACKET = struct.Struct("!4sIQQ")  # magic, run nonce, sequence number, tx CLOCK_MONOTONIC ns
_MAGIC = b"VPRB"
_SO_TIMESTAMPNS = 35  # Linux (asm-generic); the socket module does not export it
_TIMESPEC = struct.Struct("@qq")
_PR_SET_TIMERSLACK = 29
_STEP_NS = 1_000_000  # a realtime/monotonic offset change beyond this is a clock step
_RECV_BATCH = 256  # datagrams read per wake-up at most, so the sender is not starved


@dataclass
class Sender:
    """The monotonic schedule: packet slots at t0 + n*interval, bounded catch-up."""

    sock: socket.socket
    peer: tuple[str, int]
    nonce: int
    t0_ns: int
    interval_ns: int
    max_burst: int
    slot: int = 0
    sent: int = 0
    errors: int = 0
    skipped: int = 0
    first_ns: int = 0
    last_ns: int = 0
    late_ns: array[int] = field(default_factory=lambda: array("q"))

    @property
    def next_due_ns(self) -> int:
        return self.t0_ns + self.slot * self.interval_ns

    def tick(self, now: int) -> None:
        """Send every packet due by `now`, at most `max_burst` of them (older slots skipped)."""
        due = (now - self.t0_ns) // self.interval_ns + 1 - self.slot
        if due <= 0:
            return
        # Measured before any skip: how long the sender really stalled (scheduling, GIL...).
        self.late_ns.append(now - self.next_due_ns)
        if due > self.max_burst:
            self.skipped += due - self.max_burst
            self.slot += due - self.max_burst
        while self.slot * self.interval_ns + self.t0_ns <= now:
            self._send_one()

    def _send_one(self) -> None:
        now = time.monotonic_ns()
        data = _PACKET.pack(_MAGIC, self.nonce, self.sent, now)
        try:
            self.sock.sendto(data, self.peer)
        except OSError:  # unreachable, no buffer: the peer loses this one, which is the point
            self.errors += 1
        self.first_ns = self.first_ns or now
        self.last_ns = now
        self.sent += 1
        self.slot += 1

    def result(self) -> dict[str, Any]:
        span = (self.last_ns - self.first_ns) / 1e9
        late = self.late_ns.tolist()
        return {
            "sent": self.sent,
            "send_errors": self.errors,
            "skipped_slots": self.skipped,
            "rate_pps": round((self.sent - 1) / span, 1) if span > 0 else 0.0,
            "late_us_p50": round(percentile(late, 50) / 1e3, 1),
            "late_us_p99": round(percentile(late, 99) / 1e3, 1),
            "late_us_max": round(max(late, default=0) / 1e3, 1),
        }


def _realtime_offset_ns() -> int:
    """CLOCK_REALTIME minus CLOCK_MONOTONIC, read between two monotonic reads (best of 5)."""
    best: tuple[int, int] | None = None
    for _ in range(5):
        before = time.monotonic_ns()
        real = time.clock_gettime_ns(time.CLOCK_REALTIME)
        after = time.monotonic_ns()
        if best is None or after - before < best[0]:
            best = (after - before, real - (before + after) // 2)
    assert best is not None
    return best[1]


@dataclass
class Receiver:
    """Arrivals of this run's packets: sequence numbers, kernel arrival and send times."""

    sock: socket.socket
    nonce: int
    offset_ns: int  # CLOCK_REALTIME - CLOCK_MONOTONIC, to turn kernel stamps monotonic
    seqs: array[int] = field(default_factory=lambda: array("q"))
    rx_ns: array[int] = field(default_factory=lambda: array("q"))
    tx_ns: array[int] = field(default_factory=lambda: array("q"))
    user_stamps: int = 0  # arrivals the kernel did not stamp

    def drain(self) -> None:
        """Read what is queued (non-blocking), at most a batch."""
        for _ in range(_RECV_BATCH):
            try:
                data, ancillary, _flags, _addr = self.sock.recvmsg(64, 64)
            except (BlockingIOError, InterruptedError):
                return
            self._record(data, self._stamp(ancillary))

    def _stamp(self, ancillary: list[tuple[int, int, bytes]]) -> int:
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                sec, nsec = _TIMESPEC.unpack_from(payload)
                return int(sec) * 1_000_000_000 + int(nsec) - self.offset_ns
        self.user_stamps += 1
        return time.monotonic_ns()

    def _record(self, data: bytes, rx: int) -> None:
        if len(data) != _PACKET.size:
            return
        magic, nonce, seq, tx = _PACKET.unpack(data)
        if magic != _MAGIC or nonce != self.nonce:
            return  # a stray datagram, e.g. from an earlier run on the same port
        self.seqs.append(seq)
        self.rx_ns.append(rx)
        self.tx_ns.append(tx)

    def result(self, t0_ns: int, series_bin_ns: int | None, end_ns: int) -> dict[str, Any]:
        received, duplicates, reordered = sequence_counts(self.seqs)
        rx = self.rx_ns.tolist()
        latency = [r - t for r, t in zip(rx, self.tx_ns, strict=True)]
        gaps = longest_gaps(rx, self.seqs, t0_ns, GAP_LIST + 1)
        longest = gaps[0] if gaps else None
        return {
            "received": received,
            "duplicates": duplicates,
            "reordered": reordered,
            "longest_gap_ms": round(longest.length_ms, 3) if longest else 0.0,
            "gap_start_ms": longest.start_ms if longest else None,
            "gap_end_ms": longest.end_ms if longest else None,
            "gap_lost": longest.lost if longest else 0,
            "first_rx_ms": to_ms(rx[0] - t0_ns) if rx else None,
            "last_rx_ms": to_ms(rx[-1] - t0_ns) if rx else None,
            "latency_ms_p50": to_ms(percentile(latency, 50)) if latency else None,
            "latency_ms_max": to_ms(max(latency)) if latency else None,
            "gaps": [asdict(g) for g in sorted(gaps[1:], key=lambda g: g.start_ms)],
            "series": time_series(rx, t0_ns, series_bin_ns, end_ns) if series_bin_ns else None,
            "user_stamps": self.user_stamps,
        }


def _open_socket(bind: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    # Room for seconds of traffic: a reader held up by a loaded machine must not drop.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((bind, port))
    sock.setblocking(False)
    return sock


def _realtime_priority(wanted: bool) -> str:
    """SCHED_FIFO at the lowest RT priority if `wanted` and allowed; the policy in force.

    On a loaded machine an ordinary process wakes late: the sender bursts and
    skips slots, and the receiver sees gaps that are the probe's own, not the
    network's. With SCHED_FIFO it wakes on time. An end sleeps between
    packets, so it takes little from anyone else.
    """
    if not wanted:
        return "other"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except (OSError, AttributeError):  # not root, or no RT scheduling here
        return "other"
    return "fifo"


def _tighten_timer_slack() -> None:
    """1 µs timer slack instead of 50: every sleep to a slot otherwise overshoots by up to 50 µs."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: pacing merely coarser
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_TIMERSLACK, 1000, 0, 0, 0)


class _Control:
    """The parent's line protocol on stdin, read only when select() says there is something."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""
        self.t0_ns: int | None = None
        self.stopping = False  # `stop` read, or EOF: the parent is done (or gone)

    def read(self) -> None:
        chunk = os.read(self.fd, 4096)
        self.stopping = self.stopping or not chunk
        self.buffer += chunk
        *complete, self.buffer = self.buffer.split(b"\n")
        # Every line is handled: `start` and `stop` may come in one read.
        for line in (raw.decode().strip() for raw in complete):
            if line.startswith("start "):
                self.t0_ns = int(line.split()[1])
            elif line == "stop":
                self.stopping = True

    def wait_start(self) -> int:
        while self.t0_ns is None:
            if self.stopping:
                raise SystemExit("probe end: the parent went away before `start`")
            self.read()
        return self.t0_ns


def _serve(sender: Sender, receiver: Receiver, control: _Control, drain_s: float) -> int:
    """Send on schedule and receive until `stop` or EOF, then drain; the stop time."""
    stopped: int | None = None
    watched: list[Any] = [receiver.sock, control.fd]
    while True:
        now = time.monotonic_ns()
        if stopped is None and control.stopping:
            stopped = now
            watched = [receiver.sock]  # stdin at EOF stays readable: no busy loop
        if stopped is None:
            sender.tick(now)
            wake_ns = sender.next_due_ns
        else:
            wake_ns = stopped + int(drain_s * 1e9)
            if now >= wake_ns:
                return stopped
        readable, _, _ = select.select(watched, [], [], max(0, wake_ns - now) / 1e9)
        if receiver.sock in readable:
            receiver.drain()
        if control.fd in readable:
            control.read()


def endpoint(
    bind: str,
    peer: str,
    port: int,
    interval: float,
    *,
    nonce: int,
    max_burst: int = MAX_BURST,
    drain: float = DRAIN,
    series_bin: float | None = None,
    realtime: bool = True,
    out: IO[str] = sys.stdout,
    control_fd: int = 0,
) -> None:
    """One end, inside its namespace: the line protocol of the module docstring."""
    sched = _realtime_priority(realtime)
    _tighten_timer_slack()
    sock = _open_socket(bind, port)
    offset = _realtime_offset_ns()
    out.write("ready\n")
    out.flush()
    control = _Control(control_fd)
    t0 = control.wait_start()
    interval_ns = round(interval * 1e9)
    sender = Sender(sock, (peer, port), nonce, t0, interval_ns, max_burst)
    receiver = Receiver(sock, nonce, offset)
    stopped = _serve(sender, receiver, control, drain)
    stepped = abs(_realtime_offset_ns() - offset) > _STEP_NS
    series_ns = round(series_bin * 1e9) if series_bin else None
    result = {
        "stopped_ns": stopped,
        "clock_stepped": stepped,
        "sched": sched,
        "send": sender.result(),
        "receive": receiver.result(t0, series_ns, stopped),
    }
    out.write(json.dumps(result) + "\n")
    out.flush()
    sock.close()
