"""What `lab status` adds on the overlay fabric: each host's namespace, OVSDB and OVS."""

from __future__ import annotations

from typing import Any

from vportd_lab.bed.hosts import host_ovs, ovsdb_remote
from vportd_lab.bed.ovs import OVSError
from vportd_lab.bed.plan import INTEGRATION, TUNNEL_NAME, Hypervisor, Plan


def host(plan: Plan, hv: Hypervisor) -> dict[str, Any]:
    """A host's entry in `hypervisors`, beyond the patch fabric's."""
    ovs = host_ovs(plan, hv)
    return {
        "netns": hv.netns,
        "ovsdb": ovsdb_remote(hv),
        "db": ovs.db,
        "rundir": str(ovs.rundir),
        "encap_ip": hv.encap_ip,
        "mgmt_ip": hv.mgmt_ip,
        "encap": plan.encap,
        "tunnel_port": TUNNEL_NAME,
        "ovsdb_server": ovs.running("ovsdb-server"),
        "ovs_vswitchd": ovs.running("ovs-vswitchd"),
    }


def host_line(hv: dict[str, Any]) -> str:
    """A host's second line in `lab status`."""
    return (
        f"       netns {hv['netns']}, OVSDB {hv['ovsdb']}, {hv['encap']} endpoint "
        f"{hv['encap_ip']}, run dir {hv['rundir']}"
    )


def connections(plan: Plan) -> dict[str, set[str]]:
    """Which controllers (by id) each host's br-int is connected to, as its OVSDB says
    (seconds late: see `report.connections`)."""
    by_target = {c.target: c.id for c in plan.controllers}
    found: dict[str, set[str]] = {}
    for hv in plan.hypervisors:
        ovs = host_ovs(plan, hv)
        try:
            rows = ovs.rows("Controller", "target", "is_connected")
            bridge = ovs.rows("Bridge", "name")
        except (OVSError, OSError):
            continue
        if any(b["name"] == INTEGRATION for b in bridge):
            found[hv.name] = {
                by_target[r["target"]]
                for r in rows
                if r["is_connected"] is True and r["target"] in by_target
            }
    return found
