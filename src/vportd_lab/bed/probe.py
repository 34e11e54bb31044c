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
import json
import os
import secrets
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from vportd_lab.bed.commands import tool
from vportd_lab.bed.probe_end import DRAIN, MAX_BURST, endpoint
from vportd_lab.bed.probe_report import DirectionReport, Gap, ProbeReport, to_ms

DEFAULT_PORT = 47123
DEFAULT_INTERVAL = 0.001
READY_TIMEOUT = 15.0  # s for an end to start (interpreter start-up on a loaded machine)
START_LEAD = 0.05  # s between `start` and packet 0, so both ends get the line in time


class ProbeError(RuntimeError):
    """The probe could not run; the message says which end and why."""


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
            duration_ms=to_ms(min(a["stopped_ns"], b["stopped_ns"]) - self.t0_ns),
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
