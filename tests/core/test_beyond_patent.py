"""What we add to the patent (DESIGN §1 "Beyond the patent"), checked on outcomes."""

from __future__ import annotations

from collections.abc import Callable

from tests.core.support import (
    TIMEOUTS,
    VM_A,
    add,
    converged,
    delete,
    first,
    holds,
    link,
    ready_migration,
    switch_over,
)
from vportd.core.errors import AlreadyMigrating, MigrationConflict, NoController
from vportd.core.flow import FlowCommand
from vportd.core.messages import NotifyRequest, SyncComplete, VPortSync
from vportd.core.model import MigrationState, PortState
from vportd_lab.sim.cluster import InFlight, SimCluster

ALL_SWITCHES = ("hv0", "hv1", "hv2")


def reach(sim: SimCluster, mac: str) -> set[frozenset[tuple[str, int]]]:
    """Where a frame for `mac` goes, from an unused edge port of every switch."""
    assert sim.fabric is not None
    return {frozenset(sim.fabric.deliveries(s, 99, mac)) for s in ALL_SWITCHES}


def sync_to(to: str) -> Callable[[InFlight], bool]:
    return lambda item: item.to == to and isinstance(item.message, VPortSync)


def test_make_before_break_traffic_follows_the_vm_as_soon_as_it_is_up_at_the_destination(
    sim: SimCluster,
) -> None:
    mid = ready_migration(sim, VM_A, "hv1", "hv2")
    sim.port_event(add("hv2", 7, VM_A))
    sim.deliver_all()
    # Pre-copy: the VM runs at the source; a copy also goes to its new port (down until the
    # switchover), so that it is reached there the instant it runs there (hand-over flows).
    assert reach(sim, VM_A) == {frozenset({("hv1", 1), ("hv2", 7)})}

    sim.port_event(link("hv2", 7, VM_A, up=True))  # the VM resumes at the destination
    sim.deliver_all()

    # Every switch now sends to the destination, before the source port is deleted.
    assert reach(sim, VM_A) == {frozenset({("hv2", 7)})}
    assert sim.leader.migration(mid).state == "activated"


def test_the_vms_announcement_activates_it_too(sim: SimCluster) -> None:
    ready_migration(sim, VM_A, "hv1", "hv2")
    assert sim.fabric is not None
    _, punted = sim.fabric.trace("hv2", 7, "ff:ff:ff:ff:ff:ff", VM_A)
    assert punted == {"hv2"}  # the pre-installed arrival flow copies its RARP to c2

    sim.run(sim.controllers["c2"].vm_announced("hv2", 7, VM_A, sim.now))
    sim.deliver_all()

    assert reach(sim, VM_A) == {frozenset({("hv2", 7)})}


def test_sync_complete_from_the_destination_comes_after_its_pre_installed_flows(
    sim: SimCluster,
) -> None:
    sim.notify(VM_A, "hv1", "hv2")
    msg = sim.queue.pop(first(sim, sync_to("c2"))).message
    assert isinstance(msg, VPortSync)

    out = sim.controllers["c2"].vport_sync(msg, sim.now)

    # The reply's promise covers the output's flow mods: the adapter barriers them first.
    assert isinstance(out.reply, SyncComplete)
    arrival = [m for m in out.flow_mods if m.flow.match.eth_src == VM_A]
    assert [m.switch for m in arrival] == ["hv2"]


def test_a_migration_raises_the_sequence_number_and_late_copies_cannot_roll_it_back(
    sim: SimCluster,
) -> None:
    c0 = sim.controllers["c0"]
    late = c0.vport(VM_A)  # a copy of the entry, as a lagging watch may still bring it

    ready_migration(sim, VM_A, "hv1", "hv2")
    switch_over(sim, VM_A, ("hv1", 1), ("hv2", 7))
    ready_migration(sim, VM_A, "hv2", "hv1")  # and back again: A→B→A
    switch_over(sim, VM_A, ("hv2", 7), ("hv1", 3))

    now = c0.vport(VM_A)
    assert now.seq == late.seq + 2
    assert (now.loc.ovs, now.loc.port) == ("hv1", 3)
    for ctl in sim.controllers.values():  # the late copy changes nothing anywhere
        assert not ctl.stored(late, sim.now)
        assert ctl.vport(VM_A) == now
    assert converged(sim)
    assert reach(sim, VM_A) == {frozenset({("hv1", 3)})}


def test_duplicated_messages_change_nothing(sim: SimCluster) -> None:
    mid = sim.notify(VM_A, "hv1", "hv2")
    for _ in range(len(sim.queue)):
        sim.deliver(0, keep=True)  # every message twice
        sim.deliver(0)
    sim.deliver_all()
    answers = [a for a in sim.answers if a.migration.id == mid]
    assert len(answers) == 1 and answers[0].ok
    assert converged(sim)


def test_abort_rolls_back_everywhere_and_the_failed_destination_port_does_not_remove_the_vm(
    sim: SimCluster,
) -> None:
    mid = ready_migration(sim, VM_A, "hv1", "hv2")
    sim.port_event(add("hv2", 7, VM_A))
    sim.deliver_all()

    sim.abort(mid)
    sim.deliver_all()

    assert sim.leader.migration(mid).state == "aborted"
    for ctl in sim.controllers.values():
        rec = ctl.vport(VM_A)
        assert rec.migration_state is MigrationState.NOT_MIGRATING
        assert (rec.loc.ovs, rec.loc.port, rec.port_state) == ("hv1", 1, PortState.UP)
    sim.port_event(link("hv2", 7, VM_A, up=True))  # the dead destination flaps
    sim.port_event(delete("hv2", 7, VM_A))  # and its tap is removed
    sim.deliver_all()
    assert all(holds(ctl, VM_A) for ctl in sim.controllers.values())
    assert reach(sim, VM_A) == {frozenset({("hv1", 1)})}
    assert converged(sim)


def test_a_migration_that_never_activates_times_out_and_rolls_back(sim: SimCluster) -> None:
    mid = ready_migration(sim, VM_A, "hv1", "hv2")

    sim.advance(TIMEOUTS.activation + 1)
    sim.deliver_all()

    assert sim.leader.migration(mid).state == "failed"
    for ctl in sim.controllers.values():
        assert ctl.vport(VM_A).migration_state is MigrationState.NOT_MIGRATING
    assert reach(sim, VM_A) == {frozenset({("hv1", 1)})}


def test_a_controller_that_never_answers_fails_the_notify_with_a_rollback(
    sim: SimCluster,
) -> None:
    mid = sim.notify(VM_A, "hv1", "hv2")
    sim.queue = [m for m in sim.queue if m.to != "c2"]  # c2 is unreachable
    sim.deliver_all()
    assert sim.answer_for(mid) is None

    sim.advance(TIMEOUTS.sync + 0.1)
    sim.deliver_all()

    answer = sim.answer_for(mid)
    assert answer is not None and isinstance(answer.error, NoController)
    for cid in ("c0", "c1"):
        rec = sim.controllers[cid].vport(VM_A)
        assert rec.migration_state is MigrationState.NOT_MIGRATING


def test_an_activated_migration_whose_source_stays_is_completed_and_the_late_delete_is_harmless(
    sim: SimCluster,
) -> None:
    mid = ready_migration(sim, VM_A, "hv1", "hv2")
    sim.port_event(add("hv2", 7, VM_A))
    sim.port_event(link("hv2", 7, VM_A, up=True))
    sim.deliver_all()

    sim.advance(TIMEOUTS.completion + 1)
    sim.deliver_all()
    assert sim.leader.migration(mid).state == "completed"
    sim.port_event(delete("hv1", 1, VM_A))  # the source tap finally goes
    sim.deliver_all()

    for ctl in sim.controllers.values():
        rec = ctl.vport(VM_A)
        assert (rec.loc.ovs, rec.migration_state) == ("hv2", MigrationState.NOT_MIGRATING)
    assert reach(sim, VM_A) == {frozenset({("hv2", 7)})}


def test_notify_is_idempotent_and_a_second_destination_is_refused(sim: SimCluster) -> None:
    request = NotifyRequest(VM_A, "hv1", "hv2")
    started = sim.leader.notify(request, sim.now)
    sim.run(started)
    again = sim.leader.notify(request, sim.now)
    assert started.reply is not None and started.reply.new
    assert again.reply is not None and not again.reply.new and not again
    assert again.reply.migration.id == started.reply.migration.id
    try:
        sim.leader.notify(NotifyRequest(VM_A, "hv1", "hv0"), sim.now)
    except AlreadyMigrating as err:
        assert "hv2" in err.detail
    else:
        raise AssertionError("a second destination was accepted")


def test_an_activated_migration_cannot_be_aborted(sim: SimCluster) -> None:
    mid = ready_migration(sim, VM_A, "hv1", "hv2")
    sim.port_event(add("hv2", 7, VM_A))
    sim.port_event(link("hv2", 7, VM_A, up=True))
    sim.deliver_all()
    try:
        sim.abort(mid)
    except MigrationConflict as err:
        assert "hv2" in err.detail
    else:
        raise AssertionError("aborted a VM already running at its destination")


def test_a_vm_removed_everywhere_when_its_port_goes_and_it_is_not_migrating(
    sim: SimCluster,
) -> None:
    sim.port_event(delete("hv1", 1, VM_A))
    sim.deliver_all()
    assert all(not holds(ctl, VM_A) for ctl in sim.controllers.values())
    assert reach(sim, VM_A) == {frozenset()}


def test_vport_sync_duplicate_is_answered_again(sim: SimCluster) -> None:
    sim.notify(VM_A, "hv1", "hv2")
    sync = sim.queue[first(sim, sync_to("c1"))].message
    assert isinstance(sync, VPortSync)
    once = sim.controllers["c1"].vport_sync(sync, sim.now)
    twice = sim.controllers["c1"].vport_sync(sync, sim.now)
    assert isinstance(once.reply, SyncComplete) and twice.reply == once.reply
    assert not (twice.writes or twice.messages or twice.answers)  # applied already
    c1 = sim.controllers["c1"]  # (its flows again, as held: the promise's own barrier)
    assert all(m.flow in c1.installed(m.switch) for m in twice.flow_mods)


def test_a_sync_whose_entry_came_from_the_store_first_still_carries_the_vms_flows(
    sim: SimCluster,
) -> None:
    """The promise of sync complete must not lean on an earlier output (its flows may
    still wait behind a storm's): the sync's own output holds the VM's flows."""
    sim.notify(VM_A, "hv1", "hv2")
    msg = sim.queue.pop(first(sim, sync_to("c2"))).message
    assert isinstance(msg, VPortSync)
    c2 = sim.controllers["c2"]
    c2.stored(msg.record, sim.now)  # the store's watch brought the entry first

    out = c2.vport_sync(msg, sim.now)

    assert isinstance(out.reply, SyncComplete)
    arrival = [m for m in out.flow_mods if m.flow.match.eth_src == VM_A]
    assert [(m.switch, m.command) for m in arrival] == [("hv2", FlowCommand.ADD)]
