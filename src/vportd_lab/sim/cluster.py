"""An in-process cluster: controllers, a message queue between them, a fake fabric.

The queue is explicit so that a test decides the order: `deliver_all` is FIFO,
`deliver(i)` takes any pending message, `duplicate(i)` delivers one twice.
Flow mods go straight to the fabric (the adapter would barrier them first).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from vportd.core.controller import Controller
from vportd.core.coordinator import Timeouts
from vportd.core.flow import FlowMod
from vportd.core.membership import Membership
from vportd.core.messages import Effect, NotifyAnswer, PeerMessage, PortEvent, Send
from vportd.core.topology import Topology
from vportd_lab.sim.fabric import Fabric


@dataclass(frozen=True, slots=True)
class InFlight:
    to: str
    message: PeerMessage


@dataclass
class SimCluster:
    topology: Topology
    controllers: dict[str, Controller]
    fabric: Fabric | None
    now: float = 0.0
    queue: list[InFlight] = field(default_factory=list)
    answers: list[NotifyAnswer] = field(default_factory=list)
    flow_mods: int = 0

    @classmethod
    def build(
        cls,
        topology: Topology,
        n: int = 3,
        *,
        timeouts: Timeouts | None = None,
        fabric: bool = True,
        masters: dict[str, str] | None = None,
    ) -> SimCluster:
        """`n` controllers c0..c{n-1}, c0 leading, switches spread round robin."""
        ids = [f"c{i}" for i in range(n)]
        placement = Membership(list(ids), leader=ids[0])
        if masters is None:
            placement.spread(topology.switches)
        else:
            placement.masters.update(masters)
        controllers = {
            cid: Controller(
                cid, topology, Membership(list(ids), ids[0], dict(placement.masters)), timeouts
            )
            for cid in ids
        }
        sim = cls(topology, controllers, Fabric(topology) if fabric else None)
        controllers[ids[0]].lead(0.0)
        for cid, ctl in controllers.items():
            for switch in ctl.cluster.switches_of(cid):
                sim.run(ctl.switch_connected(switch))
        return sim

    @property
    def leader(self) -> Controller:
        return next(c for c in self.controllers.values() if c.coordinator is not None)

    def master_of(self, switch: str) -> Controller:
        return self.controllers[self.leader.cluster.master_of(switch)]

    # -- inputs ----------------------------------------------------------
    def port_event(self, ev: PortEvent) -> None:
        ctl = self.master_of(ev.ovs)
        self.run(ctl.port_event(ev, self.now))

    def notify(self, vm: str, source: str, destination: str) -> str:
        view, _, effects = self.leader.notify(vm, source, destination, self.now)
        self.run(effects)
        return view.id

    def abort(self, migration_id: str) -> None:
        _, effects = self.leader.abort(migration_id, self.now)
        self.run(effects)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for ctl in self.controllers.values():
            self.run(ctl.tick(self.now))

    # -- effects and delivery --------------------------------------------
    def run(self, effects: Iterable[Effect]) -> None:
        mods: list[FlowMod] = []
        for effect in effects:
            if isinstance(effect, FlowMod):
                mods.append(effect)
            elif isinstance(effect, Send):
                self.queue.append(InFlight(effect.to, effect.message))
            else:
                self.answers.append(effect)
        self.flow_mods += len(mods)
        if self.fabric is not None:
            self.fabric.apply(mods)

    def deliver(self, index: int = 0, *, keep: bool = False) -> None:
        """Deliver one pending message; `keep` leaves it queued to arrive again."""
        item = self.queue[index] if keep else self.queue.pop(index)
        self.run(self.controllers[item.to].receive(item.message, self.now))

    def deliver_all(self, limit: int = 1_000_000) -> None:
        for _ in range(limit):
            if not self.queue:
                return
            self.deliver(0)
        raise RuntimeError("messages keep coming: a message loop between controllers")

    def answer_for(self, migration_id: str) -> NotifyAnswer | None:
        return next((a for a in self.answers if a.migration.id == migration_id), None)
