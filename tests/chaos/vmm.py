"""The VMM of the chaos tier: `lab migrate` with a moment hook, and the retries a VMM makes.

A notify that meets a 503 or no answer is sent again by the client itself
(`vportctl migrate` semantics, within `WAIT` s). A migration that fails
before the switchover (refused, rolled back, or given up: `lab migrate`
undoes it and the VM runs on at the source) is tried again whole, up to
`ATTEMPTS` times. Once the VM runs at the destination there is nothing to
try again: the cluster must converge on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.chaos.harness import ChaosLab, describe
from vportd_lab.bed.migrate import MigrateError, MigrateOptions, MigrationReport, migrate
from vportd_lab.bed.plan import VM

# The VMM's patience for the notify's retries and for the cluster to converge after
# the source delete: above a controller's failover (lease TTL 3 s, a restart, etcd
# stopped 5 s) and below the completion timeout (30 s), so that a migration the
# cluster completes only by that timeout (it missed the source delete) shows.
WAIT = 20.0
ATTEMPTS = 3
PAUSE = 1.0  # s between two whole attempts
PRECOPY = 1.0  # s


@dataclass(frozen=True)
class Move:
    """One migration a case makes: the VM, where from and where to, the probe's peer."""

    vm: VM
    source: str
    destination: str
    peer: VM


@dataclass
class Outcome:
    errors: list[str] = field(default_factory=list)  # of the attempts that failed, in order
    report: MigrationReport | None = None  # of the attempt that succeeded

    @property
    def migration_id(self) -> str | None:
        return None if self.report is None else self.report.migration_id


def carry_out(
    lab: ChaosLab,
    move: Move,
    hook: Callable[[str], None] | None = None,
    *,
    probe: bool = False,
) -> Outcome:
    """Migrate as a VMM would, trying again what failed before the switchover."""
    outcome = Outcome()
    for _ in range(ATTEMPTS):
        opts = MigrateOptions(
            lab.dir, move.vm.name, move.destination, precopy=PRECOPY, wait=WAIT, hook=hook,
            probe=probe, peer=move.peer.name if probe else None,
        )  # fmt: skip
        try:
            outcome.report = migrate(opts)
            lab.refresh()
            return outcome
        except MigrateError as err:
            then = describe(lab.record(move.vm.mac))
            outcome.errors.append(f"{err.code}: {err.detail} (the store then: {then})")
        lab.refresh()
        if lab.vm(move.vm.name).hypervisor == move.destination:
            break  # it runs at the destination: nothing left to try again
        time.sleep(PAUSE)
    return outcome
