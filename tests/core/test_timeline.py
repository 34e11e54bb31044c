"""Each migration's timeline, and the downtime measured outside that the leader keeps with it.

The leader records every step a migration goes through with the `now` of the
input that took it there: notify, each controller's sync complete, notify
complete (`ready`), activation, then how it ended. A new leader's timeline
of a migration it adopted starts at the adoption.
"""

from __future__ import annotations

import pytest

from tests.core.support import VM_A, add, link, ready_migration, switch_over
from vportd.core.coordinator import ARRIVALS_KEPT
from vportd.core.errors import UnknownMigration
from vportd.core.messages import DirectionDowntime, DowntimeReport, MigrationView
from vportd_lab.sim.cluster import SimCluster


def steps(view: MigrationView) -> list[str]:
    return [step for step, _ in view.timeline]


def assert_ordered(view: MigrationView) -> None:
    times = [at for _, at in view.timeline]
    assert times == sorted(times)


def ready_at(sim: SimCluster, at: float) -> str:
    """VM_A's migration hv1 -> hv2 (synced by c1 and c2), notified at `at`, answered."""
    sim.advance(at - sim.now)
    return ready_migration(sim, VM_A, "hv1", "hv2")


def test_a_completed_migration_shows_every_step_in_order(sim: SimCluster) -> None:
    mid = ready_at(sim, 10.0)
    sim.advance(3.0)
    switch_over(sim, VM_A, ("hv1", 1), ("hv2", 7))

    view = sim.leader.migration(mid)
    assert view.state == "completed"
    assert steps(view)[0] == "notify"
    assert sorted(steps(view)[1:3]) == ["sync c1", "sync c2"]
    assert steps(view)[3:] == ["ready", "activated", "completed"]
    assert dict(view.timeline)["notify"] == 10.0
    assert dict(view.timeline)["completed"] == 13.0
    assert_ordered(view)


def test_an_aborted_migration_ends_with_its_abort(sim: SimCluster) -> None:
    mid = ready_at(sim, 5.0)
    sim.advance(1.0)
    sim.abort(mid)
    sim.deliver_all()

    view = sim.leader.migration(mid)
    assert steps(view)[0] == "notify"
    assert steps(view)[3:] == ["ready", "aborted"]
    assert view.timeline[-1] == ("aborted", 6.0)


def test_a_migration_whose_vm_never_becomes_active_fails_at_its_deadline(
    sim: SimCluster,
) -> None:
    mid = ready_at(sim, 1.0)
    sim.advance(61.0)  # past the activation timeout (60 s)

    view = sim.leader.migration(mid)
    assert view.state == "failed"
    assert steps(view)[3:] == ["ready", "failed"]
    assert view.timeline[-1] == ("failed", 62.0)


def test_a_migration_nobody_syncs_fails_after_its_notify(sim: SimCluster) -> None:
    mid = sim.notify(VM_A, "hv1", "hv2")
    sim.queue.clear()  # the syncs never arrive
    sim.advance(3.0)  # past the sync timeout (2 s)

    view = sim.leader.migration(mid)
    assert steps(view) == ["notify", "failed"]
    assert view.reason is not None and "no sync complete" in view.reason


def test_a_forced_completion_ends_as_completed_with_its_reason(sim: SimCluster) -> None:
    mid = ready_at(sim, 0.0)
    # The VM runs at the destination, but its source port is never deleted.
    sim.port_event(add("hv2", 7, VM_A))
    sim.port_event(link("hv1", 1, VM_A, up=False))
    sim.port_event(link("hv2", 7, VM_A, up=True))
    sim.deliver_all()
    sim.advance(11.0)  # past the completion timeout (10 s)

    view = sim.leader.migration(mid)
    assert steps(view)[3:] == ["ready", "activated", "completed"]
    assert view.reason is not None and "not deleted in time" in view.reason


def test_a_new_leader_starts_an_adopted_migrations_timeline_at_the_adoption(
    sim: SimCluster,
) -> None:
    mid = ready_at(sim, 2.0)
    sim.advance(5.0)
    for ctl in sim.controllers.values():
        ctl.leader_is("c1")
    sim.controllers["c1"].lead(sim.now)
    switch_over(sim, VM_A, ("hv1", 1), ("hv2", 7))

    view = sim.controllers["c1"].migration(mid)
    assert view.timeline[0] == ("adopted", 7.0)
    assert steps(view)[-1] == "completed"
    assert not {"notify", "ready"} & set(steps(view))  # before its time as leader
    assert_ordered(view)


def report(gap: float, arrivals: tuple[float, ...] = (1.0, 1.5)) -> DowntimeReport:
    return DowntimeReport((
        DirectionDowntime("vm -> peer", gap, 3, arrivals),
        DirectionDowntime("peer -> vm", gap / 2, 0, arrivals),
    ))  # fmt: skip


def test_a_downtime_report_is_kept_with_its_migration_and_a_new_one_replaces_it(
    sim: SimCluster,
) -> None:
    mid = ready_at(sim, 0.0)

    first = sim.leader.downtime_reported(mid, report(0.2)).reply
    out = sim.leader.downtime_reported(mid, report(0.1))

    assert first is not None and first.downtime == report(0.2)
    assert not out  # nothing for the adapters to do but answer
    assert sim.leader.migration(mid).downtime == report(0.1)
    assert sim.leader.migration(mid).state == "ready"


def test_a_downtime_report_for_an_unknown_migration_is_refused(sim: SimCluster) -> None:
    with pytest.raises(UnknownMigration):
        sim.leader.downtime_reported("nope-1", report(0.1))


def test_only_the_newest_reports_keep_their_arrivals(sim: SimCluster) -> None:
    ids = []
    here, port = "hv1", 1
    for hop in range(ARRIVALS_KEPT + 2):
        there = "hv2" if here == "hv1" else "hv1"
        mid = ready_migration(sim, VM_A, here, there)
        switch_over(sim, VM_A, (here, port), (there, 10 + hop))
        sim.leader.downtime_reported(mid, report(0.1))
        ids.append(mid)
        here, port = there, 10 + hop

    kept = [sim.leader.migration(mid).downtime for mid in ids]
    assert all(d is not None and d.directions[0].gap_s == 0.1 for d in kept)
    with_arrivals = [d is not None and d.directions[0].arrivals != () for d in kept]
    assert with_arrivals == [False, False] + [True] * ARRIVALS_KEPT
