"""The leader's migrations as metrics: how long each step took, and how each ended.

The core reads no clock (it is given `now`), so the runtime tells this watch
when it took a new notify and when it released a notify complete, and has it
look at the migrations it follows after every input. The first look that
finds one activated (or completed) observes its activation time; the look
that finds it ended counts its final state.
Migrations a new leader adopted from the last one are not followed: when
they were notified is not known here. Nor is a migration's downtime: no
controller sees the VM's traffic stop and resume; a VMM or the lab's probe
measures it from outside and reports it (`Runtime.downtime_reported`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vportd.core.controller import Controller
from vportd.core.errors import CoreError
from vportd.core.messages import Notified, NotifyAnswer
from vportd.node.metrics import FINAL_STATES, Metrics

ACTIVE = ("activated", "completed")  # the VM runs at the destination


@dataclass(slots=True)
class _Followed:
    notified: float  # clock time
    state: str = "preparing"
    answered: bool = False
    active: bool = False


class MigrationWatch:
    def __init__(self, core: Controller, metrics: Metrics, clock: Callable[[], float]) -> None:
        self._core = core
        self._metrics = metrics
        self._clock = clock
        self._open: dict[str, _Followed] = {}  # by migration id

    def notified(self, notified: Notified) -> None:
        if notified.new:
            self._open[notified.migration.id] = _Followed(self._clock())

    def answered(self, answer: NotifyAnswer) -> None:
        """A notify complete (or why not) released to the VMM."""
        followed = self._open.get(answer.migration.id)
        if followed is None or followed.answered or not answer.ok:
            return
        followed.answered = True
        self._metrics.handshake(self._clock() - followed.notified)

    def look(self) -> None:
        """Observe what changed in the migrations followed (a few: the open ones)."""
        for mid, followed in list(self._open.items()):
            try:
                state = self._core.migration(mid).state
            except CoreError:  # no longer leading, or forgotten
                del self._open[mid]
                continue
            if state != followed.state:
                self._moved(mid, followed, state)

    def _moved(self, mid: str, followed: _Followed, state: str) -> None:
        followed.state = state
        if state in ACTIVE and not followed.active:
            followed.active = True
            self._metrics.activation(self._clock() - followed.notified)
        if state in FINAL_STATES:
            self._metrics.migration_ended(state)
            del self._open[mid]
