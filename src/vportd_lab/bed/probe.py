"""The traffic probe: sequence-numbered UDP every `interval` in both directions between two VMs.

Measures what a VM's peers see while it migrates: per direction, packets
sent, received, lost, duplicated and reordered, the longest gap between two
consecutive received packets (and when it happened), and optionally the
number of packets received per time bin (for a plot around the switchover).

Each end runs as its own process inside its namespace
(`ip netns exec NS python -m vportd_lab.bed.probe endpoint ...`): a process per
end keeps the two senders off one GIL, and a socket opened there lives in
that namespace with no setns tricks. The parent (`Probe`) talks to each end
over its stdin/stdout, one line each way:

    end -> parent: `ready`                (socket bound)
    parent -> end: `start T0_NS`          (CLOCK_MONOTONIC time of packet 0)
    parent -> end: `stop` (or EOF)        (stop sending, drain, then...)
    end -> parent: one JSON line          (what it sent and received)

Times: every timestamp is CLOCK_MONOTONIC, one clock for every namespace of
the machine, so a caller can set the probe's times beside its own. Reports
give them in ms relative to `t0_ns` (the scheduled time of packet 0).
Arrival times come from the receiver's kernel (SO_TIMESTAMPNS), not from the
moment Python reads the packet: a probe process delayed by a loaded machine
then does not invent gaps. The kernel stamps in CLOCK_REALTIME; the offset to
CLOCK_MONOTONIC is measured at start and stop (NTP slews both clocks alike;
only a step changes it, and the report says so in `clock_stepped`).

Pacing: packet n is due at t0 + n*interval. A sender that wakes late sends
the packets due since, at most `max_burst` back to back; slots older than
that are skipped (counted in `skipped_slots`, given no sequence number, so
they are never counted as lost). Each direction reports the achieved rate
and how late packets left (p50/p99/max, µs).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import secrets
import select
import socket
import struct
import subprocess
import sys
import time
from array import array
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import IO, Any

from vportd_lab.bed.commands import tool

DEFAULT_PORT = 47123
DEFAULT_INTERVAL = 0.001
MAX_BURST = 5
DRAIN = 0.2  # s a receiver keeps reading after `stop`: packets still in flight are not lost
READY_TIMEOUT = 15.0  # s for an end to start (interpreter start-up on a loaded machine)
START_LEAD = 0.05  # s between `start` and packet 0, so both ends get the line in time
GAP_LIST = 20  # the longest gaps listed per direction (beyond the longest one)

_PACKET = struct.Struct("!4sIQQ")  # magic, run nonce, sequence number, tx CLOCK_MONOTONIC ns
_MAGIC = b"VPRB"
_SO_TIMESTAMPNS = 35  # Linux (asm-generic); the socket module does not export it
_TIMESPEC = struct.Struct("@qq")
_PR_SET_TIMERSLACK = 29
_STEP_NS = 1_000_000  # a realtime/monotonic offset change beyond this is a clock step
_RECV_BATCH = 256  # datagrams read per wake-up at most, so the sender is not starved


class ProbeError(RuntimeError):
    """The probe could not run; the message says which end and why."""


# -- the report --------------------------------------------------------------
@dataclass
class Gap:
    """A silence between two consecutive received packets, in ms from t0.

    `lost`: sequence numbers missing between the two packets. A long gap with
    none lost is the sender's own stall (skipped slots get no number), not the
    network's.
    """

    start_ms: float
    end_ms: float
    lost: int = 0

    @property
    def length_ms(self) -> float:
        return self.end_ms - self.start_ms


@dataclass
class DirectionReport:
    """One direction (`source` -> `destination`, each `netns/ip`); times in ms from t0."""

    source: str
    destination: str
    sent: int  # sequence numbers used (send errors included: the peer lost them too)
    received: int  # distinct sequence numbers received
    lost: int  # sent - received
    duplicates: int
    reordered: int  # arrived after a higher sequence number
    send_errors: int  # sendto() failed (e.g. ENETUNREACH while the link is down)
    skipped_slots: int  # schedule slots dropped to bound a catch-up burst
    rate_pps: float  # achieved send rate over the sending time
    late_us_p50: float  # per wake-up: how long after its earliest due slot the sender woke
    late_us_p99: float
    late_us_max: float
    longest_gap_ms: float  # between consecutive received packets (0 with fewer than 2)
    gap_start_ms: float | None  # arrival of the packet before the longest gap
    gap_end_ms: float | None  # arrival of the packet after it
    gap_lost: int  # sequence numbers missing across it (0: the sender stalled, see Gap)
    first_rx_ms: float | None
    last_rx_ms: float | None
    latency_ms_p50: float | None  # one-way: kernel arrival minus the sender's send time
    latency_ms_max: float | None
    gaps: list[Gap] = field(default_factory=list)  # the longest gaps, in time order
    series: list[int] | None = None  # packets received per series bin, bin 0 starting at t0

    @property
    def longest_gap(self) -> Gap | None:
        if self.gap_start_ms is None or self.gap_end_ms is None:
            return None
        return Gap(self.gap_start_ms, self.gap_end_ms, self.gap_lost)


@dataclass
class ProbeReport:
    """What `Probe.stop()` returns; `to_json()` / `from_json()` for files and the CLI."""

    interval_ms: float
    t0_ns: int  # CLOCK_MONOTONIC of packet 0's slot: ms fields are relative to it
    duration_ms: float  # from t0 to `stop`
    series_bin_ms: float | None
    rx_clock: str  # "kernel" (SO_TIMESTAMPNS) or "user" (if the kernel gave no stamps)
    sched: str  # "fifo": both ends run SCHED_FIFO; "other": at least one is an ordinary process
    clock_stepped: bool  # CLOCK_REALTIME was stepped during the run: kernel stamps are off
    a_to_b: DirectionReport
    b_to_a: DirectionReport

    @property
    def directions(self) -> tuple[DirectionReport, DirectionReport]:
        return (self.a_to_b, self.b_to_a)

    @property
    def longest_gap_ms(self) -> float:
        return max(d.longest_gap_ms for d in self.directions)

    @property
    def lost(self) -> int:
        return sum(d.lost for d in self.directions)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> ProbeReport:
        doc = json.loads(text)
        for key in ("a_to_b", "b_to_a"):
            direction = dict(doc[key])
            direction["gaps"] = [Gap(**g) for g in direction.get("gaps", [])]
            doc[key] = DirectionReport(**direction)
        return cls(**doc)


# -- pure computations (tested without namespaces) -----------------------------
def percentile(values: Sequence[int] | Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank) of `values`; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return float(ordered[rank])


def longest_gaps(rx_ns: Sequence[int], seqs: Sequence[int], t0_ns: int, keep: int) -> list[Gap]:
    """The `keep` longest gaps between consecutive arrivals, longest first (ms from t0)."""
    order = sorted(range(1, len(rx_ns)), key=lambda i: rx_ns[i] - rx_ns[i - 1], reverse=True)
    return [
        Gap(_ms(rx_ns[i - 1] - t0_ns), _ms(rx_ns[i] - t0_ns), max(0, seqs[i] - seqs[i - 1] - 1))
        for i in order[:keep]
    ]


def sequence_counts(seqs: Sequence[int]) -> tuple[int, int, int]:
    """(distinct, duplicates, reordered) of sequence numbers in arrival order."""
    seen: set[int] = set()
    duplicates = reordered = 0
    highest = -1
    for seq in seqs:
        if seq in seen:
            duplicates += 1
            continue
        seen.add(seq)
        if seq < highest:
            reordered += 1
        highest = max(highest, seq)
    return len(seen), duplicates, reordered


def time_series(rx_ns: Sequence[int], t0_ns: int, bin_ns: int, end_ns: int) -> list[int]:
    """Packets received per `bin_ns` bin from t0 to `end_ns` (arrivals before t0 go to bin 0)."""
    bins = [0] * max(1, -(-(end_ns - t0_ns) // bin_ns))
    for t in rx_ns:
        index = max(0, (t - t0_ns) // bin_ns)
        if index >= len(bins):
            bins.extend([0] * (index + 1 - len(bins)))
        bins[index] += 1
    return bins


def _ms(ns: int | float) -> float:
    return round(ns / 1e6, 3)


# -- an end: runs inside its namespace -----------------------------------------
@dataclass
class _Sender:
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
class _Receiver:
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
            "first_rx_ms": _ms(rx[0] - t0_ns) if rx else None,
            "last_rx_ms": _ms(rx[-1] - t0_ns) if rx else None,
            "latency_ms_p50": _ms(percentile(latency, 50)) if latency else None,
            "latency_ms_max": _ms(max(latency)) if latency else None,
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

    Measured on the 2-core lab machine under load: as an ordinary process a
    sender stalls up to 5 ms (then bursts and skips slots) and the receiver
    sees 15-25 ms gaps that are the probe's own; with SCHED_FIFO it wakes
    within 0.2 ms (p99) of its slot. An end sleeps between packets (a few %
    of a core), so it takes little from anyone else.
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
                raise ProbeError("the parent went away before `start`")
            self.read()
        return self.t0_ns


def _serve(sender: _Sender, receiver: _Receiver, control: _Control, drain_s: float) -> int:
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
    sender = _Sender(sock, (peer, port), nonce, t0, interval_ns, max_burst)
    receiver = _Receiver(sock, nonce, offset)
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


# -- the parent: drives both ends ---------------------------------------------
class _End:
    """One end's process (`ip netns exec NS python -m vportd_lab.bed.probe endpoint ...`)."""

    def __init__(self, netns: str | None, argv: list[str]) -> None:
        self.name = netns or "(root namespace)"
        prefix = [tool("ip"), "netns", "exec", netns] if netns else []
        self.proc = subprocess.Popen(
            [*prefix, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_child_env(),
        )

    def wait_ready(self, deadline: float) -> None:
        assert self.proc.stdout is not None
        remaining = max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([self.proc.stdout], [], [], remaining)
        line = self.proc.stdout.readline() if ready else ""
        if line.strip() != "ready":
            raise ProbeError(f"probe end in {self.name} not ready in time: {self._why()}")

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise ProbeError(f"probe end in {self.name} died: {self._why()}") from None

    def result(self, timeout: float) -> dict[str, Any]:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ProbeError(f"probe end in {self.name} did not report in {timeout:g} s") from None
        if self.proc.returncode != 0 or not out.strip():
            raise ProbeError(f"probe end in {self.name} failed: {err.strip()[-2000:]}")
        return dict(json.loads(out.strip().splitlines()[-1]))

    def _why(self) -> str:
        self.kill()
        _, err = self.proc.communicate()
        return err.strip()[-2000:] or f"exit {self.proc.returncode}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _child_env() -> dict[str, str]:
    """The parent's environment, with vportd importable even from an uninstalled tree."""
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    return env


class Probe:
    """Bidirectional 1 ms UDP between two namespaces: `start()`, then `stop() -> ProbeReport`.

    `a_netns`/`b_netns` may be None for the root namespace. Use as a context
    manager (or call `close()`) so both ends die whatever happens.
    """

    def __init__(
        self,
        a_netns: str | None,
        a_ip: str,
        b_netns: str | None,
        b_ip: str,
        port: int = DEFAULT_PORT,
        *,
        interval: float = DEFAULT_INTERVAL,
        series_bin: float | None = None,
        max_burst: int = MAX_BURST,
        drain: float = DRAIN,
        realtime: bool = True,
        python: str = sys.executable,
    ) -> None:
        if interval <= 0 or max_burst < 1:
            raise ValueError("interval must be > 0 and max_burst >= 1")
        self.a = (a_netns, a_ip)
        self.b = (b_netns, b_ip)
        self.port = port
        self.interval = interval
        self.series_bin = series_bin
        self.max_burst = max_burst
        self.drain = drain
        self.realtime = realtime
        self.python = python
        self.nonce = secrets.randbits(32)
        self.t0_ns: int | None = None
        self._ends: list[_End] = []

    def _argv(self, bind: str, peer: str) -> list[str]:
        argv = [
            self.python, "-m", "vportd_lab.bed.probe", "endpoint", "--bind", bind, "--peer", peer,
            "--port", str(self.port), "--interval", repr(self.interval),
            "--max-burst", str(self.max_burst), "--drain", repr(self.drain),
            "--nonce", str(self.nonce),
        ]  # fmt: skip
        if self.series_bin:
            argv += ["--series-bin", repr(self.series_bin)]
        if not self.realtime:
            argv.append("--no-realtime")
        return argv

    def start(self, timeout: float = READY_TIMEOUT) -> int:
        """Start both ends, wait until both listen, then go; t0 (CLOCK_MONOTONIC ns)."""
        if self._ends:
            raise ProbeError("the probe is already started")
        try:
            self._ends = [
                _End(self.a[0], self._argv(self.a[1], self.b[1])),
                _End(self.b[0], self._argv(self.b[1], self.a[1])),
            ]
            deadline = time.monotonic() + timeout
            for end in self._ends:
                end.wait_ready(deadline)
            self.t0_ns = time.monotonic_ns() + int(START_LEAD * 1e9)
            for end in self._ends:
                end.send(f"start {self.t0_ns}")
        except BaseException:
            self.close()
            raise
        return self.t0_ns

    def stop(self) -> ProbeReport:
        """Stop both senders, let the receivers drain, and report."""
        if not self._ends or self.t0_ns is None:
            raise ProbeError("the probe is not started")
        try:
            for end in self._ends:
                end.send("stop")
            a, b = (end.result(self.drain + 15.0) for end in self._ends)
        finally:
            self.close()
        return self._report(a, b)

    def close(self) -> None:
        """Kill whatever end still runs (idempotent)."""
        for end in self._ends:
            end.kill()

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _report(self, a: dict[str, Any], b: dict[str, Any]) -> ProbeReport:
        assert self.t0_ns is not None
        names = [f"{ns or 'root'}/{ip}" for ns, ip in (self.a, self.b)]
        user = a["receive"]["user_stamps"] + b["receive"]["user_stamps"]
        return ProbeReport(
            interval_ms=self.interval * 1e3,
            t0_ns=self.t0_ns,
            duration_ms=_ms(min(a["stopped_ns"], b["stopped_ns"]) - self.t0_ns),
            series_bin_ms=self.series_bin * 1e3 if self.series_bin else None,
            rx_clock="user" if user else "kernel",
            clock_stepped=bool(a["clock_stepped"] or b["clock_stepped"]),
            sched="fifo" if a["sched"] == b["sched"] == "fifo" else "other",
            a_to_b=_direction(names[0], names[1], a["send"], b["receive"]),
            b_to_a=_direction(names[1], names[0], b["send"], a["receive"]),
        )


def _direction(
    source: str, destination: str, send: dict[str, Any], receive: dict[str, Any]
) -> DirectionReport:
    fields = {k: v for k, v in receive.items() if k != "user_stamps"}
    fields["gaps"] = [Gap(**g) for g in fields["gaps"]]
    return DirectionReport(
        source=source,
        destination=destination,
        lost=send["sent"] - receive["received"],
        **send,
        **fields,
    )


# -- driving it by hand ----------------------------------------------------------
def run_probe(
    a_netns: str | None,
    a_ip: str,
    b_netns: str | None,
    b_ip: str,
    duration: float,
    *,
    port: int = DEFAULT_PORT,
    interval: float = DEFAULT_INTERVAL,
    series_bin: float | None = None,
) -> ProbeReport:
    """Run the probe for `duration` seconds and return its report (for `vportctl lab probe`)."""
    with Probe(
        a_netns, a_ip, b_netns, b_ip, port, interval=interval, series_bin=series_bin
    ) as probe:
        probe.start()
        time.sleep(duration)
        return probe.stop()


def summary(report: ProbeReport) -> str:
    """A few human lines: one per direction."""
    lines = [f"probe: {report.duration_ms / 1e3:.2f} s at {report.interval_ms:g} ms"]
    for d in report.directions:
        where = (
            f" at {d.gap_start_ms:.1f}..{d.gap_end_ms:.1f} ms" if d.gap_start_ms is not None else ""
        )
        lines.append(
            f"  {d.source} -> {d.destination}: sent {d.sent} ({d.rate_pps:.0f}/s, late p99 "
            f"{d.late_us_p99:.0f} µs), received {d.received}, lost {d.lost}, dup "
            f"{d.duplicates}, reordered {d.reordered}; longest gap {d.longest_gap_ms:.1f} ms "
            f"({d.gap_lost} lost in it){where}"
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vportd_lab.bed.probe", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="probe between two namespaces and report")
    run.add_argument("a", metavar="A_NETNS:A_IP", help="'-:IP' for the root namespace")
    run.add_argument("b", metavar="B_NETNS:B_IP")
    run.add_argument("--duration", type=float, default=5.0, help="seconds (default 5)")
    run.add_argument("--json", metavar="FILE", help="write the full report there ('-': stdout)")
    end = commands.add_parser("endpoint", help="one end, inside its namespace (used by Probe)")
    end.add_argument("--bind", required=True)
    end.add_argument("--peer", required=True)
    end.add_argument("--nonce", type=int, required=True)
    end.add_argument("--max-burst", type=int, default=MAX_BURST)
    end.add_argument("--drain", type=float, default=DRAIN)
    end.add_argument("--no-realtime", dest="realtime", action="store_false")
    for sub in (run, end):
        sub.add_argument("--port", type=int, default=DEFAULT_PORT)
        sub.add_argument("--interval", type=float, default=DEFAULT_INTERVAL, help="seconds")
        sub.add_argument("--series-bin", type=float, help="seconds per series bin (e.g. 0.01)")
    return parser


def _split(spec: str) -> tuple[str | None, str]:
    netns, sep, ip = spec.rpartition(":")
    if not sep or not ip:
        raise SystemExit(f"expected NETNS:IP, got {spec!r}")
    return (None if netns in ("", "-") else netns), ip


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "endpoint":
        endpoint(
            args.bind, args.peer, args.port, args.interval, nonce=args.nonce,
            max_burst=args.max_burst, drain=args.drain, series_bin=args.series_bin,
            realtime=args.realtime,
        )  # fmt: skip
        return 0
    try:
        report = run_probe(
            *_split(args.a), *_split(args.b), args.duration,
            port=args.port, interval=args.interval, series_bin=args.series_bin,
        )  # fmt: skip
    except ProbeError as err:
        print(f"probe: {err}", file=sys.stderr)
        return 1
    if args.json == "-":
        print(report.to_json(indent=1))
    else:
        print(summary(report))
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                f.write(report.to_json(indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
