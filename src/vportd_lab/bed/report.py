"""`vportctl lab status`: the lab as JSON (for tests and tools) or as text (for people).

Besides what the lab built (from the state file, OVSDB and /proc), it shows
who leads the cluster and masters each bridge, from one running controller's
REST API; when no API answers, those are null and `cluster.error` says why.
In a lab with TLS, each controller's `api` is its https:// URL and `tls`
names the CA (`{"ca": PATH}`; null without TLS).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from vportd_lab.bed import controllers as ctl
from vportd_lab.bed import hosts, overlay_report, procs, roles, store
from vportd_lab.bed.messages import EXIT_FAILED, EXIT_OK, say
from vportd_lab.bed.ovs import OVSError, PrivateOVS
from vportd_lab.bed.plan import STANDALONE, Plan
from vportd_lab.bed.state import State, StateError, load
from vportd_lab.bed.teardown import leftovers


def openflow_connections(plan: Plan, ovs: PrivateOVS) -> dict[str, int]:
    """How many TCP connections the lab's ovs-vswitchd has to each controller (by id), now.

    One per bridge when all is well. Read from /proc, so seen at once. On the
    overlay fabric, the connections of every host's ovs-vswitchd.
    """
    if plan.overlay:
        return hosts.openflow_connections(plan)
    pid = ovs.running("ovs-vswitchd")
    peers = procs.tcp_peers(pid) if pid else []
    return {c.id: sum(f"{h}:{p}" == c.openflow for h, p in peers) for c in plan.controllers}


def connections(plan: Plan, ovs: PrivateOVS) -> dict[str, set[str]]:
    """Which controllers (by id) each bridge is connected to, as OVSDB says.

    ovs-vswitchd refreshes Controller.is_connected only with its statistics
    (every 5 s at least), so a new connection shows up there seconds later;
    `openflow_connections` sees it at once but cannot tell the bridges apart.
    """
    if plan.overlay:
        return overlay_report.connections(plan)
    by_target = {c.target: c.id for c in plan.controllers}
    try:
        ctrls = {r["_uuid"]: r for r in ovs.rows("Controller", "_uuid", "target", "is_connected")}
        bridges = ovs.rows("Bridge", "name", "controller")
    except (OVSError, OSError):
        return {}
    result: dict[str, set[str]] = {}
    for b in bridges:
        refs = b["controller"] if isinstance(b["controller"], list) else [b["controller"]]
        result[b["name"]] = {
            by_target[ctrls[u]["target"]]
            for u in refs
            if u in ctrls and ctrls[u]["is_connected"] is True and ctrls[u]["target"] in by_target
        }
    return result


def describe(state: State) -> dict[str, Any]:
    """The lab as `lab status --json` prints it."""
    plan = state.plan()
    ovs = PrivateOVS(plan.ovs_rundir, dummy=False)
    vswitchd = ovs.running("ovs-vswitchd")
    connected = connections(plan, ovs) if vswitchd is not None or plan.overlay else {}
    sessions = openflow_connections(plan, ovs)
    running = [
        c for c in plan.controllers if procs.alive(state.controllers.get(c.id), ctl.owns(c.config))
    ]
    seen = roles.view(plan, running) if plan.controllers else None
    return {
        "dir": str(plan.dir),
        "mode": plan.mode,
        "phase": state.phase,
        "started_at": state.started_at,
        "controllers": [
            {
                "id": c.id,
                "api": c.url if c.tls else c.api,
                "openflow": c.openflow,
                "pid": state.controllers.get(c.id),
                "alive": procs.alive(state.controllers.get(c.id), ctl.owns(c.config)),
                "connections": sessions.get(c.id, 0),
                "config": str(c.config),
                "log": str(c.log),
                **({"netns": c.netns} if plan.overlay else {}),
            }
            for c in plan.controllers
        ],
        "hypervisors": [
            {
                "name": hv.name,
                "dpid": hv.dpid_hex,
                "bridge": hv.bridge,
                "connected": sorted(connected.get(hv.name, set())),
                "master": seen.masters.get(hv.name) if seen else None,
                **(overlay_report.host(plan, hv) if plan.overlay else {}),
            }
            for hv in plan.hypervisors
        ],
        "links": [
            {
                "a": k.a,
                "a_port": k.a_port,
                "a_name": k.a_name,
                "b": k.b,
                "b_port": k.b_port,
                "b_name": k.b_name,
            }
            for k in plan.links
        ],
        "vms": [
            {
                "name": vm.name,
                "mac": vm.mac,
                "ip": vm.ip,
                "cidr": vm.cidr,
                "hypervisor": vm.hypervisor,
                "netns": vm.netns,
                "port": vm.port,
                "port_name": vm.host_if,
                "iface_id": vm.iface_id,
                "vm_id": vm.vm_id,
                "segment": vm.segment,
            }
            for vm in plan.vms
        ],
        "fabric": plan.fabric,
        "segments": [{"tag": g.tag, "vni": g.vni, "name": g.name} for g in plan.segments],
        "ovs": None
        if plan.overlay
        else {
            "db": f"unix:{ovs.db_sock}",
            "rundir": str(ovs.rundir),
            "datapath": "netdev",
            "ovsdb_server": ovs.running("ovsdb-server"),
            "ovs_vswitchd": vswitchd,
        },
        "etcd": _etcd(state),
        "cluster": seen.to_json() if seen else None,
        "tls": _tls(plan),
        "token_file": str(plan.token_file),
        "peer_token_file": str(plan.peer_token_file),
    }


def _tls(plan: Plan) -> dict[str, Any] | None:
    """The lab's CA and the controllers' OVSDB remote; None in a lab without TLS."""
    if plan.tls is None:
        return None
    return {"ca": str(plan.tls.ca), "ovsdb": plan.tls.ovsdb_remote}


def _etcd(state: State) -> dict[str, Any] | None:
    """The lab's etcd; None in a lab without controllers."""
    etcd = state.plan().etcd
    if etcd is None:
        return None
    return {
        "endpoint": etcd.endpoint,
        "pid": state.etcd_pid,
        "alive": procs.alive(state.etcd_pid, store.owned_by(Path(state.dir))),
        "data_dir": str(etcd.data_dir),
        "log": str(etcd.log),
    }


def summary(d: dict[str, Any]) -> str:
    """`describe` as text for an operator."""

    def running(pid: int | None) -> str:
        return f"pid {pid}" if pid else "NOT RUNNING"

    o = d["ovs"]
    lines = [
        f"lab in {d['dir']} ({d['phase']}, mode {d['mode']}, {d['fabric']} fabric, since "
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(d['started_at']))})",
        f"Open vSwitch, userspace datapath: {o['db']} (ovsdb-server {running(o['ovsdb_server'])}, "
        f"ovs-vswitchd {running(o['ovs_vswitchd'])})"
        if o
        else "Open vSwitch: one per host (userspace datapath), below",
        "controllers:" if d["controllers"] else "controllers: none",
    ]
    bridges = len(d["hypervisors"])
    for c in d["controllers"]:
        if c["alive"]:
            state = f"pid {c['pid']}, {c['connections']}/{bridges} bridges connected"
        else:
            state = f"NOT RUNNING (see {c['log']})"
        lines.append(f"  {c['id']:<4} OpenFlow {c['openflow']:<16} API {c['api']:<16} {state}")
    if d.get("tls"):
        lines.append(
            f"TLS on every channel: CA {d['tls']['ca']}; the controllers read OVSDB at "
            f"{d['tls']['ovsdb']}"
        )
    lines += _cluster_lines(d)
    fail_mode = "standalone, NORMAL learning" if d["mode"] == STANDALONE else "secure"
    lines.append(f"hypervisors (bridges, fail_mode={fail_mode}):")
    for hv in d["hypervisors"]:
        master = f", master {hv['master']}" if hv.get("master") else ""
        lines.append(f"  {hv['name']:<4} dpid {hv['dpid']}{master}")
        if "netns" in hv:
            lines.append(overlay_report.host_line(hv))
    if d["links"]:
        lines.append("links:")
    for k in d["links"]:
        a = f"{k['a']} port {k['a_port']} ({k['a_name']})"
        lines.append(f"  {a} <-> {k['b']} port {k['b_port']} ({k['b_name']})")
    lines.append("VMs (ip netns exec NAME ...):")
    for vm in d["vms"]:
        lines.append(
            f"  {vm['name']:<4} {vm['mac']}  {vm['cidr']:<14} on {vm['hypervisor']} "
            f"port {vm['port']} ({vm['port_name']})"
            + (f" segment {vm['segment']}" if vm["segment"] else "")
        )
    lines.append(f"API token: {d['token_file']} (controllers' own: {d['peer_token_file']})")
    return "\n".join(lines)


def _cluster_lines(d: dict[str, Any]) -> list[str]:
    """The etcd and the leader, for `summary`; nothing in a lab without controllers."""
    etcd, cluster = d.get("etcd"), d.get("cluster")
    if etcd is None or cluster is None:
        return []
    state = f"pid {etcd['pid']}" if etcd["alive"] else f"NOT RUNNING (see {etcd['log']})"
    lines = [f"etcd: {etcd['endpoint']} ({state}), data in {etcd['data_dir']}"]
    if cluster["error"] is None:
        lines.append(f"leader: {cluster['leader'] or 'none'} (as {cluster['from']} sees it)")
    else:
        lines.append(f"leader: unknown (the API does not answer: {cluster['error']})")
    return lines


def status(lab_dir: Path, as_json: bool = False) -> int:
    lab_dir = Path(lab_dir).absolute()
    try:
        state = load(lab_dir / "lab.json")
    except StateError as err:
        detail = f"{err}: `vportctl lab down --dir {lab_dir}` removes what is left"
        return _no_lab(as_json, "unreadable-state", detail)
    if state is None:
        detail = f"no lab is up in {lab_dir}"
        if leftovers(lab_dir):
            detail += f" (leftovers found: `vportctl lab down --dir {lab_dir}` removes them)"
        return _no_lab(as_json, "no-lab", detail)
    d = describe(state)
    print(json.dumps(d, indent=2) if as_json else summary(d))
    return EXIT_OK


def _no_lab(as_json: bool, code: str, detail: str) -> int:
    if as_json:
        print(json.dumps({"error": code, "detail": detail}))
    say(detail)
    return EXIT_FAILED
