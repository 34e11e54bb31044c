"""Flap damping: a VM that moved 5 times in 180 s is refused a 6th move until its window clears.

As EVPN damps MAC mobility (RFC 7432 §15.1). A move is a migration that
completed (the VM became active at its destination); aborted ones do not
count. The refusal carries when the VM may move again, changes nothing, and
never refuses the same notify of a migration the leader already has. Each
move gives the VM's record of moves for the store, and a new leader started
from those records damps as the old one would have.
"""

from __future__ import annotations

import pytest

from tests.core.support import (
    TIMEOUTS,
    VM_A,
    VM_B,
    add,
    boot,
    delete,
    link,
    mesh,
    switch_over,
    table,
)  # fmt: skip
from vportd.core.errors import MigrationSuppressed
from vportd.core.flaps import FlapLimit, Moves, MoveTimes
from vportd.core.messages import NotifyRequest
from vportd_lab.sim.cluster import SimCluster

WINDOW = 180.0


@pytest.fixture
def sim() -> SimCluster:
    """The default limit (5 moves in 180 s); VM_A on hv1 port 1."""
    s = SimCluster.build(mesh(3), 3, timeouts=TIMEOUTS, flaps=FlapLimit())
    boot(s, VM_A, "hv1", 1)
    return s


class Hopper:
    """VM_A hops hv1 -> hv2 -> hv1 ..., each hop a completed migration on a new port."""

    def __init__(self, sim: SimCluster) -> None:
        self.sim = sim
        self.here, self.port, self.hops = "hv1", 1, 0

    @property
    def there(self) -> str:
        return "hv2" if self.here == "hv1" else "hv1"

    def hop(self) -> str:
        mid = self.sim.notify(VM_A, self.here, self.there)
        self.sim.deliver_all()
        port = 10 + self.hops
        switch_over(self.sim, VM_A, (self.here, self.port), (self.there, port))
        assert self.sim.leader.migration(mid).state == "completed"
        self.here, self.port, self.hops = self.there, port, self.hops + 1
        return mid

    def refusal(self) -> MigrationSuppressed:
        with pytest.raises(MigrationSuppressed) as refused:
            self.sim.leader.notify(NotifyRequest(VM_A, self.here, self.there), self.sim.now)
        return refused.value


def five_moves_ten_seconds_apart(sim: SimCluster) -> Hopper:
    """Moves at t = 10, 20, 30, 40, 50."""
    hopper = Hopper(sim)
    for _ in range(5):
        sim.advance(10)
        hopper.hop()
    return hopper


def test_the_sixth_move_in_the_window_is_refused_until_the_first_leaves_it(
    sim: SimCluster,
) -> None:
    hopper = five_moves_ten_seconds_apart(sim)
    sim.advance(10)  # t = 60

    refused = hopper.refusal()

    assert (refused.vm, refused.moves) == (VM_A, 5)
    assert refused.retry_after == 10 + WINDOW - 60  # the move at t = 10 leaves at 190
    assert refused.code == "migration-suppressed"
    sim.advance(129)  # t = 189: still five moves in the window
    assert hopper.refusal().retry_after == 1


def test_the_vm_moves_again_once_its_window_clears(sim: SimCluster) -> None:
    hopper = five_moves_ten_seconds_apart(sim)
    sim.advance(10 + WINDOW - 50)  # t = 190: the move at t = 10 left the window

    hopper.hop()

    assert sim.leader.vport(VM_A).loc.ovs == hopper.here
    # The window slides: moves at 20, 30, 40, 50 and 190; the one at 20 leaves at 200.
    assert hopper.refusal().retry_after == 10


def test_the_same_notify_of_a_migration_the_leader_has_is_never_refused(
    sim: SimCluster,
) -> None:
    hopper = Hopper(sim)
    for _ in range(4):
        hopper.hop()
    src, dst = hopper.here, hopper.there
    mid = sim.notify(VM_A, src, dst)
    sim.deliver_all()
    # The VM comes up at the destination (its 5th move) but its source port stays: the
    # migration is activated, still open, and the window is full.
    sim.port_event(add(dst, 50, VM_A))
    sim.port_event(link(dst, 50, VM_A, up=True))
    sim.deliver_all()
    assert sim.leader.migration(mid).state == "activated"

    again = sim.leader.notify(NotifyRequest(VM_A, src, dst), sim.now)

    assert again.reply is not None
    assert (again.reply.migration.id, again.reply.new) == (mid, False)
    sim.port_event(delete(src, hopper.port, VM_A))  # the migration completes
    sim.deliver_all()
    with pytest.raises(MigrationSuppressed):  # the window was full all along
        sim.leader.notify(NotifyRequest(VM_A, dst, "hv0"), sim.now)


def test_the_same_notify_of_the_completed_fifth_move_is_not_refused(sim: SimCluster) -> None:
    hopper = Hopper(sim)
    for _ in range(4):
        hopper.hop()
    src, dst = hopper.here, hopper.there
    mid = hopper.hop()

    again = sim.leader.notify(NotifyRequest(VM_A, src, dst), sim.now)

    assert again.reply is not None
    assert (again.reply.migration.id, again.reply.new) == (mid, False)


def test_a_refused_notify_changes_nothing(sim: SimCluster) -> None:
    hopper = five_moves_ten_seconds_apart(sim)
    before = (
        {cid: table(ctl) for cid, ctl in sim.controllers.items()},
        sim.leader.migrations(), dict(sim.store), list(sim.queue), len(sim.writes),
    )  # fmt: skip

    hopper.refusal()
    sim.deliver_all()

    after = (
        {cid: table(ctl) for cid, ctl in sim.controllers.items()},
        sim.leader.migrations(), dict(sim.store), list(sim.queue), len(sim.writes),
    )  # fmt: skip
    assert after == before


def test_aborted_migrations_are_not_moves(sim: SimCluster) -> None:
    for _ in range(6):
        mid = sim.notify(VM_A, "hv1", "hv2")
        sim.deliver_all()
        sim.abort(mid)
        sim.deliver_all()
        assert sim.leader.migration(mid).state == "aborted"

    mid = sim.notify(VM_A, "hv1", "hv2")

    assert sim.leader.migration(mid).state in ("preparing", "ready")


def test_without_a_limit_a_vm_moves_as_often_as_it_is_told() -> None:
    sim = SimCluster.build(mesh(3), 3, timeouts=TIMEOUTS)
    boot(sim, VM_A, "hv1", 1)
    hopper = Hopper(sim)
    for _ in range(8):
        hopper.hop()
    assert sim.leader.vport(VM_A).loc.ovs == hopper.here


# -- across a leader change: the moves as the store holds them ----------------


def test_each_move_gives_the_vms_record_of_moves_for_the_store(sim: SimCluster) -> None:
    boot(sim, VM_B, "hv0", 2)  # a VM that never moves has no record
    hopper = five_moves_ten_seconds_apart(sim)
    assert sim.moves == {VM_A: MoveTimes(VM_A, (10.0, 20.0, 30.0, 40.0, 50.0))}

    sim.advance(10 + WINDOW - 50)  # t = 190: the first leaves the window
    hopper.hop()

    # The newest five only: an older move can decide no refusal.
    assert sim.moves[VM_A].times == (20.0, 30.0, 40.0, 50.0, 190.0)


def test_a_new_leader_refuses_what_the_old_one_would_until_the_window_clears(
    sim: SimCluster,
) -> None:
    hopper = five_moves_ten_seconds_apart(sim)
    sim.advance(10)  # t = 60
    sim.hand_over("c1")
    assert sim.leader.me == "c1"

    refused = hopper.refusal()

    assert (refused.moves, refused.retry_after) == (5, 10 + WINDOW - 60)
    sim.advance(129)  # t = 189: the move at t = 10 is still in the window
    assert hopper.refusal().retry_after == 1
    sim.advance(1)  # t = 190: it left
    hopper.hop()
    assert sim.leader.vport(VM_A).loc.ovs == hopper.here


def test_a_new_leader_admits_a_vm_whose_moves_left_the_window_and_deletes_their_record(
    sim: SimCluster,
) -> None:
    hopper = five_moves_ten_seconds_apart(sim)
    sim.hand_over("c1")  # t = 50
    sim.advance(WINDOW)  # t = 230: the move at t = 50 left the window

    assert sim.moves == {}
    hopper.hop()
    assert sim.moves == {VM_A: MoveTimes(VM_A, (230.0,))}


def test_a_record_is_deleted_once_its_last_move_leaves_the_window(sim: SimCluster) -> None:
    hopper = Hopper(sim)
    sim.advance(10)
    hopper.hop()  # t = 10
    sim.advance(WINDOW - 1)
    assert VM_A in sim.moves
    sim.advance(1)  # t = 190

    assert sim.moves == {}


def test_a_leader_restored_from_records_refuses_at_the_windows_edge() -> None:
    moves = Moves(FlapLimit(moves=2, window=100.0))
    moves.restore([MoveTimes(VM_A, (30.0, 10.0)), MoveTimes(VM_B, (5.0,))])

    with pytest.raises(MigrationSuppressed) as refused:
        moves.check(VM_A, 109.5)
    assert refused.value.retry_after == 0.5
    moves.check(VM_A, 110.0)  # the move at t = 10 left the window: admitted
    moves.check(VM_B, 0.0)
    assert moves.forget(110.0) == [MoveTimes(VM_B, ())]  # VM_B's window is empty: delete
    assert moves.moved(VM_A, 110.0) == MoveTimes(VM_A, (30.0, 110.0))
