"""What the chaos tier checks after each case, and the controller log lines that explain a failure.

After a case (`verify`): the cluster settles (every process up, one leader,
the bridges with their masters, no VM migrating in the store, every
controller's table equal to the store's and so to every other's); the
VMM's migration succeeded and is the VM's latest in the store, completed by
the source delete (not forced by the completion timeout), and the leader
holds no open migration; no VM was reported down while the case ran; the
VM answers ping from its peer; and once settled, with each bridge's master
made to send flow mods (`exercise`), no controller logs `IS_SLAVE`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from tests.chaos.harness import OPEN_STATES, ChaosLab, describe
from tests.chaos.vmm import Move, Outcome
from tests.lab.test_lab_ping import ping
from vportd.core.model import Phase
from vportd.ctl.client import ApiError, ClientError

SETTLE = 60.0  # s: above the completion timeout (30 s) and a few lease TTLs
# What a failure's report quotes of the controllers' logs since the case began.
_NOTABLE = re.compile(
    r"WARNING|ERROR|CRITICAL|Traceback|IS_SLAVE|leads the cluster|stops leading|leader:|"
    r"session ended|mastered by|handing over|joined the cluster|left the cluster|table loaded|"
    r"migrat"
)
LOG_LINES = 40  # per controller
GAP_SLACK_MS = 500  # the lab tests' bound on a migration's traffic gap beyond its switchover


@dataclass
class Marks:
    """Where each controller's log ended at some point (its size in bytes)."""

    sizes: dict[str, int] = field(default_factory=dict)

    @classmethod
    def now(cls, lab: ChaosLab) -> Marks:
        return cls({cid: _size(lab.log(cid)) for cid in lab.ids})

    def lines(self, lab: ChaosLab, cid: str) -> list[str]:
        """Controller `cid`'s log lines since this mark."""
        try:
            with lab.log(cid).open("rb") as f:
                f.seek(self.sizes.get(cid, 0))
                return f.read().decode(errors="replace").splitlines()
        except OSError:
            return []


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def notable(lab: ChaosLab, since: Marks) -> str:
    """The controllers' notable log lines since `since`: a failure's explanation."""
    out = []
    for cid in lab.ids:
        lines = [line for line in since.lines(lab, cid) if _NOTABLE.search(line)]
        out.append(f"--- {cid}.log ({len(lines)} notable lines, the last {LOG_LINES}):")
        out += lines[-LOG_LINES:]
    return "\n".join(out)


def is_slave(lab: ChaosLab, since: Marks) -> list[str]:
    return [
        f"{cid}: {line}" for cid in lab.ids for line in since.lines(lab, cid) if "IS_SLAVE" in line
    ]


def settled(lab: ChaosLab, wait: float = SETTLE) -> list[str]:
    found = lab.await_settled(wait)
    return [f"the cluster did not settle within {wait:g} s: {p}" for p in found]


def migrated(lab: ChaosLab, move: Move, outcome: Outcome) -> list[str]:
    """The VMM's migration succeeded, completed by the source delete, and nothing is open."""
    mac = move.vm.mac
    rec = lab.record(mac)
    mark = rec.mig if rec is not None else None
    report = outcome.report
    if report is None or report.outcome != "migrated":
        found = [f"the VMM could not migrate {move.vm.name} (attempts: {outcome.errors})"]
        if rec is not None and mark is not None:
            found.append(f"the store now: {describe(rec)}")
            found.append(f"the leader now: {_leader_says(lab, mark.id)}")
        return found
    if rec is None or mark is None:
        return [f"the store has no migration of {mac}: {rec}"]
    found = []
    if (mark.id, mark.phase) != (report.migration_id, Phase.COMPLETED):
        found.append(f"the store's latest migration of {mac} is {mark.id} {mark.phase.name}, "
                     f"not the VMM's {report.migration_id} COMPLETED")  # fmt: skip
    where = (rec.loc.ovs, rec.loc.port, rec.loc.port_name)
    if where != (move.destination, report.port, report.host_if):
        found.append(f"the store has {mac} at {where}, not at the destination")
    return found + _leader_view(lab, report.migration_id)


def _leader_says(lab: ChaosLab, migration_id: str) -> str:
    leader = lab.roles().leader
    try:
        return f"{leader}: {lab.ask(leader, lambda c: c.migration(migration_id))}"
    except ClientError as err:
        return f"{leader}: {err.detail}"


def _leader_view(lab: ChaosLab, migration_id: str | None) -> list[str]:
    """No open migration on the leader; the VMM's completed, and not forced by its timeout."""
    leader = lab.roles().leader
    try:
        still = [m for m in lab.leader_migrations(leader) if m.get("state") in OPEN_STATES]
        found = [f"leader {leader} holds open migration {m}" for m in still]
        if migration_id is not None:
            m = lab.ask(leader, lambda c: c.migration(migration_id))
            if m.get("state") != "completed" or m.get("reason"):
                found.append(f"leader {leader} shows the VMM's migration as {m}")
    except ApiError as err:
        if err.status == 404:  # a leader elected after it ended does not know it
            return []
        return [f"leader {leader}: {err.detail}"]
    except ClientError as err:
        return [f"leader {leader}: {err.detail}"]
    return found


def answers_ping(lab: ChaosLab, move: Move) -> list[str]:
    vm, peer = lab.vm(move.vm.name), lab.vm(move.peer.name)
    out = ping({"netns": peer.netns}, {"ip": vm.ip})
    if " 0% packet loss" in out:
        return []
    return [f"{vm.name} does not answer ping from {peer.name}:\n{out}"]


def exercise(lab: ChaosLab) -> list[str]:
    """Make every bridge's master send flow mods: a notify to each bridge (its master
    pre-installs the VM's arrival), then the abort (it takes them out again)."""
    found = []
    for hv in lab.plan.hypervisors:
        vm = next(v for v in lab.plan.vms if v.hypervisor != hv.name)
        with lab.client(lab.ids[0], timeout=10.0) as c:
            try:
                doc, _ = c.migrate(vm.mac, vm.hypervisor, hv.name, wait=10.0)
                c.abort(str(doc["id"]))
            except ClientError as err:
                found.append(f"notify and abort of {vm.name} to {hv.name}: {err.detail}")
    return found


def probe(outcome: Outcome) -> list[str]:
    """Under the probe: the traffic came back in both directions after the switchover, and
    its longest gap is the switchover's (the relation `tests/lab/test_lab_migrate` holds)."""
    report = outcome.report
    if report is None or report.probe is None:
        return []  # no migration: said already
    end, gap = report.switchover_end_ms, report.switchover_gap_ms
    if end is None or gap is None:
        return [f"the migration never switched over: {report.outcome}"]
    found = []
    for way in ("a_to_b", "b_to_a"):
        d = report.probe[way]
        if d["last_rx_ms"] is None or d["last_rx_ms"] <= end:
            found.append(f"no traffic {d['source']} -> {d['destination']} after the switchover")
    longest = report.longest_gap_ms
    if longest is None or longest >= gap + GAP_SLACK_MS:
        found.append(f"the probe's longest gap {longest} ms is not the switchover's ({gap} ms)")
    return found
