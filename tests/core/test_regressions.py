"""Regressions the stateful test (test_stateful.py) found in the core, one test each.

Set-up (see conftest): hv0, hv1, hv2 in a mesh mastered by c0, c1, c2; c0 leads.
VM A is on hv1 port 1, VM B on hv2 port 1, VM C on hv0 port 1. "On its way"
means still in the sim's queue: a record the store's watch has not brought to a
controller yet, or a vPort sync or its answer.
"""

from __future__ import annotations

import pytest

from tests.core.support import (
    TIMEOUTS,
    VM_A,
    VM_B,
    VM_C,
    add,
    boot,
    converged,
    delete,
    entries,
    first,
    holds,
    link,
    reach,
    ready_migration,
    start_migration,
    switch_over,
)
from vportd.core.controller import Controller
from vportd.core.errors import NotOnSource
from vportd.core.messages import (
    EventKind,
    NotifyRequest,
    PortEvent,
    SyncComplete,
    SyncRefused,
    VPortSync,
)
from vportd.core.model import Location, MigrationState, PortState, VPortRecord
from vportd.core.table import VPortTable
from vportd.core.topology import Link
from vportd_lab.sim.cluster import InFlight, SimCluster, Stored

UP, DOWN = PortState.UP, PortState.DOWN
MIGRATING, NOT_MIGRATING = MigrationState.MIGRATING, MigrationState.NOT_MIGRATING


def deliver_stored(sim: SimCluster, to: str, vm: str) -> None:
    """Deliver the first pending stored record of `vm` to `to`, and only it."""
    sim.deliver(first(sim, lambda m: m.to == to and stored(m, vm)))


def stored(item: InFlight, vm: str) -> bool:
    return isinstance(item.message, Stored) and item.message.record.vm == vm


def next_stored(sim: SimCluster, to: str, vm: str) -> VPortRecord:
    """The record of `vm` the store's watch brings `to` next."""
    item = sim.queue[first(sim, lambda m: m.to == to and stored(m, vm))].message
    assert isinstance(item, Stored)
    return item.record


def catch_up(sim: SimCluster, to: str, vm: str) -> None:
    """`to`'s watch of the store brings it every pending record of `vm`, before the others'."""
    while any(m.to == to and stored(m, vm) for m in sim.queue):
        deliver_stored(sim, to, vm)


def is_sync(item: InFlight, migration_id: str) -> bool:
    return isinstance(item.message, VPortSync) and item.message.migration_id == migration_id


def handshake(item: InFlight) -> bool:
    return isinstance(item.message, VPortSync | SyncComplete | SyncRefused)


def first_sync(sim: SimCluster, to: str) -> int:
    """Where the first pending vPort sync for `to` is in the queue."""
    return first(sim, lambda m: m.to == to and isinstance(m.message, VPortSync))


def test_a_link_change_at_the_source_that_the_rollback_overtakes_is_kept(
    sim: SimCluster,
) -> None:
    mid = ready_migration(sim, VM_A, "hv1", "hv2")
    sim.abort(mid)  # the rollback is on its way when the VM's link at the source drops
    sim.port_event(link("hv1", 1, VM_A, up=False))

    sim.deliver_all()

    # c1's OVS says the link is down: the rollback's copy of the entry (link up) loses.
    assert entries(sim, VM_A) == {("hv1", 1, DOWN, NOT_MIGRATING)}
    assert converged(sim)


def test_a_vm_deleted_at_the_source_after_an_abort_stays_deleted_when_the_rollback_arrives(
    sim: SimCluster,
) -> None:
    mid = ready_migration(sim, VM_A, "hv1", "hv2")
    sim.abort(mid)
    sim.port_event(delete("hv1", 1, VM_A))  # before c1 hears of the abort

    sim.deliver_all()

    assert all(not holds(ctl, VM_A) for ctl in sim.controllers.values())
    assert reach(sim, VM_A) == {frozenset()}
    assert converged(sim)


def test_a_vm_booted_elsewhere_before_its_removal_is_heard_there_is_kept(
    sim: SimCluster,
) -> None:
    vm = "02:00:00:00:00:d1"
    sim.port_event(add("hv1", 5, vm))
    sim.port_event(link("hv1", 5, vm, up=True))
    sim.port_event(delete("hv1", 5, vm))  # gone from hv1; c2 has heard nothing of it yet
    sim.port_event(add("hv2", 5, vm))  # when it starts on hv2
    sim.port_event(link("hv2", 5, vm, up=True))

    sim.deliver_all()

    assert entries(sim, vm) == {("hv2", 5, UP, NOT_MIGRATING)}
    assert reach(sim, vm) == {frozenset({("hv2", 5)})}


def test_a_rollback_to_a_port_that_is_gone_moves_the_vm_to_its_port_of_now(
    sim: SimCluster,
) -> None:
    mid = start_migration(sim, VM_A, "hv1", "hv2")
    sim.abort(mid)
    sim.port_event(delete("hv1", 1, VM_A))  # A's tap on hv1 is re-created as port 3
    sim.port_event(add("hv1", 3, VM_A))
    sim.port_event(link("hv1", 3, VM_A, up=True))

    sim.deliver_all()

    assert entries(sim, VM_A) == {("hv1", 3, UP, NOT_MIGRATING)}
    assert reach(sim, VM_A) == {frozenset({("hv1", 3)})}
    assert converged(sim)


def test_a_vm_a_late_rollback_removed_is_found_where_it_runs_before_its_next_migration(
    sim: SimCluster,
) -> None:
    one = start_migration(sim, VM_A, "hv1", "hv2")
    sim.abort(one)  # its rollback (to hv1 port 1) is on its way to c1 when A leaves hv1...
    sim.port_event(delete("hv1", 1, VM_A))
    sim.port_event(add("hv0", 4, VM_A))  # ...and starts on hv0
    sim.port_event(link("hv0", 4, VM_A, up=True))
    # c0 places A where its rollback put it (hv1 port 1, up): hv0 port 4 is a second
    # port with A's MAC until c1's word on hv1 port 1 comes (F-d), so a migration
    # from hv0 is refused meanwhile.
    with pytest.raises(NotOnSource):
        start_migration(sim, VM_A, "hv0", "hv2")

    sim.deliver_all()  # c1 removes A from hv1 port 1; c0 then places it where it runs

    assert entries(sim, VM_A) == {("hv0", 4, UP, NOT_MIGRATING)}
    second = start_migration(sim, VM_A, "hv0", "hv2")
    sim.deliver_all()
    answer = sim.answer_for(second)
    assert answer is not None and answer.ok
    assert entries(sim, VM_A) == {("hv0", 4, UP, MIGRATING)}
    assert reach(sim, VM_A) == {frozenset({("hv0", 4)})}
    assert converged(sim)


def test_a_late_rollback_to_a_dead_port_is_corrected_under_the_vms_next_migration(
    sim: SimCluster,
) -> None:
    sim.port_event(delete("hv2", 1, VM_B))  # B's tap is re-created as hv2 port 5
    sim.port_event(add("hv2", 5, VM_B))
    sim.port_event(link("hv2", 5, VM_B, up=True))
    start_migration(sim, VM_B, "hv2", "hv1")  # the leader, not aware yet, notifies
    sim.advance(TIMEOUTS.sync + 0.1)  # and fails it: its rollback says "hv2 port 1"
    second = start_migration(sim, VM_B, "hv2", "hv1")  # the VMM tries again
    sim.deliver(next(i for i, m in enumerate(sim.queue) if m.to == "c2" and is_sync(m, second)))

    sim.deliver_all()  # c2, migrating B, gets the late rollback to the port it deleted

    answer = sim.answer_for(second)
    assert answer is not None and answer.ok
    assert entries(sim, VM_B) == {("hv2", 5, UP, MIGRATING)}
    assert reach(sim, VM_B) == {frozenset({("hv2", 5)})}
    assert converged(sim)


def test_a_vm_started_elsewhere_under_a_stale_migration_mark_is_found_where_it_runs(
    sim: SimCluster,
) -> None:
    start_migration(sim, VM_A, "hv1", "hv0")
    deliver_stored(sim, "c2", VM_A)  # c2 marks A migrating
    sim.port_event(delete("hv1", 1, VM_A))  # A goes from hv1 (c1 has not heard of it)...
    sim.advance(TIMEOUTS.sync + 0.1)  # c1 never answers: the leader fails the migration
    sim.port_event(add("hv2", 5, VM_A))  # ...and starts on hv2, where c2 still believes
    sim.port_event(link("hv2", 5, VM_A, up=True))  # in it: the events count for nothing yet
    assert not next_stored(sim, "c2", VM_A).present
    deliver_stored(sim, "c2", VM_A)  # A's removal reaches c2 before the rollback

    sim.port_event(link("hv2", 5, VM_A, up=False))  # not an unknown VM on hv2: it is there
    sim.deliver_all()

    assert entries(sim, VM_A) == {("hv2", 5, DOWN, NOT_MIGRATING)}
    assert reach(sim, VM_A) == {frozenset({("hv2", 5)})}
    assert converged(sim)


def test_a_vm_started_on_the_destination_of_a_stale_migration_is_kept_by_its_master(
    sim: SimCluster,
) -> None:
    start_migration(sim, VM_A, "hv1", "hv2")
    sim.advance(TIMEOUTS.sync + 0.1)  # nobody answered: the leader fails it
    sim.port_event(delete("hv1", 1, VM_A))  # A goes from hv1 and starts on hv2
    sim.port_event(add("hv2", 5, VM_A))
    sim.port_event(link("hv2", 5, VM_A, up=True))
    sim.deliver(first_sync(sim, to="c2"))  # the stale sync

    assert sim.controllers["c2"].entry(VM_A) is not None  # c2 does not remove A
    sim.port_event(link("hv2", 5, VM_A, up=False))
    sim.deliver_all()

    assert entries(sim, VM_A) == {("hv2", 5, DOWN, NOT_MIGRATING)}
    assert reach(sim, VM_A) == {frozenset({("hv2", 5)})}
    assert converged(sim)


def test_an_event_on_a_port_our_ovs_reported_is_taken_while_a_peer_says_the_vm_is_gone() -> None:
    table = VPortTable("c2")
    vm = "02:00:00:00:00:d2"
    table.port_event(add("hv2", 5, vm))
    table.port_event(link("hv2", 5, vm, up=True))
    gone = Location(None, None, None, False, seq=3, rev=0, writer="c1")
    table.apply_copy(VPortRecord(vm, gone))  # a removal elsewhere, newer than our boot

    change = table.port_event(link("hv2", 5, vm, up=False))  # not an unknown VM: it is here

    rec = table.get(vm)
    assert change is not None and rec is not None and change.record == rec
    assert (rec.loc.ovs, rec.loc.port, rec.port_state) == ("hv2", 5, DOWN)
    assert rec.loc.version > gone.version


def test_a_port_delete_under_a_mark_the_vm_moved_past_removes_it_with_a_newer_entry(
    sim: SimCluster,
) -> None:
    start_migration(sim, VM_A, "hv1", "hv2")  # the leader sees A on hv1 port 1...
    sim.port_event(delete("hv1", 1, VM_A))  # ...but its tap is re-created as port 5
    sim.port_event(add("hv1", 5, VM_A))
    sim.port_event(link("hv1", 5, VM_A, up=True))
    c1 = sim.controllers["c1"]
    sim.deliver(first_sync(sim, to="c1"))
    before = c1.vport(VM_A)
    assert before.migrating  # under the mark of a migration A has moved past

    sim.port_event(delete("hv1", 5, VM_A))  # A is removed

    after = c1.record(VM_A)  # removed, not "completed" to hv2 with an older entry
    assert after is not None and not after.present
    assert after.loc.version > before.loc.version
    sim.deliver_all()
    assert all(not holds(ctl, VM_A) for ctl in sim.controllers.values())
    assert reach(sim, VM_A) == {frozenset()}
    assert converged(sim)


def test_a_rollback_to_a_place_whose_port_the_leader_never_learned_is_completed_by_its_master(
    sim: SimCluster,
) -> None:
    ready_migration(sim, VM_A, "hv1", "hv2")
    sim.port_event(add("hv2", 7, VM_A))  # A's tap on hv2...
    sim.port_event(delete("hv1", 1, VM_A))  # ...and A goes from hv1 before c1 hears of port 7
    catch_up(sim, "c0", VM_A)  # the leader learns "completed, on hv2 (port unknown)"
    sim.port_event(link("hv2", 7, VM_A, up=True))  # A runs on hv2 port 7 (c2 writes it later)
    known = sim.leader.vport(VM_A)
    assert (known.loc.ovs, known.loc.port) == ("hv2", None)
    back = start_migration(sim, VM_A, "hv2", "hv0")
    sim.abort(back)  # its rollback carries the place the leader knows: hv2, no port

    sim.deliver_all()

    assert entries(sim, VM_A) == {("hv2", 7, UP, NOT_MIGRATING)}
    assert reach(sim, VM_A) == {frozenset({("hv2", 7)})}
    assert converged(sim)


def test_a_notify_again_right_after_an_abort_is_a_new_migration_with_a_new_id(
    sim: SimCluster,
) -> None:
    one = start_migration(sim, VM_A, "hv1", "hv2")
    sim.abort(one)  # nobody has heard of the first migration yet

    second = start_migration(sim, VM_A, "hv1", "hv2")
    sim.deliver_all()

    assert second != one
    answer = sim.answer_for(second)
    assert answer is not None and answer.ok and answer.migration.state == "ready"


def test_rollbacks_of_two_quick_migrations_leave_every_table_equal(sim: SimCluster) -> None:
    one = start_migration(sim, VM_A, "hv1", "hv2")
    sim.abort(one)
    catch_up(sim, "c1", VM_A)
    # c1 learns A's address after the rollback; the leader hears of it before c2 does.
    sim.port_event(PortEvent(EventKind.MODIFY, "hv1", 1, VM_A, "tap1", True, ("10.0.0.9",)))
    catch_up(sim, "c0", VM_A)
    second = start_migration(sim, VM_A, "hv1", "hv2")
    sim.abort(second)  # a second rollback, with the address in its copy of the entry
    rollbacks = [i for i, m in enumerate(sim.queue) if m.to == "c2" and stored(m, VM_A)]
    sim.deliver(rollbacks[-1])  # c2 gets the second rollback before the first

    sim.deliver_all()

    assert converged(sim)
    assert {ctl.vport(VM_A).loc.ips for ctl in sim.controllers.values()} == {("10.0.0.9",)}


def test_a_vm_moved_on_the_leaders_own_switch_after_its_rollback_converges(
    sim: SimCluster,
) -> None:
    # VM C is on hv0, which the leader (c0) masters itself.
    mid = ready_migration(sim, VM_C, "hv0", "hv1")
    sim.abort(mid)  # c0 applies its rollback at once; it is on its way to the others...
    sim.port_event(delete("hv0", 1, VM_C))  # ...when C's tap on hv0 is re-created
    sim.port_event(add("hv0", 4, VM_C))
    sim.port_event(link("hv0", 4, VM_C, up=True))

    sim.deliver_all()

    # c0's table and c0 as leader wrote one sequence number each: never one version.
    assert converged(sim)
    assert entries(sim, VM_C) == {("hv0", 4, UP, NOT_MIGRATING)}
    assert reach(sim, VM_C) == {frozenset({("hv0", 4)})}


def test_a_duplicated_sync_does_not_fail_a_migration_in_progress(sim: SimCluster) -> None:
    mid = sim.notify(VM_A, "hv1", "hv2")
    duplicate = sim.queue[first_sync(sim, to="c2")]  # the destination's sync
    sim.deliver_all()
    sim.port_event(add("hv2", 7, VM_A))  # the destination port appears
    sim.deliver_all()

    sim.queue.append(duplicate)  # and the sync arrives once more
    sim.deliver_all()

    assert sim.leader.migration(mid).state == "ready"
    switch_over(sim, VM_A, ("hv1", 1), ("hv2", 7))
    assert sim.leader.migration(mid).state == "completed"
    assert reach(sim, VM_A) == {frozenset({("hv2", 7)})}


def test_a_notify_from_a_stale_view_of_the_vm_is_refused_before_the_vmm_moves_it(
    sim: SimCluster,
) -> None:
    sim.port_event(delete("hv2", 1, VM_B))  # B's tap is re-created as hv2 port 5,
    sim.port_event(add("hv2", 5, VM_B))
    sim.port_event(link("hv2", 5, VM_B, up=True))
    mid = sim.notify(VM_B, "hv2", "hv1")  # and the leader, which has not heard, notifies

    while any(handshake(m) for m in sim.queue):  # the handshake goes faster than the news
        sim.deliver(next(i for i, m in enumerate(sim.queue) if handshake(m)))

    # c2 knows: the migration's activation could not outrank where B is now.
    answer = sim.answer_for(mid)
    assert answer is not None and answer.error is not None
    assert "refused the sync" in answer.error.detail
    sim.deliver_all()
    assert entries(sim, VM_B) == {("hv2", 5, UP, NOT_MIGRATING)}
    assert reach(sim, VM_B) == {frozenset({("hv2", 5)})}


def test_a_migration_the_vms_late_history_went_past_fails_at_once(sim: SimCluster) -> None:
    vm = "02:00:00:00:00:d3"
    boot(sim, vm, "hv1", 5)
    # Removed from hv1, then started and removed there twice more: c1 is at seq 2,
    # and its writes reach the store of record later.
    c1 = sim.controllers["c1"]
    events = [delete("hv1", 5, vm)]
    for port in (6, 8):
        events += [add("hv1", port, vm), link("hv1", port, vm, up=True), delete("hv1", port, vm)]
    news = [c1.port_event(ev, sim.now) for ev in events]
    sim.run(news[0])  # only the first removal is heard of
    sim.deliver_all()
    sim.port_event(add("hv0", 7, vm))  # the VM starts on hv0: seq 1 for c0
    sim.port_event(link("hv0", 7, vm, up=True))
    sim.deliver_all()
    mid = ready_migration(sim, vm, "hv0", "hv2")  # answered: neither end has heard yet

    for out in news[1:]:  # the old news arrive
        sim.run(out)
    sim.deliver_all()

    # The VM's seq went past the migration's: it could not activate. It fails now,
    # rather than at its deadline, and the VM stays where it runs.
    assert sim.leader.migration(mid).state == "failed"
    assert entries(sim, vm) == {("hv0", 7, UP, NOT_MIGRATING)}
    assert reach(sim, vm) == {frozenset({("hv0", 7)})}
    assert converged(sim)


def test_a_repeated_notify_is_answered_the_same_while_the_leaders_table_lags(
    sim: SimCluster,
) -> None:
    started = start_migration(sim, VM_A, "hv1", "hv2")
    sim.port_event(delete("hv1", 1, VM_A))  # A's tap goes (before c1 hears of the sync)
    catch_up(sim, "c0", VM_A)  # and the leader hears of that first

    again = sim.leader.notify(NotifyRequest(VM_A, "hv1", "hv2"), sim.now)

    assert again.reply is not None and not again
    assert (again.reply.migration.id, again.reply.new) == (started, False)


def test_a_new_migration_along_a_path_travelled_before_is_not_answered_with_the_old_one(
    sim: SimCluster,
) -> None:
    old = ready_migration(sim, VM_A, "hv1", "hv2")
    switch_over(sim, VM_A, ("hv1", 1), ("hv2", 7))
    sim.port_event(delete("hv2", 7, VM_A))  # A is removed
    sim.deliver_all()
    boot(sim, VM_A, "hv1", 3)  # and started again on hv1

    out = sim.leader.notify(NotifyRequest(VM_A, "hv1", "hv2"), sim.now)

    assert out.reply is not None and out.reply.new
    view = out.reply.migration
    assert view.id != old and view.state == "preparing"
    sim.run(out)
    sim.deliver_all()
    answer = sim.answer_for(view.id)
    assert answer is not None and answer.ok


def test_an_entry_on_a_switch_this_controller_does_not_know_yet_makes_no_flows() -> None:
    """A peer's (or the store's) entry may name a switch our OVSDB has not shown yet.

    Found in the 3-controller lab: the merge crashed the controller with a
    KeyError in the topology. It must apply, make no flow towards the unknown
    switch, and route there once the switch and its link appear.
    """
    ctl = Controller("c0")
    ctl.switch_seen("hv0", 1)
    ctl.gain_switch("hv0", (), 0.0)
    ctl.flows_read("hv0", ())
    rec = VPortRecord("02:00:00:00:00:07", Location("hv9", 3, "tap", True, 0, 0, "c1"), None)
    assert ctl.stored(rec, 0.0).flow_mods == []
    assert ctl.vport(rec.vm) == rec
    ctl.switch_seen("hv9", 9)
    mods = ctl.links_are([Link("hv0", 109, "hv9", 100)]).flow_mods
    assert any(m.flow.match.eth_dst == rec.vm and "109" in repr(m.flow.actions) for m in mods)
