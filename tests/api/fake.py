"""A `Service` on the real core: the in-process `SimCluster`, one service per controller.

notify, abort and the peer messages really run the protocol: the leader's
syncs are delivered in-process to the other controllers, their answers come
back, and the service answers once the core has answered notify complete.
Only I/O is faked. `leader_script` lets a test make a controller's idea of the
leader differ from the core's (stale leadership, split views, no leader).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.core.support import mesh
from vportd.api.service import ClusterView, Health, MemberView, Peer, SwitchView
from vportd.core.controller import Controller
from vportd.core.coordinator import Coordinator, Timeouts
from vportd.core.errors import NoController, NotLeader
from vportd.core.messages import (
    Effect,
    EventKind,
    MigrationView,
    PortEvent,
    PortEventSync,
    Send,
    SyncComplete,
    SyncRefused,
    VPortSync,
)
from vportd.core.model import VPortRecord, parse_mac
from vportd.core.wire import NotifyRequest
from vportd.node.metrics import Metrics
from vportd_lab.sim.cluster import SimCluster

VM_A = "02:00:00:00:00:0a"
VM_B = "02:00:00:00:00:0b"
TIMEOUTS = Timeouts(sync=2.0, activation=60.0, completion=10.0)
NO_LEADER = "-"


def url_of(cid: str) -> str:
    return f"http://{cid}.test"


def boot(sim: SimCluster, mac: str, ovs: str, port: int) -> None:
    """A VM's tap is added on `ovs` and comes up; every controller hears of it."""
    sim.port_event(PortEvent(EventKind.ADD, ovs, port, mac, port_name=f"tap{port}"))
    sim.port_event(
        PortEvent(EventKind.MODIFY, ovs, port, mac, port_name=f"tap{port}", link_up=True)
    )
    sim.deliver_all()


def new_cluster() -> SimCluster:
    """c0 leads; hv{i} is mastered by c{i}; VM_A on hv0 port 1, VM_B on hv1 port 2."""
    sim = SimCluster.build(mesh(3), 3, timeouts=TIMEOUTS)
    boot(sim, VM_A, "hv0", 1)
    boot(sim, VM_B, "hv1", 2)
    return sim


@dataclass
class SimService:
    sim: SimCluster
    cid: str
    leader_script: list[str] = field(default_factory=list)
    default_leader: str | None = None  # None: the core's leader
    metrics_: Metrics = field(init=False)

    def __post_init__(self) -> None:
        self.metrics_ = Metrics(self.cid)

    @property
    def me(self) -> Peer:
        return Peer(self.cid, url_of(self.cid))

    @property
    def metrics(self) -> Metrics:
        return self.metrics_

    @property
    def ctl(self) -> Controller:
        return self.sim.controllers[self.cid]

    def leader(self) -> Peer | None:
        cid = self.leader_script.pop(0) if self.leader_script else self.default_leader
        if cid is None:
            cid = self.ctl.cluster.leader
        return None if cid in (None, NO_LEADER) else Peer(cid, url_of(cid))

    # -- reads -------------------------------------------------------------
    def vports(self) -> list[VPortRecord]:
        return list(self.ctl.table)

    def vport(self, vm: str) -> VPortRecord:
        return self.ctl.table.require(parse_mac(vm))

    def cluster(self) -> ClusterView:
        membership = self.ctl.cluster
        topo = self.sim.topology
        members = tuple(
            MemberView(
                m, url_of(m), True,
                tuple(f"{topo.dpid(s):016x}" for s in sorted(membership.switches_of(m))),
            )
            for m in membership.members
        )  # fmt: skip
        return ClusterView(membership.leader, members)

    def switches(self) -> list[SwitchView]:
        topo, masters = self.sim.topology, self.ctl.cluster.masters
        return [
            SwitchView(s, topo.dpid(s), masters.get(s), masters.get(s) == self.cid, 1)
            for s in sorted(topo.switches)
        ]

    def health(self) -> Health:
        return Health(True, {"controller": self.cid, "vports": len(self.ctl.table)})

    # -- the leader's ------------------------------------------------------
    async def notify(self, request: NotifyRequest) -> tuple[MigrationView, bool]:
        view, new, effects = self.ctl.notify(
            request.vm, request.source, request.destination, self.sim.now
        )
        self.sim.run(effects)
        self.sim.deliver_all()
        if not new:
            return view, False
        answer = self.sim.answer_for(view.id)
        if answer is None:
            raise NoController(f"no answer for {view.id}")
        if answer.error is not None:
            raise answer.error
        return answer.migration, True

    async def abort(self, migration_id: str) -> MigrationView:
        view, effects = self.ctl.abort(migration_id, self.sim.now)
        self.sim.run(effects)
        self.sim.deliver_all()
        return view

    def _coordinator(self) -> Coordinator:
        if self.ctl.coordinator is None:
            raise NotLeader(f"{self.cid} is not the leader")
        return self.ctl.coordinator

    def migrations(self) -> list[MigrationView]:
        return [m.view() for m in self._coordinator().migrations.values()]

    def migration(self, migration_id: str) -> MigrationView:
        return self.ctl.migration(migration_id).view()

    # -- east-west ---------------------------------------------------------
    async def vport_sync(self, msg: VPortSync) -> SyncComplete | SyncRefused | None:
        answer: SyncComplete | SyncRefused | None = None
        rest: list[Effect] = []
        for effect in self.ctl.receive(msg, self.sim.now):
            if isinstance(effect, Send) and isinstance(effect.message, SyncComplete | SyncRefused):
                answer = effect.message  # the PUT's answer, not a message of its own
            else:
                rest.append(effect)
        self.sim.run(rest)
        self.sim.deliver_all()
        return answer

    async def port_events(self, msgs: list[PortEventSync]) -> None:
        for msg in msgs:
            self.sim.run(self.ctl.receive(msg, self.sim.now))
        self.sim.deliver_all()


def state(sim: SimCluster) -> object:
    """Everything a request could change: every table, every leader's migrations."""
    tables = {cid: ctl.table.snapshot() for cid, ctl in sim.controllers.items()}
    migrations = {
        cid: [m.view() for m in ctl.coordinator.migrations.values()]
        for cid, ctl in sim.controllers.items()
        if ctl.coordinator is not None
    }
    return tables, migrations, len(sim.queue)
