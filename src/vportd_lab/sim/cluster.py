"""An in-process cluster: controllers, a store of record, a message queue, a fake fabric.

Each controller's writes are joined into the store (as etcd's compare-and-swap
merge does) and the stored record is queued for every controller, as its
watch would bring it; a vPort sync is queued for its receiver, and the answer
for the leader; the leader's records of VMs' moves are kept too (`hand_over`
starts a new leader from them). The queue is explicit so that a test decides the order:
`deliver_all` is FIFO, `deliver(i)` takes any pending item, `deliver(i,
keep=True)` delivers one twice. Flow mods go straight to the fabric (the
adapter would barrier them first).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from vportd.core.controller import Controller
from vportd.core.coordinator import History, Timeouts
from vportd.core.flaps import FlapLimit, MoveTimes
from vportd.core.messages import (
    NotifyAnswer,
    NotifyRequest,
    Output,
    PortEvent,
    SyncAnswer,
    VPortSync,
    Write,
)
from vportd.core.model import VPortRecord
from vportd.core.topology import Link, Topology
from vportd_lab.sim.fabric import Fabric


@dataclass(frozen=True, slots=True)
class Stored:
    """A record as the store's watch brings it."""

    record: VPortRecord


Item = VPortSync | SyncAnswer | Stored


@dataclass(frozen=True, slots=True)
class InFlight:
    to: str
    message: Item


@dataclass
class SimCluster:
    topology: Topology
    controllers: dict[str, Controller]
    fabric: Fabric | None
    now: float = 0.0
    queue: list[InFlight] = field(default_factory=list)
    answers: list[NotifyAnswer] = field(default_factory=list)
    store: dict[str, VPortRecord] = field(default_factory=dict)
    writes: list[Write] = field(default_factory=list)
    flow_mods: int = 0
    moves: dict[str, MoveTimes] = field(default_factory=dict)  # the leader's, by VM

    @classmethod
    def build(
        cls,
        topology: Topology,
        n: int = 3,
        *,
        timeouts: Timeouts | None = None,
        fabric: bool = True,
        masters: dict[str, str] | None = None,
        aware: bool = True,
        history: History | None = None,
        flaps: FlapLimit | None = None,
    ) -> SimCluster:
        """`n` controllers c0..c{n-1}, c0 leading, switches spread round robin."""
        ids = [f"c{i}" for i in range(n)]
        placement = masters or {s: ids[i % n] for i, s in enumerate(sorted(topology.switches))}
        controllers = {
            cid: Controller(cid, timeouts, aware=aware, history=history, flaps=flaps) for cid in ids
        }
        sim = cls(topology, controllers, Fabric(topology) if fabric else None)
        for ctl in controllers.values():
            ctl.members_are(ids)
            ctl.leader_is(ids[0])
            _learn(ctl, topology)
            for switch, master in placement.items():
                ctl.master_is(switch, master)
        controllers[ids[0]].lead(0.0)
        for switch, master in sorted(placement.items()):
            sim.run(controllers[master].gain_switch(switch, (), 0.0))
            sim.run(controllers[master].flows_read(switch, ()))
        return sim

    @property
    def leader(self) -> Controller:
        return next(c for c in self.controllers.values() if c.leading)

    def master_of(self, switch: str) -> Controller:
        master = self.leader.master_of(switch)
        assert master is not None, f"nobody masters {switch}"
        return self.controllers[master]

    # -- inputs ----------------------------------------------------------
    def port_event(self, ev: PortEvent) -> None:
        self.run(self.master_of(ev.ovs).port_event(ev, self.now))

    def notify(self, vm: str, source: str, destination: str) -> str:
        out = self.leader.notify(NotifyRequest(vm, source, destination), self.now)
        self.run(out)
        assert out.reply is not None
        return out.reply.migration.id

    def abort(self, migration_id: str) -> None:
        self.run(self.leader.abort(migration_id, self.now))

    def hand_over(self, to: str) -> None:
        """The leader is gone (died or resigned); `to` leads, from what the store holds."""
        for ctl in self.controllers.values():
            ctl.leader_is(to)
        self.controllers[to].lead(self.now, list(self.moves.values()))

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for ctl in self.controllers.values():
            self.run(ctl.tick(self.now))

    # -- outputs and delivery --------------------------------------------
    def run(self, out: Output[Any]) -> None:
        """Carry out an output: its records to the store, messages queued, flows applied."""
        for write in out.writes:
            self._persist(write)
        self.queue += [InFlight(send.to, send.message) for send in out.messages]
        self.answers += out.answers
        self.flow_mods += len(out.flow_mods)
        for moved in out.moves:
            if moved.times:
                self.moves[moved.vm] = moved
            else:
                self.moves.pop(moved.vm, None)
        if self.fabric is not None:
            self.fabric.apply(out.flow_mods)

    def _persist(self, write: Write) -> None:
        self.writes.append(write)
        rec = write.record
        held = self.store.get(rec.vm)
        joined = rec if held is None else held.merge(rec)
        if joined is held:
            return
        self.store[rec.vm] = joined
        self.queue += [InFlight(cid, Stored(joined)) for cid in self.controllers]

    def deliver(self, index: int = 0, *, keep: bool = False) -> None:
        """Deliver one pending item; `keep` leaves it queued to arrive again."""
        item = self.queue[index] if keep else self.queue.pop(index)
        ctl, msg = self.controllers[item.to], item.message
        if isinstance(msg, Stored):
            self.run(ctl.stored(msg.record, self.now))
        elif isinstance(msg, VPortSync):
            out = ctl.vport_sync(msg, self.now)
            self.run(out)
            if out.reply is not None:
                self.queue.append(InFlight(msg.leader, out.reply))
        else:
            self.run(ctl.sync_answered(msg, self.now))

    def deliver_all(self, limit: int = 1_000_000) -> None:
        for _ in range(limit):
            if not self.queue:
                return
            self.deliver(0)
        raise RuntimeError("messages keep coming: a message loop between controllers")

    def answer_for(self, migration_id: str) -> NotifyAnswer | None:
        return next((a for a in self.answers if a.migration.id == migration_id), None)


def _learn(ctl: Controller, topology: Topology) -> None:
    """Tell a controller the fabric's switches and links, as OVSDB would."""
    for switch in topology.switches:
        ctl.switch_seen(switch, topology.dpid(switch))
    ctl.links_are(links_of(topology))


def links_of(topology: Topology) -> Iterable[Link]:
    for switch in topology.switches:
        for port, end in topology.link_ports(switch).items():
            if (switch, port) < (end.switch, end.port):
                yield Link(switch, port, end.switch, end.port)
