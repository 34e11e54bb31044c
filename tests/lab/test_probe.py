"""The traffic probe (`vportd_lab.bed.probe`): its arithmetic, then real runs between namespaces.

The namespaces are joined by a veth pair directly, without Open vSwitch (the
machine's one userspace datapath belongs to whoever runs a lab). Every name
carries the test process's pid and a counter, and the namespaces are deleted
whatever happens. Wall-clock bounds are generous: the tests assert relations
(the longest gap covers the outage, packets were lost), not timings.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from vportd_lab.bed import netns
from vportd_lab.bed.commands import run
from vportd_lab.bed.probe import Probe, ProbeError
from vportd_lab.bed.probe_end import Sender
from vportd_lab.bed.probe_report import (
    DirectionReport,
    ProbeReport,
    longest_gaps,
    percentile,
    sequence_counts,
    time_series,
)

# With `@pytest.mark.root` on each test that makes namespaces (the others need nothing).
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, veths)")

INTERVAL = 0.001
_names = itertools.count()


# -- arithmetic (no namespaces) -------------------------------------------------
def test_sequence_counts_tell_duplicates_from_reordering() -> None:
    assert sequence_counts([0, 1, 2, 3]) == (4, 0, 0)
    assert sequence_counts([0, 2, 1, 3, 3, 1]) == (4, 2, 1)
    assert sequence_counts([]) == (0, 0, 0)


def test_longest_gaps_are_measured_between_consecutive_arrivals() -> None:
    t0 = 1_000_000_000
    arrivals = [t0 + ms * 1_000_000 for ms in (1, 2, 3, 50, 51, 60)]
    seqs = [0, 1, 2, 7, 8, 9]  # 3..6 lost in the first gap; the second is a sender's stall
    first, second = longest_gaps(arrivals, seqs, t0, keep=2)
    assert (first.start_ms, first.end_ms, first.length_ms, first.lost) == (3.0, 50.0, 47.0, 4)
    assert (second.start_ms, second.end_ms, second.lost) == (51.0, 60.0, 0)
    assert longest_gaps(arrivals[:1], seqs[:1], t0, keep=3) == []


def test_time_series_counts_arrivals_per_bin_from_t0() -> None:
    t0 = 5_000
    series = time_series([t0 + 1, t0 + 9, t0 + 10, t0 + 35], t0, bin_ns=10, end_ns=t0 + 50)
    assert series == [2, 1, 0, 1, 0]
    assert time_series([t0 + 70], t0, bin_ns=10, end_ns=t0 + 20) == [0] * 7 + [1]


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile([], 99) == 0.0


def test_a_late_sender_catches_up_in_a_bounded_burst_and_skips_older_slots() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        rx.bind(("127.0.0.1", 0))
        interval = 1_000_000
        now = time.monotonic_ns()
        sender = Sender(tx, rx.getsockname(), 7, now - 20 * interval, interval, max_burst=5)
        sender.tick(now)  # 21 slots are due (0..20): 5 go, 16 are skipped
        assert (sender.sent, sender.skipped, sender.slot) == (5, 16, 21)
        assert sender.late_ns[0] >= 20 * interval  # the stall, measured before the skip
        sender.tick(now)  # nothing more is due
        assert sender.sent == 5
        sender.tick(now + interval)
        assert (sender.sent, sender.skipped) == (6, 16)


def test_a_report_survives_json() -> None:
    direction = DirectionReport(
        source="a/10.0.0.1", destination="b/10.0.0.2", sent=10, received=9, lost=1,
        duplicates=0, reordered=0, send_errors=1, skipped_slots=0, rate_pps=1000.0,
        late_us_p50=40.0, late_us_p99=150.0, late_us_max=200.0, longest_gap_ms=2.0,
        gap_start_ms=4.0, gap_end_ms=6.0, gap_lost=1, first_rx_ms=0.01, last_rx_ms=9.0,
        latency_ms_p50=0.01, latency_ms_max=0.02, series=[1, 1, 0, 1],
    )  # fmt: skip
    report = ProbeReport(
        interval_ms=1.0, t0_ns=123, duration_ms=10.0, series_bin_ms=1.0, rx_clock="kernel",
        sched="fifo", clock_stepped=False, a_to_b=direction, b_to_a=direction,
    )  # fmt: skip
    assert ProbeReport.from_json(report.to_json()) == report
    assert report.longest_gap_ms == 2.0 and report.lost == 2


# -- real runs between two namespaces -------------------------------------------
@dataclass
class Pair:
    a: str
    b: str
    a_ip: str = "10.250.0.1"
    b_ip: str = "10.250.0.2"


def _join(pair: Pair) -> None:
    """One veth, `eth0` in each namespace: no name in the root namespace can clash."""
    run(["ip", "-n", pair.a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
         "netns", pair.b])  # fmt: skip
    for ns, ip in ((pair.a, pair.a_ip), (pair.b, pair.b_ip)):
        netns.disable_ipv6(ns)  # no DAD/MLD chatter
        run(["ip", "-n", ns, "link", "set", "dev", "lo", "up"])
        run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0"])
        netns.tx_offload_off("eth0", ns)  # DESIGN §5: what the lab's VMs need, so ours too
        run(["ip", "-n", ns, "link", "set", "dev", "eth0", "up"])


@pytest.fixture
def pair() -> Iterator[Pair]:
    tag = f"vprobe{os.getpid()}x{next(_names)}"
    made = Pair(a=f"{tag}a", b=f"{tag}b")
    try:
        netns.add_namespace(made.a)
        netns.add_namespace(made.b)
        _join(made)
        yield made
    finally:
        for ns in (made.a, made.b):
            if ns in netns.namespaces():
                netns.delete_namespace(ns)


def _probe(pair: Pair, seconds: float, series_bin: float | None = None) -> ProbeReport:
    with Probe(
        pair.a, pair.a_ip, pair.b, pair.b_ip, 47123, interval=INTERVAL, series_bin=series_bin
    ) as p:
        p.start()
        time.sleep(seconds)
        return p.stop()


@pytest.mark.root
@root_only
def test_steady_traffic_loses_nothing(pair: Pair) -> None:
    seconds = 1.5
    report = _probe(pair, seconds, series_bin=0.01)

    assert report.rx_clock == "kernel" and not report.clock_stepped
    for d in report.directions:
        assert (d.lost, d.duplicates, d.reordered, d.send_errors) == (0, 0, 0, 0), d
        assert d.received == d.sent
        assert 0.5 * seconds / INTERVAL < d.sent <= 1.1 * seconds / INTERVAL, d
        assert 0 < d.longest_gap_ms < 200, d  # a loaded machine stalls a sender for ms, not this
        assert d.series is not None and sum(d.series) == d.received
        assert d.first_rx_ms is not None and d.last_rx_ms is not None
        assert 0 <= d.first_rx_ms < d.last_rx_ms <= report.duration_ms + 1000
    assert ProbeReport.from_json(report.to_json()) == report


@dataclass
class Outage:
    """CLOCK_MONOTONIC ns around `ip link set down` (t1..t2) and `up` (t3..t4)."""

    t1: int = 0
    t2: int = 0
    t3: int = 0
    t4: int = 0

    def take(self, ns: str, after: float, down_for: float) -> None:
        time.sleep(after)
        self.t1 = time.monotonic_ns()
        run(["ip", "-n", ns, "link", "set", "dev", "eth0", "down"])
        self.t2 = time.monotonic_ns()
        time.sleep(down_for)
        self.t3 = time.monotonic_ns()
        run(["ip", "-n", ns, "link", "set", "dev", "eth0", "up"])
        self.t4 = time.monotonic_ns()


@pytest.mark.root
@root_only
def test_a_link_outage_is_the_longest_gap_in_both_directions(pair: Pair) -> None:
    outage = Outage()
    with Probe(pair.a, pair.a_ip, pair.b, pair.b_ip, 47123, interval=INTERVAL) as probe:
        t0 = probe.start()
        taker = threading.Thread(target=outage.take, args=(pair.a, 0.6, 0.2))
        taker.start()
        taker.join()
        time.sleep(0.6)
        report = probe.stop()

    def ms(t: int) -> float:
        return (t - t0) / 1e6

    surely_down = (outage.t3 - outage.t2) / 1e6  # the link was down at least this long
    at_most = (outage.t4 - outage.t1) / 1e6  # and at most this long
    assert surely_down >= 150
    for d in report.directions:
        assert d.lost >= d.gap_lost > 0, d  # lost in the outage, not a stalled sender
        assert d.gap_start_ms is not None and d.gap_end_ms is not None
        assert d.longest_gap_ms >= surely_down, d
        assert d.gap_start_ms <= ms(outage.t2) and d.gap_end_ms >= ms(outage.t3), d
        assert d.longest_gap_ms < at_most + 500, d  # generous: ARP again, a late sender
        assert d.received > 0 and d.last_rx_ms is not None and d.last_rx_ms > d.gap_end_ms
    assert report.a_to_b.send_errors > 0  # the sender on the downed link: no route to send on


@pytest.mark.root
@root_only
def test_an_end_that_cannot_start_is_reported_and_nothing_is_left_running(
    pair: Pair,
) -> None:
    probe = Probe(pair.a, "10.99.99.99", pair.b, pair.b_ip, 47123)  # not an address of a
    with pytest.raises(ProbeError, match=pair.a):
        probe.start()
    assert netns.pids_in(pair.a) == [] and netns.pids_in(pair.b) == []


@pytest.mark.root
@root_only
def test_a_stop_right_after_start_still_reports(pair: Pair) -> None:
    with Probe(pair.a, pair.a_ip, pair.b, pair.b_ip, 47123) as probe:
        probe.start()
        report = probe.stop()
    for d in report.directions:
        assert d.lost == d.sent - d.received >= 0 and d.duplicates == 0


@pytest.mark.root
@root_only
def test_the_command_line_prints_a_summary(pair: Pair) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vportd_lab.bed.probe", "run", f"{pair.a}:{pair.a_ip}",
         f"{pair.b}:{pair.b_ip}", "--duration", "0.5", "--json", "-"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = ProbeReport.from_json(done.stdout)
    assert report.a_to_b.received > 0 and report.b_to_a.received > 0
