"""The migration downtime benchmark's cases, knobs and results (`bench.migration` runs
them, `bench.migration_report` reports them)."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vportd_lab.bed.plan import AWARE, NAIVE, OVERLAY, PATCH, STANDALONE

RESULTS = Path("bench-results") / "migration.json"
PLOT = Path("docs") / "bench" / "migration-downtime.png"
HEADING = "## Migration downtime: aware, naive, standalone; silent VMs; the overlay"
RUNS = 10
WINDOW_MS = (-100, 500)  # the plot and the stored series, ms from the switchover start
PLOT_BIN_MS = 5
GOAL_EXCESS_MS = 5.0  # aware, median (issue 5)
GOAL_HANDSHAKE_P99_MS = 25.0
GOAL_EXCESS_MEDIAN_MS, GOAL_EXCESS_WORST_MS = 1.0, 3.0  # every aware case (issue 15)


@dataclass(frozen=True)
class Case:
    """What a lab of the suite runs: the controllers' mode, the fabric, and whether the VM
    announces itself after the switchover."""

    name: str
    mode: str  # plan.MODES
    fabric: str = PATCH
    silent: bool = False  # no GARP or RARP: only the VM's own traffic

    @property
    def notifies(self) -> bool:
        return self.mode == AWARE


CASES = (
    Case("aware", AWARE), Case("naive", NAIVE), Case("standalone", STANDALONE),
    Case("aware, silent", AWARE, silent=True), Case("overlay aware", AWARE, OVERLAY),
    Case("overlay aware, silent", AWARE, OVERLAY, silent=True),
)  # fmt: skip


@dataclass(frozen=True)
class Phases:
    """The emulation's knobs, the same in every mode (lab migrate's defaults)."""

    precopy: float = 1.0  # s
    pause_ms: float = 50.0  # stop-and-copy
    settle: float = 0.3  # s the probe runs on after the source delete
    warmup: int = 1  # unmeasured migrations per mode first


@dataclass
class Run:
    """One measured migration; ms. The series: received packets per 1 ms, WINDOW_MS around
    the switchover start (bin 0 = the ms in which the switchover started)."""

    mode: str
    n: int
    source: str
    destination: str
    handshake_ms: float
    switchover_gap_ms: float
    longest_gap_ms: float
    longest_gap_ab_ms: float
    longest_gap_ba_ms: float
    excess_ms: float
    lost_ab: int
    lost_ba: int
    converged_ms: float
    source_delete_ms: float  # the end of the source delete, from the switchover start (approx.)
    gap_ab: tuple[float, float] | None  # the longest gap's start and end, from the switchover
    gap_ba: tuple[float, float] | None  # start (None: fewer than two packets arrived)
    series_ab: list[int] = field(default_factory=list)
    series_ba: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Spread:
    min: float
    median: float
    max: float

    @staticmethod
    def of(values: list[float]) -> Spread:
        return Spread(min(values), statistics.median(values), max(values))


@dataclass
class ModeResult:
    mode: str  # the case's name
    runs: list[Run]
    seconds: float  # wall time: lab up, warm-up, runs, lab down
    fabric: str = PATCH
    silent: bool = False

    def spread(self, metric: Callable[[Run], float]) -> Spread:
        return Spread.of([metric(r) for r in self.runs])

    @property
    def representative(self) -> Run:
        """The run with the median longest gap (the lower one of two)."""
        ranked = sorted(self.runs, key=lambda r: r.longest_gap_ms)
        return ranked[(len(ranked) - 1) // 2]


@dataclass
class Result:
    date: str
    command: str
    machine: dict[str, str]
    phases: Phases
    runs: int
    modes: list[ModeResult]
    seconds: float
