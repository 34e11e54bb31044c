"""The cluster benchmark's sizes and results, part by part."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vportd_lab.bench.stats import Dist

RESULTS = Path("bench-results") / "cluster.json"  # the raw results, next to the Markdown file
MIGRATIONS = 1000
PROPAGATION = 500
STORM = 10_000
SWITCHES = 20
FAILOVERS = 5


@dataclass
class Handshake:
    via: str  # "leader" or "follower"
    migrations: int
    latency: Dist  # POST sent → 201 received, ms
    abort: Dist  # DELETE sent → 200 received, ms
    conflicts: int  # 409s retried (a VM's roll-back not over yet)


@dataclass
class Propagation:
    ports: int
    cluster: Dist  # master's entry → the last other controller's entry
    end_to_end: Dist  # ovs-vsctl started → the last controller's entry
    master: Dist  # ovs-vsctl started → the master's entry
    first_by: dict[str, int]  # on the other controllers: which path brought it first


@dataclass
class Storm:
    ports: int
    switches: int
    transactions: int
    seconds: float  # first OVSDB transaction started → every entry in every table
    vsctl_seconds: float  # first OVSDB transaction started → last one returned
    per_controller: dict[str, float]  # first transaction started → its last entry
    cpu: dict[str, float] = field(default_factory=dict)  # CPU s per process (kind) meanwhile
    calm: StormCalm | None = None  # what the storm did to the cluster's roles and loops
    rss_growth: dict[str, int] = field(default_factory=dict)  # bytes, per controller

    @property
    def rate(self) -> float:
        return self.ports / self.seconds if self.seconds > 0 else 0.0


@dataclass
class StormCalm:
    """Whether a storm shook the cluster: roles that moved, and how late each controller's
    event loop ran (from its `vportd_event_loop_lag_seconds`, sampled each 0.1 s)."""

    masters_moved: int  # bridges whose master after the storm is not the one before
    leader_kept: bool
    lag_bound: dict[str, float]  # the longest lag's histogram bucket (upper bound, s)
    lags_over_1s: dict[str, int]  # samples later than 1 s
    # Migrations notified while the storm ran (one after another, via leader and a
    # follower in turn): notify sent -> 201, ms; and those not answered 201.
    handshakes: Dist | None = None
    handshake_failures: list[str] = field(default_factory=list)


@dataclass
class StormFloor:
    """The same storm on a fresh fabric with no controller and no etcd: what the OVS
    processes cost by themselves, the part of the machine no controller can have."""

    ports: int
    transactions: int
    seconds: float  # first OVSDB transaction started → last one returned
    settled: float  # first transaction started → the OVS processes quiet again
    cpu: dict[str, float] = field(default_factory=dict)  # CPU s per kind, until settled


@dataclass
class Failover:
    seconds: list[float]  # kill → first 201, per run
    elected: list[float]  # kill → a live controller names a new leader, per run (polled)
    attempts: list[int]  # notifies sent until the 201, per run


@dataclass
class Result:
    machine: dict[str, str]
    command: str
    handshakes: list[Handshake] = field(default_factory=list)
    propagation: Propagation | None = None
    failover: Failover | None = None
    storm: Storm | None = None
    storm_floor: StormFloor | None = None
    wall_seconds: float = 0.0
    one_ovs: bool = False
    ovsdb_sessions: dict[str, int] = field(default_factory=dict)  # controller → live sessions
    hypervisors: int = 0


@dataclass(frozen=True)
class Sizes:
    migrations: int = MIGRATIONS
    propagation: int = PROPAGATION
    storm: int = STORM
    switches: int = SWITCHES
    failovers: int = FAILOVERS
    one_ovs: bool = False  # every bridge on one OVS (--one-ovs), not one OVS each
