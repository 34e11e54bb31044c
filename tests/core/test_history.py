"""The leader forgets finished migrations past the history's size or age.

A long-running leader must not grow without bound: it keeps the last
`history.size` finished migrations, each for `history.age` seconds, and an
open migration is never forgotten.
"""

from __future__ import annotations

import pytest

from tests.core.support import TIMEOUTS, VM_A, boot, mesh, switch_over
from vportd.core.coordinator import History
from vportd.core.errors import UnknownMigration
from vportd_lab.sim.cluster import SimCluster


def build(history: History) -> SimCluster:
    sim = SimCluster.build(mesh(3), 3, timeouts=TIMEOUTS, history=history)
    boot(sim, VM_A, "hv1", 1)
    return sim


def migrate_back_and_forth(sim: SimCluster, times: int) -> list[str]:
    """VM_A hops hv1 -> hv2 -> hv1 ...; each hop completes; returns the ids."""
    ids, here, port = [], "hv1", 1
    for i in range(times):
        there, there_port = ("hv2", 10 + i) if here == "hv1" else ("hv1", 10 + i)
        ids.append(sim.notify(VM_A, here, there))
        sim.deliver_all()
        switch_over(sim, VM_A, (here, port), (there, there_port))
        here, port = there, there_port
    return ids


def test_only_the_last_size_finished_migrations_are_kept() -> None:
    sim = build(History(size=3, age=3600))
    ids = migrate_back_and_forth(sim, 7)

    kept = [m.id for m in sim.leader.migrations()]
    assert kept == ids[-3:]
    assert all(m.state == "completed" for m in sim.leader.migrations())
    with pytest.raises(UnknownMigration):
        sim.leader.migration(ids[0])


def test_finished_migrations_are_forgotten_after_the_age() -> None:
    sim = build(History(size=1000, age=60))
    ids = migrate_back_and_forth(sim, 2)
    assert len(sim.leader.migrations()) == 2

    sim.advance(61)

    assert sim.leader.migrations() == []
    with pytest.raises(UnknownMigration):
        sim.leader.migration(ids[-1])


def test_an_open_migration_outlives_the_age() -> None:
    sim = build(History(size=1, age=1))
    migrate_back_and_forth(sim, 1)
    mid = sim.notify(VM_A, "hv2", "hv1")  # open: waits for the switchover
    sim.deliver_all()

    sim.advance(30)  # well past the age, short of the activation timeout

    assert [m.id for m in sim.leader.migrations()] == [mid]
    assert sim.leader.migration(mid).state == "ready"


def test_the_history_by_state_and_the_newest_few() -> None:
    sim = build(History(size=1000, age=3600))
    done = migrate_back_and_forth(sim, 3)
    aborted = sim.notify(VM_A, "hv2", "hv0")
    sim.deliver_all()
    sim.abort(aborted)
    sim.deliver_all()
    ids = [*done, aborted]

    def listed(state: str | None = None, limit: int | None = None) -> list[str]:
        return [m.id for m in sim.leader.migrations(state, limit)]

    assert listed() == ids  # oldest first
    assert listed("completed") == done
    assert listed("aborted") == [aborted]
    assert listed("failed") == []
    assert listed(limit=2) == ids[-2:]
    assert listed("completed", 2) == done[-2:]
    assert listed(limit=10) == ids
