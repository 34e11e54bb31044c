"""The core benchmark's result, and how it reads: a summary for the terminal, a Markdown section."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vportd_lab.bench.core.workload import CONCURRENCY, DELIVER_EVERY, TICK_EVERY
from vportd_lab.bench.doc import notes

SECTION = "## Core: port events on an in-process cluster"


@dataclass
class Result:
    command: str
    events: int
    switches: int
    controllers: int
    fabric: str
    seed: int
    build_seconds: float
    precompute_seconds: float
    wall_seconds: float
    cpu_seconds: float
    gc_seconds: float
    gc_collections: dict[int, int]
    steps: int
    port_events: dict[str, int]
    notifies: int
    aborts: int
    messages_delivered: int
    flow_mods: int
    ops: dict[str, int]
    outcomes: dict[str, int]
    errors: dict[str, int]
    per_controller: dict[str, dict[str, Any]]
    memory: dict[str, Any]
    machine: dict[str, str]
    date: str
    goals: list[dict[str, Any]]


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def summary(r: Result) -> str:
    lines = [
        f"vportd core bench: {r.events:,} port events, {r.switches:,} switches, "
        f"{r.controllers} controllers",
        f"  wall {r.wall_seconds:.2f} s ({r.events / r.wall_seconds:,.0f} port events/s overall, "
        f"{100 * r.cpu_seconds / r.wall_seconds:.0f}% of a core, GC {r.gc_seconds:.2f} s), "
        f"precompute {r.precompute_seconds:.2f} s, cluster build {r.build_seconds:.2f} s",
    ]
    for cid, c in r.per_controller.items():
        lead = " (leader)" if c["leader"] else ""
        lines.append(
            f"  {cid}{lead}: {c['events']:,} events in {c['seconds']:.2f} s = "
            f"{c['events_per_second']:,.0f} events/s (GC {c['gc_seconds']:.2f} s), "
            f"{c['flow_mods']:,} flow mods"
        )
    m = r.memory
    lines.append(
        f"  memory: {m['live_vports']:,} live vPorts; worst controller "
        f"{m['worst_bytes_per_vport']:,.0f} B/vPort (table + flows); whole cluster "
        f"{_mib(m['cluster_bytes'])} = {m['cluster_bytes_per_vport']:,.0f} B/vPort"
    )
    for g in r.goals:
        verdict = "PASS" if g["pass"] else "FAIL"
        lines.append(f"  {verdict}: {g['goal']}: {g['measured']:,} (goal {g['target']})")
    return "\n".join(lines)


def _without_gc(r: Result) -> str:
    rates = []
    for cid, c in r.per_controller.items():
        busy = c["seconds"] - c["gc_seconds"]
        rates.append(f"{cid} {c['events'] / busy if busy > 0 else 0.0:,.0f} events/s")
    return ", ".join(rates)


def markdown(r: Result) -> str:
    m = r.memory
    mach = r.machine
    out = [
        SECTION,
        "",
        f"Command: {r.command}  ",
        f"Date: {r.date}, commit `{mach['commit']}`  ",
        f"Machine: {mach['platform']}; {mach['cpu']}, {mach['cores']} cores; {mach['python']}; "
        f"load average {mach['load_average']}",
        "",
        "| goal | target | measured | result |",
        "|---|---:|---:|---|",
    ]
    for g in r.goals:
        verdict = "**pass**" if g["pass"] else "**FAIL**"
        out.append(f"| {g['goal']} | {g['target']} | {g['measured']:,} | {verdict} |")
    total_pe = sum(r.port_events.values())
    kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(r.port_events.items()))
    ops = ", ".join(f"{k} {v:,}" for k, v in sorted(r.ops.items(), key=lambda kv: -kv[1]))
    outcomes = ", ".join(f"{k} {v:,}" for k, v in r.outcomes.items())
    errors = ", ".join(f"{k} {v:,}" for k, v in r.errors.items()) or "none"
    out += [
        "",
        "**Set-up.** "
        f"Fabric: {r.fabric}; VMs on hypervisors only. `Topology.precompute()` "
        f"took {r.precompute_seconds:.2f} s on the fabric's own topology and building "
        f"the cluster (every switch connected, base flows) {r.build_seconds:.2f} s, both "
        "before timing; each controller's topology fills its caches during the run. "
        f"{r.controllers} `Controller`s in one process (`SimCluster`, no fake data "
        "plane: flow mods are counted, not applied), switches spread round robin, "
        "c0 leading; the records the sim's store of record brings every controller, "
        "and the leader's vPort syncs and their answers, go through the sim's FIFO "
        "queue, delivered "
        f"every {DELIVER_EVERY} workload steps; the clock moves 1 s, with a `tick` "
        f"of every controller, every {TICK_EVERY} steps.",
        "",
        "**Workload** (seed "
        f"{r.seed}, deterministic): a VM manager with up to {CONCURRENCY} operations in "
        f"flight, interleaved one action at a time, {r.steps:,} steps. Operations: {ops}. "
        "Boot = add, modify up; migrate = leader notify, vPort syncs, both sync-complete "
        "answers, then add at the destination, (30%) modify down at the source, modify up "
        "at the destination (activation), delete at the source; flap = modify down, up; "
        "remove = (50%) modify down, delete; abort = notify, answers, (60%) add at the "
        "destination, abort, delete of the destination port; address = modify with a new "
        f"IP. Outcomes: {outcomes}. Refused requests: {errors}.",
        "",
        f"Port events: {total_pe:,} ({kinds}); plus {r.notifies:,} notifies and "
        f"{r.aborts:,} aborts; {r.messages_delivered:,} records and messages delivered; "
        f"{r.flow_mods:,} flow mods generated.",
        "",
        f"Wall time of the run: {r.wall_seconds:.2f} s, i.e. {total_pe / r.wall_seconds:,.0f} "
        "port events/s for the whole cluster on one core (this includes the workload "
        "generator and the message queue). The process used "
        f"{r.cpu_seconds:.2f} s of CPU in that time ({100 * r.cpu_seconds / r.wall_seconds:.0f}% "
        "of a core): the timings are wall-clock (`time.perf_counter`), so other load on "
        "the machine inflates them.",
        "",
        "**Per controller.** Time is measured around each call into the controller "
        "(`port_event`, `stored`, `vport_sync`, `sync_answered`, `notify`, `abort`, `tick`); "
        "its events are the port events of its own switches plus the records the store's "
        "watch brought it, its own writes among them (handshake messages, notifies and "
        "ticks cost time but count no event). "
        f"The cyclic GC paused the run {r.gc_seconds:.2f} s in all (collections per "
        f"generation: {r.gc_collections}); a pause lands in whichever call allocates "
        "when it is due, so it is shown apart. The GC runs with its default "
        "thresholds and nothing frozen (`gc.freeze()` is a daemon's lever, not used "
        "here), and the pauses count in events/s. One process holds the three "
        "controllers and the workload's own objects, so a full collection here scans "
        "all of them, about three times what a controller process of its own would "
        f"scan. Without the pauses, for information only: {_without_gc(r)}.",
        "",
        "| controller | switches | own port events | store updates | handshake msgs "
        "| time in controller | port_event / stored + syncs / notify + abort / tick "
        "| of which GC | events/s | flow mods |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for cid, c in r.per_controller.items():
        lead = " (leader)" if c["leader"] else ""
        by = c["seconds_by_call"]
        split = " / ".join(
            f"{sum(by.get(k, 0.0) for k in keys):.2f}"
            for keys in (
                ("port_event",),
                ("stored", "vport_sync", "sync_answered"),
                ("notify", "abort"),
                ("tick",),
            )
        )
        out.append(
            f"| {cid}{lead} | {c['switches']:,} | {c['own_port_events']:,} | "
            f"{c['store_updates']:,} | {c['handshake_messages']:,} | {c['seconds']:.2f} s | "
            f"{split} | {c['gc_seconds']:.2f} s | {c['events_per_second']:,.0f} | "
            f"{c['flow_mods']:,} |"
        )
    out += [
        "",
        "**Memory.** Measured after the run with `tracemalloc`: the bytes allocated to "
        "rebuild a `Controller` from a pickle of it, its `Topology` and the leader's "
        "coordinator left out (by type): its `table` (vPort records, tombstones included), "
        "`flows` (the flow compiler: installed flows of its switches, a VM's forwarding "
        "flow held as MAC -> port, where each VM's flows are, local ports) and mastership; "
        "`table` leaves the compiler out too, `flows` the table; a controller "
        "process of its own holds exactly those objects. Cross-check: `sys.getsizeof` "
        "summed over the live objects reachable from the same roots (counts dict slack "
        f"too). Per vPort = bytes / live vPorts ({m['live_vports']:,} live, "
        f"{m['tombstones']:,} tombstones of removed VMs). The compiler holds each "
        "VM's current entry (shared with the table), so `flows` alone counts those "
        "records too and table + flows is less than the sum.",
        "",
        "| controller | table | flows | table + flows | per vPort | cross-check "
        "(getsizeof walk) | coordinator |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    live = max(1, m["live_vports"])
    for cid, c in m["per_controller"].items():
        out.append(
            f"| {cid} | {_mib(c['table_traced'])} | {_mib(c['flows_traced'])} | "
            f"{_mib(c['state_traced'])} | {c['state_traced'] / live:,.0f} B | "
            f"{c['state_walked'] / live:,.0f} B | "
            f"{_mib(c['coordinator_traced']) if c['coordinator_traced'] else '-'} |"
        )
    out += [
        "",
        f"Whole cluster in this process (every `Controller` object, records shared "
        f"between the controllers as the sim shares them): {_mib(m['cluster_bytes'])}, "
        f"{m['cluster_bytes_per_vport']:,.0f} B per live vPort, topologies left out; "
        f"one controller's topology (with its caches) another {_mib(m['topology_bytes'])}.",
        "",
        notes("core"),
        "",
    ]
    return "\n".join(out)
