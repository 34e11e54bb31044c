"""What the traffic probe reports, per direction and in all, and the arithmetic behind it.

Times are in ms from the probe's t0 (the scheduled time of packet 0, on
CLOCK_MONOTONIC); the computations are pure, tested without namespaces.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


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
        Gap(to_ms(rx_ns[i - 1] - t0_ns), to_ms(rx_ns[i] - t0_ns), max(0, seqs[i] - seqs[i - 1] - 1))
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


def to_ms(ns: int | float) -> float:
    """Nanoseconds as milliseconds, to the µs."""
    return round(ns / 1e6, 3)
