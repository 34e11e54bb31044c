"""The southbound benchmark's results: latency distributions per span, flow install, floor."""

from __future__ import annotations

from dataclasses import dataclass, field

from vportd_lab.bench.stats import Dist


@dataclass
class PortLatency:
    vmm: str  # how the ports were added: VSCTL or OVSDB
    ports: int
    switches: int
    end_to_end: Dist  # the VMM started (ovs-vsctl, or the transact sent) -> entry in the table
    commit: Dist  # started -> the monitor read the committed row (no ofport yet)
    ofport: Dist  # started -> the monitor read ovs-vswitchd's ofport
    link_up: Dist  # started -> the monitor read link_state up
    entry_up: Dist  # started -> the entry up in the core's table
    controller: Dist  # the monitor read the snapshot that made the entry -> entry in the table
    handoff: Dist  # of which: the monitor read it -> the runtime started on it
    vmm_call: Dist  # started -> the VMM's call returned (ovs-vswitchd's cur_cfg reached)
    from_request: int  # entries made from `ofport_request`, before ovs-vswitchd numbered the port
    first_100_p50: float  # end to end, ms, over the first and the last 100 ports
    last_100_p50: float
    controller_first_100_p50: float  # the controller's part, likewise
    controller_last_100_p50: float
    in_table_before_vmm_returned: int
    flow_mods: int
    seconds: float
    reply: Dist | None = None  # OVSDB only: the transact sent -> its reply (committed)


@dataclass
class Floor:
    """ovs-vsctl's own run time on an idle private OVS: one bridge, no controller."""

    runs: int
    version: Dist  # `ovs-vsctl --version`: exec, dynamic linking, exit
    add_port: Dist  # `ovs-vsctl --no-wait add-port`, 0 .. runs-1 ports already there


@dataclass
class FlowInstall:
    switches: int
    vms: int
    flows: int
    flows_per_switch: dict[str, int]
    ofctl_flows: int  # lines of `ovs-ofctl dump-flows` on every bridge, summed
    flow_mods: int
    seconds_from_pointing: float
    seconds_from_first_connect: float
    connect_seconds: float  # pointing -> the first switch connected
    equal: bool  # every switch holds exactly what the compiler believes
    restart_seconds: float  # pointing -> every switch reconciled, third controller
    restart_seconds_from_first_connect: float
    restart_flow_mods: int


@dataclass
class Result:
    date: str
    command: str
    machine: dict[str, str]
    latency: PortLatency
    install: FlowInstall
    floor: Floor
    persistent: PortLatency  # the same as `latency`, the VMM on one OVSDB connection
    raw_ms: dict[str, list[float]] = field(default_factory=dict)  # per port, in order
    persistent_raw_ms: dict[str, list[float]] = field(default_factory=dict)
    floor_raw_ms: dict[str, list[float]] = field(default_factory=dict)  # per run, in order
