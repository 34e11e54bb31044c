"""The cluster benchmark's report: a summary for the terminal, a Markdown section."""

from __future__ import annotations

import math
import os
import statistics
import time

from vportd_lab.bed.cluster import NodeSettings
from vportd_lab.bench.cluster.failover import RETRY_EVERY
from vportd_lab.bench.cluster.figures import figures
from vportd_lab.bench.cluster.handshake import ROTATION
from vportd_lab.bench.cluster.results import (
    RESULTS,
    Failover,
    Result,
    Storm,
    StormCalm,
    StormFloor,
)
from vportd_lab.bench.cluster.storm import STORM_POLL, STORM_TRANSACTION
from vportd_lab.bench.doc import notes
from vportd_lab.bench.stats import Dist

SECTION = "## Cluster: 3 controllers, etcd and OVS on loopback"
GOALS = {
    "handshake_p50": 5.0, "handshake_p99": 15.0, "propagation_p99": 10.0, "storm": 2000.0,
    "storm_stall": 1.0, "storm_handshake_p99": 100.0, "storm_cpu_us": 75.0, "failover": 3.5,
    "bytes_per_vport": 1024.0, "sessions_share": 0.5,
}  # fmt: skip
CORES = os.cpu_count() or 1
LEASE_TTL = NodeSettings().lease_ttl


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "**FAIL**"


def _goal_rows(r: Result) -> list[str]:
    rows = []
    for h in r.handshakes:
        rows += [
            f"| handshake via the {h.via}, p50 | ≤ {GOALS['handshake_p50']:g} ms | "
            f"{h.latency.p50:.1f} ms | {_verdict(h.latency.p50 <= GOALS['handshake_p50'])} |",
            f"| handshake via the {h.via}, p99 | ≤ {GOALS['handshake_p99']:g} ms | "
            f"{h.latency.p99:.1f} ms | {_verdict(h.latency.p99 <= GOALS['handshake_p99'])} |",
        ]
    if r.propagation is not None:
        p = r.propagation
        rows += [
            f"| port event, master's entry → every controller, p99 | ≤ "
            f"{GOALS['propagation_p99']:g} ms | {p.cluster.p99:.1f} ms | "
            f"{_verdict(p.cluster.p99 <= GOALS['propagation_p99'])} |",
            f"| same from `ovs-vsctl add-port` started, p99 (for reference) | ≤ "
            f"{GOALS['propagation_p99']:g} ms | {p.end_to_end.p99:.1f} ms | "
            f"{_verdict(p.end_to_end.p99 <= GOALS['propagation_p99'])} |",
        ]
    if r.storm is not None:
        rows.append(
            f"| boot storm, {r.storm.ports:,} ports converged on every controller | ≥ "
            f"{GOALS['storm']:,.0f} ports/s | {r.storm.rate:,.0f} ports/s | "
            f"{_verdict(r.storm.rate >= GOALS['storm'])} |"
        )
        rows += _calm_rows(r.storm.calm)
        rows += _scale_rows(r)
    if r.failover is not None and r.failover.seconds:
        f, goal = r.failover.seconds, GOALS["failover"]
        rows.append(
            f"| leader failover, kill -9 → 201 (min / median / max of {len(f)}) | median ≤ "
            f"{goal:g} s | {min(f):.2f} / {statistics.median(f):.2f} / {max(f):.2f} s | "
            f"{_verdict(statistics.median(f) <= goal)} |"
        )
    return rows


def _scale_rows(r: Result) -> list[str]:
    """What scaling out is judged by: the busiest controller's CPU and memory per port in
    the storm, and how many OVSDB sessions a controller holds (`figures`)."""
    got, rows = figures(r), []
    cpu, mem = got["storm_cpu_us_per_port_max"], got["bytes_per_vport"]
    if cpu is not None:
        goal = GOALS["storm_cpu_us"]
        rows.append(f"| boot storm: busiest controller's CPU per port | ≤ {goal:g} µs | "
                    f"{cpu:.0f} µs | {_verdict(cpu <= goal)} |")  # fmt: skip
    if mem is not None:
        goal = GOALS["bytes_per_vport"]
        rows.append(f"| boot storm: busiest controller's memory growth per port | ≤ {goal:,.0f} "
                    f"B | {mem:,} B | {_verdict(mem <= goal)} |")  # fmt: skip
    if r.ovsdb_sessions:
        most, bound = max(r.ovsdb_sessions.values()), GOALS["sessions_share"] * r.hypervisors
        rows.append(
            f"| OVSDB sessions, the most any controller holds, of {r.hypervisors} hypervisors "
            f"| ≤ {bound:g} | {most} | {_verdict(most <= bound)} |"
        )
    return rows


def _calm_rows(calm: StormCalm | None) -> list[str]:
    """The storm's longest event-loop stall and the handshakes notified during it."""
    if calm is None:
        return []
    stall = max(calm.lag_bound.values())
    rows = [
        f"| boot storm: longest event-loop stall, any controller (bucket bound) | < "
        f"{GOALS['storm_stall']:g} s | ≤ {stall:g} s | "
        f"{_verdict(stall <= GOALS['storm_stall'] and not any(calm.lags_over_1s.values()))} |"
    ]
    h, failed = calm.handshakes, calm.handshake_failures
    p99 = math.inf if h is None or failed else h.p99
    shown = f"{h.p99:.0f} ms" if h is not None else "-"
    shown += f", {len(failed)} not 201" if failed else ""
    rows.append(
        f"| boot storm: notify → 201 during it, p99 | ≤ {GOALS['storm_handshake_p99']:g} ms | "
        f"{shown} | {_verdict(p99 <= GOALS['storm_handshake_p99'])} |"
    )
    return rows


def _dist_row(label: str, d: Dist) -> str:
    cells = (d.p50, d.p90, d.p99, d.max, d.mean)
    return f"| {label} | {d.n} | " + " | ".join(f"{x:.1f}" for x in cells) + " |"


def _latency_md(r: Result) -> list[str]:
    rows = ["| what | n | p50 | p90 | p99 | max | mean |", "|---|---:|---:|---:|---:|---:|---:|"]
    for h in r.handshakes:
        rows.append(_dist_row(f"notify → 201, to the {h.via}", h.latency))
        rows.append(_dist_row(f"abort (DELETE) → 200, to the {h.via}", h.abort))
    if r.propagation is not None:
        p = r.propagation
        rows.append(_dist_row("**master's entry → entry on every other controller**", p.cluster))
        rows.append(_dist_row("`ovs-vsctl add-port` started → master's entry", p.master))
        rows.append(
            _dist_row("`ovs-vsctl add-port` started → entry on every controller", p.end_to_end)
        )
    return rows


def _method_md(r: Result) -> list[str]:
    conflicts = ", ".join(f"{h.via} {h.conflicts}" for h in r.handshakes)
    first = r.propagation.first_by if r.propagation else {}
    return [
        f"**Set-up.** One private etcd 3.4 (one member, 127.0.0.1); {_fabric_md(r)}; 3 `vportd` "
        f'processes (`store.kind = "etcd"`, `lease_ttl = {LEASE_TTL}`, logging at info) each '
        "connected to every bridge; the cluster's mastership spreads the bridges over them. "
        "The bench (`vportd_lab.bench.cluster`, harness `vportd_lab.bed.cluster`) is a fourth "
        "process, the VMM.",
        "",
        f"**Handshake.** {ROTATION} VMs, each on a bridge whose destination is mastered by "
        "another controller (two vPort syncs over REST, each answered after its flows are "
        "confirmed by a barrier). Each migration: `POST /v1/migrations` over a kept-alive "
        "connection, timed to its 201 (`time.perf_counter` in the bench), then aborted with "
        "`DELETE /v1/migrations/{id}` to the same controller; the next migration takes the next "
        "VM of the rotation. Via the follower, the follower relays both requests to the leader. "
        f"409s retried (a VM's roll-back not over yet): {conflicts}.",
        "",
        "**Propagation.** One VM port at a time, `ovs-vsctl add-port ... -- set Interface ... "
        "ofport_request=N external_ids:attached-mac=... iface-id=... vm-id=...` (waiting for "
        "ovs-vswitchd, as libvirt does), round robin over the bridges; the next once every "
        "controller has it. Each controller runs through `python -m vportd_lab.bed.traced` with "
        "`VPORTD_TRACE`, which writes `CLOCK_MONOTONIC` the moment a VM's entry is first in its "
        "table (after the master's `feed` of the OVSDB event, or after `receive` of a peer's "
        "port-event sync or of the etcd watch's record); the bench's own `time.monotonic_ns` "
        "is the same clock, so there is no polling error in the figures (the bench polls "
        "the trace files every 2 ms only to know when to go on). Of the other controllers' "
        f"entries, first brought by: {first}.",
        "",
        "**Failover.** SIGKILL the leader; from that moment the bench sends the notify of a "
        "VM to each live controller in turn (a fresh connection each, 2 s timeout, "
        f"{RETRY_EVERY * 1000:g} ms between rounds) until one answers 201 (a follower relays "
        "it to the new leader once it knows it); that migration is aborted, the killed "
        "controller restarted and the cluster waited for to settle before the next run. "
        "*Elected* is when a live controller's `GET /v1/cluster` first names another leader "
        f"(polled every 10 ms). Both are bounded below by `lease_ttl = {LEASE_TTL}`: the dead "
        "leader's key stays until its lease expires.",
        "",
        f"**Boot storm.** {r.storm.ports if r.storm else 0:,} VM ports, round robin over "
        f"{r.storm.switches if r.storm else 0} bridges, added in "
        f"{r.storm.transactions if r.storm else 0} OVSDB transactions of {STORM_TRANSACTION} "
        "ports each (`ovsdb-client transact`: the Interface and Port rows `ovs-vsctl add-port` "
        "writes, with ofport_request and libvirt's external_ids), one after the other; "
        "`ovs-vsctl` with 500 add-ports in one call took over 20 s once 3,000 ports existed "
        "(it checks every command against the whole database), which would have measured "
        "ovs-vsctl. Converged = the last entry "
        "of the storm in the last controller's table (trace times); the bench polls each "
        f"controller's `/healthz` table size every {STORM_POLL * 1000:g} ms to know when.",
    ]


def _fabric_md(r: Result) -> str:
    if r.one_ovs:
        return (
            "one private Open vSwitch (dummy datapath) with a line of bridges hv0..hv{n-1} "
            "joined by patch ports (`--one-ovs`)"
        )
    return (
        "a line of hypervisors hv0..hv{n-1}, each a private Open vSwitch of its own "
        "(ovsdb-server and ovs-vswitchd, dummy datapath, one bridge), as in production, joined "
        "by links declared in OVSDB (`external_ids:vportd-peer`, as a tunnel port would be); "
        "each controller reads every hypervisor's OVSDB server"
    )


def _failover_md(f: Failover) -> list[str]:
    rows = [
        "| run | kill → 201 | kill → new leader named | notifies sent |",
        "|---:|---:|---:|---:|",
    ]
    for k, (s, e, a) in enumerate(zip(f.seconds, f.elected, f.attempts, strict=True)):
        rows.append(f"| {k + 1} | {s:.3f} s | {e:.3f} s | {a} |")
    return rows


def _storm_md(s: Storm) -> list[str]:
    per = ", ".join(f"{k} {v:.2f} s" for k, v in sorted(s.per_controller.items()))
    cpu = ", ".join(f"{k} {v:.2f} s" for k, v in s.cpu.items())
    total = sum(s.cpu.values())
    return [
        f"Storm: {s.ports:,} ports in {s.seconds:.2f} s = **{s.rate:,.0f} ports/s** "
        f"(the OVSDB transactions took {s.vsctl_seconds:.2f} s of it; each controller's "
        f"last entry: {per}). CPU time used meanwhile (from /proc; every ovs-vswitchd and "
        f"ovsdb-server summed): {cpu}; {total:.1f} s in all, "
        f"{total / s.seconds if s.seconds else 0:.1f} cores busy on average. {_per_port(s)}"
        f"{calm_md(s.calm)}"
    ]


def calm_md(calm: StormCalm | None) -> str:
    if calm is None:
        return ""
    over, bound = calm.lags_over_1s, sorted(calm.lag_bound.items())
    lags = ", ".join(f"{k} ≤ {v:g} s ({over[k]} over 1 s)" for k, v in bound)
    leader = "the leader stayed" if calm.leader_kept else "**the leader changed**"
    return (
        f" Meanwhile {calm.masters_moved} bridges changed master and {leader}. The longest "
        f"event-loop lag each controller sampled (`vportd_event_loop_lag_seconds`, the "
        f"bucket it fell in): {lags}.{_meanwhile_md(calm)}"
    )


def _meanwhile_md(calm: StormCalm) -> str:
    """The migrations notified during the storm."""
    h, failed = calm.handshakes, calm.handshake_failures
    if h is None and not failed:
        return ""
    got = "none answered 201" if h is None else (
        f"notify → 201 p50 {h.p50:.1f} ms, p99 {h.p99:.1f} ms, max {h.max:.1f} ms over {h.n}"
    )  # fmt: skip
    bad = f"; **{len(failed)} not answered 201** (first: {failed[0]})" if failed else ""
    return (
        " Migrations notified one after another during the storm (leader and follower in "
        f"turn, each aborted before the next): {got}{bad}."
    )


def _floor_md(f: StormFloor, goal_rate: float) -> list[str]:
    cpu = ", ".join(f"{k} {v:.2f} s" for k, v in f.cpu.items())
    budget = CORES * f.ports / goal_rate
    return [
        f"Storm floor, the same {f.transactions} transactions on a fresh fabric with no "
        f"controller and no etcd: they took {f.seconds:.2f} s, the OVS processes were quiet "
        f"again {f.settled:.2f} s after the first, and used {cpu} of CPU "
        f"({sum(f.cpu.values()):.1f} s). At {goal_rate:,.0f} ports/s the whole storm must "
        f"fit in {f.ports / goal_rate:.1f} s, {budget:.0f} CPU-seconds on this machine's "
        f"{CORES} cores, of which these take {sum(f.cpu.values()) / budget:.0%} before any "
        "controller, etcd or flow."
    ]


def _per_port(s: Storm) -> str:
    """The controllers' CPU per port, and the rate it would allow on a core each."""
    mine = [v for k, v in s.cpu.items() if k in s.per_controller]
    if not mine or not s.ports:
        return ""
    worst = max(mine) / s.ports
    return (
        f"The busiest controller used {worst * 1e6:.0f} us of CPU per port: on a core of its "
        f"own, its CPU alone would allow about {1 / worst:,.0f} ports/s."
    )


def markdown(r: Result) -> str:
    m = r.machine
    lines = [
        SECTION, "",
        f"Command: {r.command}  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit `{m['commit']}`  ",
        f"Machine: {m['platform']}; {m['cpu']}, {m['cores']} cores; {m['python']}; {m['ovs']}, "
        f"dummy datapath; etcd 3.4; load average {m['load_average']} at the start, "
        f"{m.get('load_average_end', '?')} at the end (1 / 5 / 15 min); "
        f"every process on the same machine, run time {r.wall_seconds:.0f} s",
        "",
        "| goal | target | measured | result |", "|---|---:|---:|---|",
        *_goal_rows(r), "",
        "Latencies, milliseconds:", "",
        *_latency_md(r), "",
    ]  # fmt: skip
    if r.failover is not None:
        lines += ["Leader failover:", "", *_failover_md(r.failover), ""]
    if r.storm is not None:
        lines += [*_storm_md(r.storm), ""]
    if r.storm_floor is not None:
        lines += [*_floor_md(r.storm_floor, GOALS["storm"]), ""]
    lines += [*_method_md(r), "", notes("cluster"), "", f"Raw numbers: `{RESULTS}`."]
    return "\n".join(lines) + "\n"


def summary(r: Result) -> str:
    out = ["cluster:"]
    for h in r.handshakes:
        out.append(
            f"  handshake via {h.via}: p50 {h.latency.p50:.1f} ms, p99 {h.latency.p99:.1f} ms "
            f"({h.migrations} migrations)"
        )
    if r.propagation is not None:
        p = r.propagation
        out.append(
            f"  propagation master -> every controller: p50 {p.cluster.p50:.1f} ms, p99 "
            f"{p.cluster.p99:.1f} ms; from ovs-vsctl p99 {p.end_to_end.p99:.1f} ms"
        )
    if r.failover is not None and r.failover.seconds:
        f = r.failover.seconds
        out.append(
            f"  failover: min {min(f):.2f} s, median {statistics.median(f):.2f} s, "
            f"max {max(f):.2f} s"
        )
    if r.storm is not None:
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in r.storm.cpu.items())
        out.append(f"  boot storm: {r.storm.ports} ports in {r.storm.seconds:.2f} s = "
                   f"{r.storm.rate:,.0f} ports/s; CPU s meanwhile: {cpu}")  # fmt: skip
        if r.storm.calm is not None:
            out.append(f"  storm:{calm_md(r.storm.calm)}")
    if r.storm_floor is not None:
        floor = r.storm_floor
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in floor.cpu.items())
        out.append(f"  storm floor (OVS alone): transactions {floor.seconds:.2f} s, quiet "
                   f"after {floor.settled:.2f} s; CPU s: {cpu}")  # fmt: skip
    return "\n".join(out)
