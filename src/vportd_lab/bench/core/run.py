"""`vportctl bench --suite core`: build the fabric and the cluster, run the workload, measure."""

from __future__ import annotations

import gc
import json
import os
import platform
import subprocess
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from vportd_lab.bench.core.fabric import build_fabric
from vportd_lab.bench.core.memory import measure_memory
from vportd_lab.bench.core.report import Result, markdown, summary
from vportd_lab.bench.core.timed import TimedCluster
from vportd_lab.bench.core.workload import SEED, Workload
from vportd_lab.bench.doc import write_markdown
from vportd_lab.sim.cluster import SimCluster

RESULTS = Path("bench-results") / "core.json"
GOAL_EVENTS_PER_S = 50_000
GOAL_BYTES_PER_VPORT = 1024


def command_line(events: int, switches: int, controllers: int) -> str:
    """The command as Markdown: `make bench` runs the default sizes."""
    cmd = f"`vportctl bench --events {events} --switches {switches} --controllers {controllers}`"
    if (events, switches, controllers) == (100_000, 1000, 3):
        return f"`make bench` (= {cmd})"
    return cmd


def machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except OSError:
        commit = ""
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "load_average": f"{load} (1 / 5 / 15 min, at the start)",
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": str(os.cpu_count() or 0),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "commit": commit or "unknown",
    }


def bench(events: int, switches: int, controllers: int, seed: int = SEED) -> Result:
    """Run the workload and measure; nothing is printed or written."""
    mach = machine()
    fabric = build_fabric(switches)
    topo = fabric.topology
    t0 = time.perf_counter()
    topo.precompute()
    precompute = time.perf_counter() - t0

    t0 = time.perf_counter()
    sim = SimCluster.build(topo, controllers, fabric=False)
    build = time.perf_counter() - t0
    base_mods = sim.flow_mods
    cluster = TimedCluster(sim)
    workload = Workload(cluster, fabric.hypervisors, seed)

    gc.collect()
    cluster.watch_gc()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    try:
        steps = workload.run(events)
    finally:
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        cluster.unwatch_gc()

    per = {
        cid: {
            "switches": s.switches,
            "own_port_events": s.own_events,
            "store_updates": s.store_updates,
            "handshake_messages": s.handshake_messages,
            "events": s.events,
            "seconds": s.total_seconds,
            "seconds_by_call": dict(s.seconds),
            "gc_seconds": s.gc_seconds,
            "calls": dict(s.calls),
            "events_per_second": s.events_per_second,
            "flow_mods": s.flow_mods,
            "leader": sim.controllers[cid].leading,
        }
        for cid, s in cluster.stats.items()
    }
    memory = measure_memory(sim)
    slowest = min(s.events_per_second for s in cluster.stats.values())
    goals = [
        {
            "goal": "events/s per controller (slowest controller)",
            "target": f">= {GOAL_EVENTS_PER_S:,}",
            "measured": round(slowest),
            "pass": slowest >= GOAL_EVENTS_PER_S,
        },
        {
            "goal": "bytes per vPort (one controller's table + flows, worst controller)",
            "target": f"<= {GOAL_BYTES_PER_VPORT:,}",
            "measured": round(memory.worst_bytes_per_vport),
            "pass": memory.worst_bytes_per_vport <= GOAL_BYTES_PER_VPORT,
        },
    ]
    return Result(
        command=command_line(events, switches, controllers),
        events=events,
        switches=switches,
        controllers=controllers,
        fabric=f"{fabric.description}; root of the default routes and flooding: {topo.root}",
        seed=seed,
        build_seconds=build,
        precompute_seconds=precompute,
        wall_seconds=wall,
        cpu_seconds=cpu,
        gc_seconds=cluster.gc_seconds,
        gc_collections=dict(sorted(cluster.gc_collections.items())),
        steps=steps,
        port_events=dict(cluster.port_events),
        notifies=cluster.notifies,
        aborts=cluster.aborts,
        messages_delivered=cluster.deliveries,
        flow_mods=sim.flow_mods - base_mods,
        ops=dict(workload.ops),
        outcomes=dict(workload.outcomes),
        errors=dict(workload.errors),
        per_controller=per,
        memory={
            **asdict(memory),
            "worst_bytes_per_vport": memory.worst_bytes_per_vport,
            "cluster_bytes_per_vport": (
                memory.cluster_bytes / memory.live_vports if memory.live_vports else 0.0
            ),
        },
        machine=mach,
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        goals=goals,
    )


def run_bench(events: int, switches: int, controllers: int, output: Path) -> int:
    result = bench(events, switches, controllers)
    print(summary(result))
    write_markdown(output, markdown(result))
    raw = output.parent / RESULTS
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(asdict(result), indent=2) + "\n")
    print(f"  written: {output}, {raw}")
    return 0
