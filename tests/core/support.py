"""Set-ups the core tests share: a small fabric, an in-process cluster, VM life steps."""

from __future__ import annotations

from collections.abc import Callable

from vportd.core.controller import Controller
from vportd.core.coordinator import Timeouts
from vportd.core.messages import EventKind, NotifyRequest, PortEvent
from vportd.core.model import MigrationState, PortState, VPortRecord
from vportd.core.topology import Topology
from vportd_lab.sim.cluster import InFlight, SimCluster

VM_A = "02:00:00:00:00:0a"
VM_B = "02:00:00:00:00:0b"
VM_C = "02:00:00:00:00:0c"
TIMEOUTS = Timeouts(sync=2.0, activation=60.0, completion=10.0)


def mesh(n: int = 3) -> Topology:
    """hv0..hv{n-1}, each pair linked; port 100+j of hv{i} leads to hv{j}."""
    topo = Topology()
    for i in range(n):
        topo.add_switch(f"hv{i}", i + 1)
    for i in range(n):
        for j in range(i + 1, n):
            topo.add_link(f"hv{i}", 100 + j, f"hv{j}", 100 + i)
    return topo


def cluster(n_switches: int = 3, n_controllers: int = 3) -> SimCluster:
    """c0 leads; hv{i} is mastered by c{i % n_controllers}."""
    return SimCluster.build(mesh(n_switches), n_controllers, timeouts=TIMEOUTS)


def add(ovs: str, port: int, mac: str) -> PortEvent:
    return PortEvent(EventKind.ADD, ovs, port, mac, port_name=f"tap{port}")


def link(ovs: str, port: int, mac: str, up: bool) -> PortEvent:
    return PortEvent(EventKind.MODIFY, ovs, port, mac, port_name=f"tap{port}", link_up=up)


def delete(ovs: str, port: int, mac: str) -> PortEvent:
    return PortEvent(EventKind.DELETE, ovs, port, mac, port_name=f"tap{port}")


def boot(sim: SimCluster, mac: str, ovs: str, port: int) -> None:
    """A VM starts: its tap is added, then its link comes up; everyone hears of it."""
    sim.port_event(add(ovs, port, mac))
    sim.port_event(link(ovs, port, mac, up=True))
    sim.deliver_all()


def start_migration(sim: SimCluster, vm: str, source: str, destination: str) -> str:
    """Notify, leaving what it sends (the stored record, the vPort syncs) on its way."""
    out = sim.leader.notify(NotifyRequest(vm, source, destination), sim.now)
    assert out.reply is not None and out.reply.new
    sim.run(out)
    return out.reply.migration.id


def ready_migration(sim: SimCluster, mac: str, src: str, dst: str) -> str:
    """Notify and deliver until the leader has answered notify complete."""
    mid = sim.notify(mac, src, dst)
    sim.deliver_all()
    answer = sim.answer_for(mid)
    assert answer is not None and answer.ok
    return mid


def switch_over(sim: SimCluster, mac: str, src: tuple[str, int], dst: tuple[str, int]) -> None:
    """What a live migration shows the switches after notify complete."""
    sim.port_event(add(dst[0], dst[1], mac))
    sim.port_event(link(src[0], src[1], mac, up=False))
    sim.port_event(link(dst[0], dst[1], mac, up=True))
    sim.port_event(delete(src[0], src[1], mac))
    sim.deliver_all()


SWITCHES = ("hv0", "hv1", "hv2")

Entry = tuple[str | None, int | None, PortState, MigrationState]


def entries(sim: SimCluster, vm: str) -> set[Entry]:
    """The VM's entry as each controller shows it (one element when they agree)."""
    out: set[Entry] = set()
    for ctl in sim.controllers.values():
        rec = ctl.vport(vm)
        out.add((rec.loc.ovs, rec.loc.port, rec.port_state, rec.migration_state))
    return out


def reach(sim: SimCluster, vm: str) -> set[frozenset[tuple[str, int]]]:
    """Where a frame for `vm` goes, from an unused edge port of every switch."""
    assert sim.fabric is not None
    return {frozenset(sim.fabric.deliveries(s, 99, vm)) for s in SWITCHES}


def table(ctl: Controller) -> dict[str, VPortRecord]:
    """A controller's records by MAC, tombstones included."""
    return {rec.vm: rec for rec in ctl.records()}


def holds(ctl: Controller, vm: str) -> bool:
    """Whether the controller has an entry for `vm` (not a removal's tombstone)."""
    rec = ctl.record(vm)
    return rec is not None and rec.present


def converged(sim: SimCluster) -> bool:
    """Every controller's table is the store of record, tombstones and versions included."""
    return all(table(ctl) == sim.store for ctl in sim.controllers.values())


def first(sim: SimCluster, wanted: Callable[[InFlight], bool]) -> int:
    """Where the first pending item that `wanted` accepts is in the queue."""
    return next(i for i, item in enumerate(sim.queue) if wanted(item))
