"""The southbound benchmark's measurements: port latency, flow install, restart, the floor."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from vportd.core.messages import EventKind, Output, PortEvent
from vportd.core.model import PortState
from vportd.node.runtime import Runtime
from vportd_lab.bench.southbound.bed import Bed, BenchController, private_ovs, until, vm_mac
from vportd_lab.bench.southbound.results import Floor, FlowInstall, PortLatency
from vportd_lab.bench.southbound.vmms import VMM, run_process
from vportd_lab.bench.stats import Dist

log = logging.getLogger("vportd_lab.bench.southbound")


@dataclass(frozen=True)
class _Times:
    """One port's moments (monotonic seconds), in the order they usually come."""

    issued: float
    commit: float
    taken: float  # the snapshot that made the entry
    handed: float
    entry: float
    ofport: float
    link_up: float
    entry_up: float
    returned: float  # the VMM's call
    replied: float | None  # the VMM read the transact's reply (OVSDB only)
    from_request: bool


class _Entries:
    """The runtime's port event hook: when each VM's entry appeared, and came up."""

    def __init__(self, ctl: BenchController) -> None:
        self.ctl = ctl
        self.made: dict[str, tuple[float, float, float, bool]] = {}  # at, taken, handed, pending
        self.up: dict[str, float] = {}

    def __call__(self, ev: PortEvent) -> None:
        rec = self.ctl.runtime.core.entry(ev.mac)
        if rec is None:
            return
        now, snap = time.monotonic(), self.ctl.snapshot
        if ev.kind is EventKind.ADD and ev.mac not in self.made:
            row = snap.ifaces.get(ev.port_name or "")
            pending = row is not None and row.pending
            self.made[ev.mac] = (now, snap.taken, self.ctl.handed, pending)
        if rec.port_state is PortState.UP and ev.mac not in self.up:
            self.up[ev.mac] = now


def _watch_port_events(rt: Runtime, entries: _Entries) -> None:
    """Have `entries` see every port event once the core has taken it."""
    take = rt.port_event

    def taken(ev: PortEvent) -> Output[None]:
        out = take(ev)
        entries(ev)
        return out

    rt.port_event = taken  # type: ignore[method-assign]


async def _add_one(vmm: VMM, ctl: BenchController, entries: _Entries, k: int) -> _Times:
    """Add VM port k; wait until everything about it happened and the controller is idle."""
    mac, name = vm_mac(k), f"vm{k}"
    ctl.watching, ctl.seen = name, {}
    call = await vmm.add_port(k)
    everything = {"commit", "ofport", "link_up"}
    await until(lambda: mac in entries.up and ctl.seen.keys() >= everything, f"{mac} up")
    await until(lambda: ctl.runtime.idle, "idle controller")
    at, taken, handed, pending = entries.made[mac]
    seen = ctl.seen
    return _Times(
        call.issued, seen["commit"], taken, handed, at, seen["ofport"], seen["link_up"],
        entries.up[mac], call.returned, call.replied, pending,
    )  # fmt: skip


async def port_latency(
    bed: Bed, ports: int, vmm: VMM
) -> tuple[PortLatency, dict[str, list[float]]]:
    async with bed.controller() as ctl:
        rt = ctl.runtime
        await bed.point(ctl.port)
        await until(lambda: bed.settled(rt), "reconciled switches")
        entries = _Entries(ctl)
        _watch_port_events(rt, entries)
        mods_before = rt.switches.stats.flow_mods_sent
        started = time.monotonic()
        rows: list[_Times] = []
        for k in range(ports):
            rows.append(await _add_one(vmm, ctl, entries, k))
            if (k + 1) % 100 == 0:
                log.info("%s: %d ports added", vmm.label, k + 1)
        seconds = time.monotonic() - started
        flow_mods = rt.switches.stats.flow_mods_sent - mods_before
    raw = _raw(rows)
    end, ours = raw["end_to_end"], raw["controller"]
    result = PortLatency(
        vmm=vmm.label, ports=ports, switches=len(bed.names), end_to_end=_dist(end),
        commit=_dist(raw["commit"]), ofport=_dist(raw["ofport"]), link_up=_dist(raw["link_up"]),
        entry_up=_dist(raw["entry_up"]), controller=_dist(ours), handoff=_dist(raw["handoff"]),
        vmm_call=_dist(raw["vmm_call"]), from_request=sum(t.from_request for t in rows),
        first_100_p50=_dist(end[:100]).p50, last_100_p50=_dist(end[-100:]).p50,
        controller_first_100_p50=_dist(ours[:100]).p50,
        controller_last_100_p50=_dist(ours[-100:]).p50,
        in_table_before_vmm_returned=sum(t.entry < t.returned for t in rows),
        flow_mods=flow_mods, seconds=seconds,
        reply=_dist(raw["reply"]) if "reply" in raw else None,
    )  # fmt: skip
    return result, raw


def _raw(rows: list[_Times]) -> dict[str, list[float]]:
    """Per port, in ms: each span of the report."""
    spans: dict[str, Callable[[_Times], float]] = {
        "end_to_end": lambda t: t.entry - t.issued,
        "commit": lambda t: t.commit - t.issued,
        "ofport": lambda t: t.ofport - t.issued,
        "link_up": lambda t: t.link_up - t.issued,
        "entry_up": lambda t: t.entry_up - t.issued,
        "controller": lambda t: t.entry - t.taken,
        "handoff": lambda t: t.handed - t.taken,
        "vmm_call": lambda t: t.returned - t.issued,
    }
    raw = {key: [_ms(span(t)) for t in rows] for key, span in spans.items()}
    replies = [_ms(t.replied - t.issued) for t in rows if t.replied is not None]
    if rows and len(replies) == len(rows):
        raw["reply"] = replies
    return raw


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _dist(ms: list[float]) -> Dist:
    return Dist.of([x / 1000 for x in ms])


async def flow_install(bed: Bed, vms: int) -> FlowInstall:
    await bed.wipe_flows()
    async with bed.controller(vms) as ctl:
        rt = ctl.runtime
        pointing = time.monotonic()
        await bed.point(ctl.port)
        await until(lambda: bed.settled(rt), "every switch reconciled")
        done = rt.switches.stats.flows_confirmed_at
        first = ctl.first_connect.at
        assert done is not None and first is not None
        equal = await _holds_what_is_believed(bed, rt)
        per_switch = {name: len(rt.core.installed(name)) for name in bed.names}
        flow_mods = rt.switches.stats.flow_mods_sent
        ofctl = await bed.ofctl_flows()
    restart_seconds, restart_from_first, restart_mods = await _restart(bed, vms)
    return FlowInstall(
        switches=len(bed.names), vms=rt.core.vport_count(), flows=sum(per_switch.values()),
        flows_per_switch=per_switch, ofctl_flows=ofctl, flow_mods=flow_mods,
        seconds_from_pointing=done - pointing, seconds_from_first_connect=done - first,
        connect_seconds=first - pointing, equal=equal,
        restart_seconds=restart_seconds, restart_seconds_from_first_connect=restart_from_first,
        restart_flow_mods=restart_mods,
    )  # fmt: skip


async def _holds_what_is_believed(bed: Bed, rt: Runtime) -> bool:
    for name in bed.names:
        dump = await rt.switches.adopted[name].dump()
        believed = rt.core.installed(name)
        if dump.foreign or len(dump.flows) != len(believed) or set(dump.flows) != set(believed):
            log.error("%s holds other flows than the compiler believes", name)
            return False
    return True


async def _restart(bed: Bed, vms: int) -> tuple[float, float, int]:
    """A controller taking over switches that hold its flows: seconds from the
    pointing and from the first connection to every switch reconciled; flow mods."""
    async with bed.controller(vms) as ctl:
        pointing = time.monotonic()
        await bed.point(ctl.port)
        await until(lambda: bed.settled(ctl.runtime), "every switch reconciled")
        done, first = time.monotonic(), ctl.first_connect.at
        assert first is not None
        return done - pointing, done - first, ctl.runtime.switches.stats.flow_mods_sent


async def vsctl_floor(runs: int) -> tuple[Floor, dict[str, list[float]]]:
    """ovs-vsctl's run time, `--version` and `--no-wait add-port`, on a fresh one-bridge OVS."""
    raw: dict[str, list[float]] = {"version": [], "add_port": []}
    async with private_ovs() as ovs:
        bed = Bed(ovs, 1)
        await bed.build()
        for k in range(runs):
            raw["version"].append(await _run_time(["ovs-vsctl", "--version"], ovs.env))
            raw["add_port"].append(await _run_time(bed.add_port_args(k, wait=False), ovs.env))
    return Floor(runs, _dist(raw["version"]), _dist(raw["add_port"])), raw


async def _run_time(args: list[str], env: dict[str, str]) -> float:
    """Milliseconds from just before the process is started to its exit."""
    started = time.monotonic()
    await run_process(args, env)
    return _ms(time.monotonic() - started)
