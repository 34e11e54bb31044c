"""The leader's migration coordinator (claims 6 and 7, plus abort and timeouts).

notify → the migration's record (the VM's entry, migrating) to the store of
record and a vPort sync to the source's and the destination's controllers →
both answer sync complete → notify complete to the VMM. A migration that is
aborted, whose controllers do not answer, or whose VM never becomes active at
the destination is rolled back everywhere; one whose VM became active but
whose source port never goes away is completed. What the leader decides for a
VM is a record of its own (`Decision`), which every controller applies. With
a `FlapLimit`, a VM that moved too often lately is refused (`core.flaps`).

Each migration keeps its timeline, the steps it went through with the `now`
of the input that took it there, and the downtime a VMM or the lab measured
of its traffic, if one reported it (only the newest `ARRIVALS_KEPT` reports
keep their packets' arrivals).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from vportd.core.errors import (
    AlreadyMigrating,
    CoreError,
    InvalidRequest,
    MigrationConflict,
    NoController,
    NotOnSource,
    UnknownMigration,
)
from vportd.core.flaps import FlapLimit, Moves, MoveTimes
from vportd.core.membership import Membership
from vportd.core.messages import (
    DowntimeReport,
    EventKind,
    MigrationView,
    NotifyAnswer,
    NotifyRequest,
    Output,
    Reason,
    SyncComplete,
    SyncRefused,
    Write,
)
from vportd.core.model import Location, MigrationMark, Phase, VPortRecord
from vportd.core.table import VPortTable


class Status(StrEnum):
    PREPARING = "preparing"
    READY = "ready"
    ACTIVATED = "activated"
    COMPLETED = "completed"
    ABORTED = "aborted"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in _FINISHED


# (A tuple: `in` compares by identity first, then as str; an enum's hash is Python code.)
_FINISHED = (Status.COMPLETED, Status.ABORTED, Status.FAILED)
# The states of a migration whose VM moved: it became active at the destination.
_MOVED = (Status.ACTIVATED, Status.COMPLETED)
# Downtime reports that keep their arrivals (thousands of times each); older ones
# keep each direction's gap and loss only, so that the history stays small.
ARRIVALS_KEPT = 20


_STATUS_OF_PHASE = {
    Phase.ACTIVATED: Status.ACTIVATED,
    Phase.COMPLETED: Status.COMPLETED,
    Phase.ABORTED: Status.ABORTED,
    Phase.FAILED: Status.FAILED,
}


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds; `activation` must cover the VMM's whole pre-copy."""

    sync: float = 2.0
    activation: float = 300.0
    completion: float = 30.0


@dataclass(frozen=True, slots=True)
class History:
    """How many finished migrations the leader keeps, and for how many seconds."""

    size: int = 1000
    age: float = 3600.0


@dataclass(frozen=True, slots=True)
class Started:
    """A new migration: the entry to sync, and the controllers whose answers it waits for."""

    migration_id: str
    record: VPortRecord
    awaiting: frozenset[str]


# What the coordinator decides: the leader's records for every controller to apply
# (`Write`s with `leader` set), and answers for waiting VMMs.
Decision = Output[None]


@dataclass(slots=True)  # the leader keeps thousands
class Migration:
    id: str
    vm: str
    source: str
    destination: str
    epoch: int
    seq: int
    origin: Location
    state: Status
    deadline: float
    awaiting: set[str] = field(default_factory=set)
    answered: bool = False
    reason: str | None = None
    timeline: list[tuple[str, float]] = field(default_factory=list)  # (step, now), in order
    downtime: DowntimeReport | None = None

    def view(self) -> MigrationView:
        # (`_value_`: the enum's `value` is a property, Python code.)
        state: str = self.state._value_
        return MigrationView(
            self.id, self.vm, self.source, self.destination, state, self.seq, self.reason,
            tuple(self.timeline), self.downtime,
        )  # fmt: skip

    def step(self, name: str, now: float) -> None:
        self.timeline.append((name, now))

    def mark(self, phase: Phase, writer: str) -> MigrationMark:
        return MigrationMark(
            self.epoch, self.id, self.source, self.destination, self.seq, phase, writer
        )


class Coordinator:
    """Runs on the leader only; everything it decides goes out as effects."""

    def __init__(
        self,
        me: str,
        timeouts: Timeouts | None = None,
        history: History | None = None,
        flaps: FlapLimit | None = None,
    ) -> None:
        self.me = me
        # Rollbacks are locations the leader writes, apart from what its own table
        # writes for the switches it masters: a writer id of their own, so that
        # the two never write different entries under one version.
        self.writer = f"{me}/leader"
        self.timeouts = timeouts or Timeouts()
        self.history = history or History()
        self.migrations: dict[str, Migration] = {}  # by id, oldest first
        self._latest: dict[str, str] = {}
        # The unfinished ones, so that a tick costs what is in flight, not the history.
        self._open: dict[str, Migration] = {}
        # The finished ones in the order they finished, with when: forgotten oldest first.
        self._ended: deque[tuple[float, str]] = deque()
        # The VMs' recent moves, with a flap limit (none: any VM may move any time).
        self._moves = None if flaps is None else Moves(flaps)
        # The migrations whose downtime report keeps its arrivals, oldest first.
        self._measured: dict[str, None] = {}

    # -- queries ---------------------------------------------------------
    def get(self, migration_id: str) -> Migration:
        m = self.migrations.get(migration_id)
        if m is None:
            raise UnknownMigration(f"no migration {migration_id!r}")
        return m

    def active(self) -> list[Migration]:
        for mid in [mid for mid, m in self._open.items() if m.state in _FINISHED]:
            del self._open[mid]
        return list(self._open.values())

    # -- notify (claim 6) ------------------------------------------------
    def notify(
        self, table: VPortTable, cluster: Membership, request: NotifyRequest, now: float
    ) -> tuple[MigrationView, Started | None]:
        """Start (or find again: no `Started`) the migration of a VM; its answer comes later."""
        vm, source, destination = request.vm, request.source, request.destination
        if source == destination:
            raise InvalidRequest(f"source and destination are both {source!r}")
        again = self._same_again(table, vm, source, destination)
        if again is not None:
            return again.view(), None  # the same answer, whatever our table shows now
        rec = table.require(vm)
        running = self._running(vm) or (rec.mig if rec.migrating else None)
        if running is not None:
            raise AlreadyMigrating(
                f"VM {vm} is already migrating from {running.source} to {running.destination}"
            )
        if rec.loc.ovs != source:
            raise NotOnSource(f"VM {vm} is on {rec.loc.ovs}, not on {source}")
        if self._moves is not None:
            self._moves.check(vm, now)
        awaiting = {cluster.master_of(source), cluster.master_of(destination)}
        m = self._new(rec, source, destination, awaiting, now)
        sync = VPortRecord(vm, rec.loc, m.mark(Phase.SYNCED, self.me))
        return m.view(), Started(m.id, sync, frozenset(awaiting))

    def _running(self, vm: str) -> Migration | None:
        """The VM's migration this leader started and that has not finished yet."""
        m = self.migrations.get(self._latest.get(vm, ""))
        return None if m is None or m.state.finished else m

    def _same_again(
        self, table: VPortTable, vm: str, source: str, destination: str
    ) -> Migration | None:
        m = self.migrations.get(self._latest.get(vm, ""))
        if m is None or (m.source, m.destination) != (source, destination):
            return None
        if m.state in (Status.ABORTED, Status.FAILED):
            return None
        if m.state is Status.COMPLETED:
            rec = table.get(vm)
            if rec is None or rec.loc.seq > m.seq:
                return None  # removed or moved since (back to the source, say): not a retry
        return m

    def _new(
        self, rec: VPortRecord, source: str, destination: str, awaiting: set[str], now: float
    ) -> Migration:
        epoch = 1 if rec.mig is None else rec.mig.epoch + 1
        seq = rec.loc.seq + 1
        last = self.migrations.get(self._latest.get(rec.vm, ""))
        if last is not None:
            # Our table may not show our own last mark, or rollback, yet: the new
            # migration comes after them, so that no two of our writes share a version.
            epoch = max(epoch, last.epoch + 1)
            rolled_back = last.state in (Status.ABORTED, Status.FAILED)
            seq = max(seq, last.seq + (2 if rolled_back else 1))
        mid = f"{rec.vm.replace(':', '')}-{epoch}"
        m = Migration(
            mid, rec.vm, source, destination, epoch, seq, rec.loc,
            Status.PREPARING, now + self.timeouts.sync, awaiting, timeline=[("notify", now)],
        )  # fmt: skip
        self._remember(m)
        return m

    def _remember(self, m: Migration) -> None:
        self.migrations[m.id] = m
        self._latest[m.vm] = m.id
        self._open[m.id] = m

    def _finish(self, m: Migration, state: Status, now: float) -> None:
        """The migration ends: it stays in the history for `history.age` seconds at most."""
        m.state = state
        m.step(state._value_, now)
        self._ended.append((now, m.id))
        self._forget(now)

    def _forget(self, now: float) -> None:
        """Drop the finished migrations past the history's size or age, oldest first."""
        size, age = self.history.size, self.history.age
        ended = self._ended
        while ended and (len(ended) > size or ended[0][0] + age <= now):
            _, mid = ended.popleft()
            old = self.migrations.pop(mid, None)
            self._open.pop(mid, None)
            if old is not None and self._latest.get(old.vm) == mid:
                del self._latest[old.vm]

    # -- answers from controllers (claim 6) --------------------------------
    def sync_complete(self, msg: SyncComplete, now: float) -> Decision:
        m = self.migrations.get(msg.migration_id)
        if m is None or m.state in _FINISHED:
            return Decision()
        if msg.controller in m.awaiting:
            m.awaiting.discard(msg.controller)
            m.step(f"sync {msg.controller}", now)
        if m.awaiting or m.answered:
            return Decision()
        m.answered = True
        if m.state is Status.PREPARING:
            m.state = Status.READY
            m.deadline = now + self.timeouts.activation
        m.step("ready", now)  # notify complete, on its way to the VMM
        return Decision(answers=[NotifyAnswer(m.view())])

    def sync_refused(self, msg: SyncRefused, table: VPortTable, now: float) -> Decision:
        m = self.migrations.get(msg.migration_id)
        if m is None or m.state.finished:
            return Decision()
        why = f"controller {msg.controller} refused the sync: {msg.reason}"
        m.step("sync refused", now)
        return self._roll_back(m, Status.FAILED, MigrationConflict(why), table, now)

    # -- what the table shows --------------------------------------------
    def observe(self, rec: VPortRecord, table: VPortTable, now: float) -> Decision | None:
        """Follow a migration's phase as the replicated mark reports it."""
        mig = rec.mig
        if mig is None:
            return None  # (most updates: no migration)
        m = self._open.get(mig.id)  # the unfinished ones are there (and some finished)
        if m is None or m.state in _FINISHED:
            return None
        if mig.phase < Phase.ACTIVATED and rec.loc.seq >= m.seq:
            # The VM's history (an older life, removed and started again elsewhere,
            # heard of late) went past the migration: its activation could not
            # outrank where the VM is, so it cannot happen. Fail it now.
            why = f"VM {m.vm} moved (seq {rec.loc.seq}) before migration {m.id} activated"
            return self._roll_back(m, Status.FAILED, MigrationConflict(why), table, now)
        if mig.phase == Phase.ARRIVED and mig.segment_differs(rec.loc.segment):
            return self._roll_back(
                m, Status.FAILED, MigrationConflict(_tag_differs(rec)), table, now
            )
        state = _STATUS_OF_PHASE.get(mig.phase)
        if state is None or state is m.state:
            return None
        decision = Decision()
        if state in _MOVED and m.state is not Status.ACTIVATED and self._moves is not None:
            # (a migration moves its VM once); the VM's moves go to the store
            decision.moves += (self._moves.moved(m.vm, now),)
        if state.finished:
            self._finish(m, state, now)
        else:
            m.state = state
            m.step(state._value_, now)
        if state is Status.ACTIVATED:
            m.deadline = now + self.timeouts.completion
        if state.finished and not m.answered:
            m.answered = True
            error = None if state is Status.COMPLETED else MigrationConflict(f"migration {state}")
            decision.answers.append(NotifyAnswer(m.view(), error))
        return decision or None

    # -- what was measured outside ----------------------------------------
    def downtime(self, migration_id: str, report: DowntimeReport) -> Migration:
        """A VMM's (or the lab's) measurement of the migration's traffic; a new one
        replaces the last."""
        m = self.get(migration_id)
        m.downtime = report
        measured = self._measured
        measured.pop(m.id, None)
        measured[m.id] = None
        while len(measured) > ARRIVALS_KEPT:
            oldest = next(iter(measured))
            del measured[oldest]
            old = self.migrations.get(oldest)
            if old is not None and old.downtime is not None:
                old.downtime = without_arrivals(old.downtime)
        return m

    # -- abort and timeouts ----------------------------------------------
    def abort(self, migration_id: str, table: VPortTable, now: float) -> Decision:
        """Roll the migration back (nothing to do if it was aborted already)."""
        m = self.get(migration_id)
        if m.state is Status.ABORTED:
            return Decision()
        if m.state.finished or m.state is Status.ACTIVATED:
            raise MigrationConflict(
                f"migration {m.id} is {m.state}: the VM is already at {m.destination}"
                if m.state in (Status.ACTIVATED, Status.COMPLETED)
                else f"migration {m.id} already {m.state}"
            )
        error = MigrationConflict(f"migration {m.id} was aborted by request")
        return self._roll_back(m, Status.ABORTED, error, table, now)

    def tick(self, table: VPortTable, now: float) -> Decision:
        decision = Decision()
        for m in self.active():
            if now >= m.deadline:
                decision.absorb(self._expire(m, table, now))
        self._forget(now)
        if self._moves is not None:
            decision.moves += tuple(self._moves.forget(now))  # (records to delete)
        return decision

    def _expire(self, m: Migration, table: VPortTable, now: float) -> Decision:
        if m.state is Status.ACTIVATED:
            return self._force_complete(m, table, now)
        if m.state is Status.PREPARING:
            who = ", ".join(sorted(m.awaiting))
            why = f"no sync complete from {who} in {self.timeouts.sync:g}s"
            return self._roll_back(m, Status.FAILED, NoController(why), table, now)
        why = f"VM never became active at {m.destination} in {self.timeouts.activation:g}s"
        return self._roll_back(m, Status.FAILED, MigrationConflict(why), table, now)

    def _force_complete(self, m: Migration, table: VPortTable, now: float) -> Decision:
        self._finish(m, Status.COMPLETED, now)
        m.reason = "source port not deleted in time; the VM runs at the destination"
        rec = table.record(m.vm)
        if rec is None:
            return Decision()
        done = VPortRecord(m.vm, rec.loc, m.mark(Phase.COMPLETED, self.me))
        return Decision(writes=[decided(done)])

    def _roll_back(
        self, m: Migration, state: Status, error: CoreError, table: VPortTable, now: float
    ) -> Decision:
        """Put the VM back where it was, on every controller."""
        self._finish(m, state, now)
        m.reason = error.detail
        phase = Phase.ABORTED if state is Status.ABORTED else Phase.FAILED
        # seq + 1: a rollback is a move back, and must outrank an activation in flight.
        back = replace(m.origin, seq=m.seq + 1, rev=0, writer=self.writer)
        rec = table.record(m.vm)
        if rec is not None and not rec.present and rec.loc.seq > back.seq:
            back = rec.loc  # removed meanwhile: the removal stands
        decision = Decision(writes=[decided(VPortRecord(m.vm, back, m.mark(phase, self.me)))])
        if not m.answered:
            m.answered = True
            decision.answers.append(NotifyAnswer(m.view(), error))
        return decision

    # -- leader change ---------------------------------------------------
    def restore_moves(self, records: Iterable[MoveTimes]) -> None:
        """A new leader takes the VMs' moves its predecessors stored (flap damping)."""
        if self._moves is not None:
            self._moves.restore(records)

    def adopt(self, table: VPortTable, now: float) -> None:
        """A new leader takes over the migrations its table shows as open."""
        for rec in table:
            mig = rec.mig
            if mig is None or not rec.migrating or mig.id in self.migrations:
                continue
            activated = mig.phase is Phase.ACTIVATED
            m = Migration(
                mig.id, rec.vm, mig.source, mig.destination, mig.epoch, mig.seq, rec.loc,
                Status.ACTIVATED if activated else Status.READY,
                now + (self.timeouts.completion if activated else self.timeouts.activation),
                answered=True, timeline=[("adopted", now)],
            )  # fmt: skip
            self._remember(m)


def without_arrivals(report: DowntimeReport) -> DowntimeReport:
    """The report with each direction's gap and loss, without its arrivals."""
    return DowntimeReport(tuple(replace(d, arrivals=()) for d in report.directions))


def _tag_differs(rec: VPortRecord) -> str:
    """Why a migration whose destination port is in another segment fails."""
    mig = rec.mig
    assert mig is not None
    port = mig.dest_port_name or f"port {mig.dest_port}"
    return (
        f"the destination port {port} on {mig.destination} has tag {mig.dest_segment}, "
        f"but VM {rec.vm} is in segment {rec.loc.segment}: a VM keeps its segment"
    )


def decided(rec: VPortRecord) -> Write:
    """A record the leader decided on, for every controller (fenced by the leadership)."""
    return Write(rec, EventKind.MODIFY, Reason.MIGRATION, leader=True)
