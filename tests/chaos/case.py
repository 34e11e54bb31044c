"""One chaos case: a fault at a moment of a live migration, the VMM's retries, then the checks.

The case starts from a settled cluster and picks its migration so that the
three roles are three controllers: the VM leaves a bridge the leader does not
master for the other such bridge, and the probe's peer (the ping's) is a VM on
the leader's bridge when there is one. The fault fires at its moment (for a
controller during the handshake: once the leader has written the migration's
record, so that its syncs are under way); the killed process is started
again; then everything in `checks` is verified. `scenario` runs any other
act on a migration (a restart, a notify storm) with the same checks. A
failure's message carries the checks that failed and the controllers'
notable log lines of the case.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tests.chaos import checks
from tests.chaos.faults import CONTROLLER_KINDS, DownWatch, Fault
from tests.chaos.harness import ChaosLab, Roles
from tests.chaos.vmm import Move, Outcome, carry_out
from vportd_lab.bed.plan import VM

MARK_WAIT = 3.0  # s the handshake's hook waits for the migration's record
REPORT_ENV = "VPORTD_CHAOS_REPORT"  # a file: one JSON line per case is appended to it


@dataclass
class Result:
    name: str
    move: Move | None = None
    fault: str = ""
    outcome: Outcome = field(default_factory=Outcome)
    failures: list[str] = field(default_factory=list)
    logs: str = ""
    seconds: float = 0.0

    def message(self) -> str:
        head = f"chaos case {self.name}: fault {self.fault}"
        if self.move is not None:
            m = self.move
            head += f"; {m.vm.name} {m.source} -> {m.destination} (peer {m.peer.name})"
        head += f"; VMM attempts failed: {self.outcome.errors}"
        return "\n".join([head, *(f"- {f}" for f in self.failures), self.logs])

    def save(self) -> None:
        where = os.environ.get(REPORT_ENV)
        if not where:
            return
        doc = {
            "case": self.name, "fault": self.fault, "ok": not self.failures,
            "failures": self.failures, "vmm_errors": self.outcome.errors,
            "migration": self.outcome.migration_id, "seconds": round(self.seconds, 1),
            "handshake_ms": self.outcome.report.handshake_ms if self.outcome.report else None,
            "logs": self.logs if self.failures else "",
        }  # fmt: skip
        with Path(where).open("a") as f:
            f.write(json.dumps(doc) + "\n")


def choose(lab: ChaosLab, roles: Roles) -> Move:
    """The migration of a case: between the two bridges the leader does not master."""
    others = sorted(b for b, m in roles.masters.items() if m != roles.leader)
    home = [b for b, m in roles.masters.items() if m == roles.leader]
    by_bridge = {b: [v for v in lab.plan.vms if v.hypervisor == b] for b in roles.masters}
    others.sort(key=lambda b: -len(by_bridge[b]))  # the fuller one is the source
    source = others[0] if by_bridge[others[0]] else home[0]
    destination = next(b for b in others if b != source)
    vm = by_bridge[source][0]
    peers = [v for b in home for v in by_bridge[b] if v != vm] or [
        v for v in lab.plan.vms if v != vm
    ]
    return Move(vm, source, destination, peers[0])


def victim(kind: str, roles: Roles, move: Move) -> str | None:
    return {
        "leader": roles.leader,
        "source-master": roles.masters[move.source],
        "destination-master": roles.masters[move.destination],
    }.get(kind)


def hook_for(lab: ChaosLab, fault: Fault, moment: str, vm: VM) -> Callable[[str], None]:
    """The migration's hook: fire `fault` at `moment`, once."""
    rec = lab.record(vm.mac)
    epoch = rec.mig.epoch if rec is not None and rec.mig is not None else 0

    def hook(name: str) -> None:
        if name != moment or fault.fired:
            return
        fault.reached_at = time.monotonic()
        if name == "handshake" and fault.kind in CONTROLLER_KINDS:
            _await_mark(lab, vm, epoch)
        fault.fire()

    return hook


def _await_mark(lab: ChaosLab, vm: VM, epoch: int) -> None:
    """Until the store holds a migration of `vm` newer than `epoch` (or MARK_WAIT s)."""
    deadline = time.monotonic() + MARK_WAIT
    while time.monotonic() < deadline:
        try:
            rec = lab.record(vm.mac)
        except OSError:
            rec = None
        if rec is not None and rec.mig is not None and rec.mig.epoch > epoch:
            return
        time.sleep(0.001)


class Act(Protocol):
    """What a case does to the cluster while its migration runs."""

    def describe(self) -> str: ...

    def hook(self, moment: str) -> None:
        """Called at each moment of the migration (`MigrateOptions.hook`)."""

    def finish(self) -> list[str]:
        """Undo what is left to undo (always called); what went wrong."""


@dataclass
class FaultAct:
    """A fault at one moment (the chaos cases)."""

    fault: Fault
    moment: str
    hook: Callable[[str], None]

    def describe(self) -> str:
        return self.fault.describe()

    def finish(self) -> list[str]:
        self.fault.recover()
        if not self.fault.fired:
            return [f"the migration never reached the moment {self.moment}"]
        return []


def run(lab: ChaosLab, kind: str, moment: str) -> Result:
    """The case `kind` at `moment`; its Result (failures empty: it passed)."""

    def arm(roles: Roles, move: Move) -> Act:
        fault = Fault(lab, kind, victim(kind, roles, move))
        return FaultAct(fault, moment, hook_for(lab, fault, moment, move.vm))

    return scenario(lab, f"{kind}@{moment}", arm)


def scenario(
    lab: ChaosLab,
    name: str,
    arm: Callable[[Roles, Move], Act],
    move: Move | None = None,
    *,
    probe: bool = False,
) -> Result:
    """A migration (`move`, else `choose`'s) with `arm`'s act on it, then every check."""
    started = time.monotonic()
    result = Result(name)
    since = checks.Marks.now(lab)
    result.failures = checks.settled(lab)
    if result.failures:
        result.failures.insert(0, "the cluster was not settled before the case")
        return _done(lab, result, since, started)
    roles = lab.roles()
    move = result.move = move or choose(lab, roles)
    act = arm(roles, move)
    with DownWatch(lab) as watch:
        try:
            result.outcome = carry_out(lab, move, act.hook, probe=probe)
        finally:
            result.failures += act.finish()
            result.fault = act.describe()
        result.failures += verify(lab, move, result.outcome)
    if probe:
        result.failures += checks.probe(result.outcome)
    result.failures += [f"a VM was reported down: {d}" for d in watch.downs()]
    result.failures += _no_is_slave(lab)
    return _done(lab, result, since, started)


def verify(lab: ChaosLab, move: Move, outcome: Outcome) -> list[str]:
    """The checks of a case once its migration is over (see `checks`)."""
    found = checks.settled(lab)
    lab.record_pids()
    found += checks.migrated(lab, move, outcome)
    found += checks.answers_ping(lab, move)
    return found


def _no_is_slave(lab: ChaosLab) -> list[str]:
    """Once settled, with every master made to send flow mods, nobody logs IS_SLAVE."""
    if lab.problems():
        return []  # not settled: said already
    since = checks.Marks.now(lab)
    found = checks.exercise(lab)
    found += checks.settled(lab)
    found += [f"IS_SLAVE logged after the cluster settled: {line}"
              for line in checks.is_slave(lab, since)]  # fmt: skip
    return found


def _done(lab: ChaosLab, result: Result, since: checks.Marks, started: float) -> Result:
    result.seconds = time.monotonic() - started
    if result.failures:
        result.logs = checks.notable(lab, since)
    result.save()
    return result
