"""Latency distributions for the benchmarks' reports."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Dist:
    """A latency distribution, in milliseconds (nearest-rank percentiles)."""

    n: int
    p50: float
    p90: float
    p99: float
    max: float
    mean: float

    @staticmethod
    def of(seconds: list[float]) -> Dist:
        ms = sorted(s * 1000 for s in seconds)
        if not ms:
            return Dist(0, 0.0, 0.0, 0.0, 0.0, 0.0)

        def rank(q: float) -> float:
            return ms[max(0, math.ceil(q * len(ms)) - 1)]

        return Dist(len(ms), rank(0.5), rank(0.9), rank(0.99), ms[-1], statistics.fmean(ms))
