"""The cluster benchmark's named figures: one JSON object, the run's last line of output.

The names are the scale-out issue's (and BENCHMARKS.md's table's); a figure a
run did not measure (a part left out with `--only`) is null.
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from vportd_lab.bed.cluster import Cluster, Node
from vportd_lab.bench.cluster.bed import BenchFabric
from vportd_lab.bench.cluster.results import Result, Storm


def figures(r: Result) -> dict[str, Any]:
    s, shakes = r.storm, r.handshakes
    return {
        "hypervisors": r.hypervisors,
        "storm_ports_per_s": None if s is None else round(s.rate, 1),
        "storm_cpu_us_per_port_max": None if s is None else _busiest_us_per_port(s),
        "storm_floor_ovs_cpu_s": _floor_cpu(r),
        "ovsdb_sessions": r.ovsdb_sessions,
        "handshake_p50_ms": _worst(shakes, "p50"),
        "handshake_p99_ms": _worst(shakes, "p99"),
        "handshake_in_storm_p99_ms": _in_storm_p99(s),
        "propagation_p99_ms": None if r.propagation is None else r.propagation.cluster.p99,
        "failover_s": _failover(r),
        "bytes_per_vport": None if s is None else _bytes_per_vport(s),
    }


def figures_line(r: Result) -> str:
    return json.dumps(figures(r))


def _busiest_us_per_port(s: Storm) -> float | None:
    mine = [v for k, v in s.cpu.items() if k in s.per_controller]
    return round(max(mine) / s.ports * 1e6, 1) if mine and s.ports else None


def _floor_cpu(r: Result) -> float | None:
    return None if r.storm_floor is None else round(sum(r.storm_floor.cpu.values()), 2)


def _worst(shakes: list[Any], field: str) -> float | None:
    """Of the handshakes via the leader and via a follower, the slower's percentile."""
    return max((getattr(h.latency, field) for h in shakes), default=None)


def _in_storm_p99(s: Storm | None) -> float | None:
    if s is None or s.calm is None or s.calm.handshakes is None:
        return None
    return s.calm.handshakes.p99


def _failover(r: Result) -> float | None:
    if r.failover is None or not r.failover.seconds:
        return None
    return round(statistics.median(r.failover.seconds), 3)


def _bytes_per_vport(s: Storm) -> int | None:
    """The busiest controller's resident memory growth over the storm, per port it added."""
    grown = max(s.rss_growth.values(), default=None)
    return None if grown is None or not s.ports else round(grown / s.ports)


async def ovsdb_sessions(c: Cluster[BenchFabric]) -> dict[str, int]:
    """Each live controller's OVSDB sessions, from its `vportd_ovsdb_sessions` gauge."""
    return {node.id: await _sessions(node) for node in c.live()}


async def _sessions(node: Node) -> int:
    async with node.client() as client:
        text = (await client.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        if family.name == "vportd_ovsdb_sessions":
            return int(sum(sample.value for sample in family.samples))
    return 0
