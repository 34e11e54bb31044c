"""Who leads the lab's cluster and who masters each bridge, as the controllers' API says.

`up` waits with `missing` until every running controller sees a leader that
runs, every bridge has a running master, and each master is connected to the
bridges it masters; `status` shows one controller's `view`. Both read the
REST API (GET /v1/cluster and /v1/switches with the lab's token, over https
checked against the lab's CA in a lab with TLS) and never
fail because it does not answer: that is a finding, not an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vportd.ctl.client import Client, ClientError
from vportd.ctl.target import read_token
from vportd_lab.bed.plan import Controller, Hypervisor, Plan

TIMEOUT = 2.0  # per request: a controller on loopback answers in milliseconds


@dataclass
class View:
    """What one controller says (`error` set when it did not answer)."""

    source: str | None = None  # the controller that answered
    leader: str | None = None
    masters: dict[str, str | None] = field(default_factory=dict)  # hypervisor -> controller id
    connected: set[str] = field(default_factory=set)  # hypervisors `source` is connected to
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.source, "leader": self.leader, "masters": self.masters,
            "error": self.error,
        }  # fmt: skip


def ask(plan: Plan, ctrl: Controller, timeout: float = TIMEOUT) -> View:
    """`ctrl`'s view of the cluster; a View with `error` if it cannot be had."""
    try:
        token = read_token(plan.token_file)
        with Client(ctrl.url, token, timeout, ca=plan.ca) as api:
            cluster = api.status()["cluster"]
            switches = api.switches()
    except ClientError as err:
        return View(error=f"{ctrl.id}: {err.detail}")
    by_name = {str(s.get("name")): s for s in switches}
    by_dpid = {str(s.get("dpid")): s for s in switches}

    def switch(hv: Hypervisor) -> dict[str, Any]:
        # by its name (the bridge's, or the host's on the overlay), else by datapath id
        return by_name.get(hv.name) or by_dpid.get(hv.dpid_hex) or {}

    masters = {hv.name: _master(switch(hv) or None) for hv in plan.hypervisors}
    connected = {hv.name for hv in plan.hypervisors if switch(hv).get("connected") is True}
    leader = cluster.get("leader")
    return View(ctrl.id, None if leader is None else str(leader), masters, connected)


def _master(switch: dict[str, Any] | None) -> str | None:
    master = None if switch is None else switch.get("master")
    return None if master is None else str(master)


def view(plan: Plan, running: list[Controller], timeout: float = TIMEOUT) -> View:
    """The first running controller's view that can be had, else the last error."""
    found = View(error="no controller runs")
    for ctrl in running:
        found = ask(plan, ctrl, timeout)
        if found.error is None:
            break
    return found


def missing(plan: Plan, running: list[Controller], timeout: float = TIMEOUT) -> list[str]:
    """What keeps the cluster from being settled, as seen by every running controller.

    Empty when each of them answers, sees a running leader and a running
    master for every bridge, and each master is connected to its bridges.
    """
    live = {c.id for c in running}
    problems: list[str] = []
    for ctrl in running:
        seen = ask(plan, ctrl, timeout)
        if seen.error is not None:
            problems.append(f"the API does not answer ({seen.error})")
            continue
        problems += _problems(ctrl, seen, live)
    return list(dict.fromkeys(problems))  # the same finding from several controllers: once


def _problems(ctrl: Controller, seen: View, live: set[str]) -> list[str]:
    problems = []
    if seen.leader is None:
        problems.append(f"{ctrl.id} sees no leader")
    elif seen.leader not in live:
        problems.append(f"{ctrl.id} sees leader {seen.leader}, which is not running")
    for bridge, master in seen.masters.items():
        if master is None:
            problems.append(f"{bridge} has no master (as {ctrl.id} sees it)")
        elif master not in live:
            problems.append(f"{bridge}'s master {master} is not running (as {ctrl.id} sees it)")
        elif master == ctrl.id and bridge not in seen.connected:
            problems.append(f"{bridge}'s master {ctrl.id} is not connected to it")
    return problems
