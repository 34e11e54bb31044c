"""The naive baseline (`migration.aware = false`), kept only for the downtime benchmark.

Without awareness there is no notify, and a port delete is the VM leaving:
the source's delete after a live migration removes the VM everywhere until
the destination's master, which sees the VM's port, puts it back. What the
protocol buys is that window (measured in BENCHMARKS.md, not here).
"""

from __future__ import annotations

import pytest

from tests.core.support import TIMEOUTS, VM_A, add, delete, first, link, mesh, table
from vportd.core.errors import MigrationConflict
from vportd_lab.sim.cluster import SimCluster, Stored


def naive() -> SimCluster:
    sim = SimCluster.build(mesh(3), 3, timeouts=TIMEOUTS, aware=False)
    sim.port_event(add("hv1", 1, VM_A))
    sim.port_event(link("hv1", 1, VM_A, up=True))
    sim.deliver_all()
    return sim


def reached(sim: SimCluster, switch: str, in_port: int) -> set[tuple[str, int]]:
    assert sim.fabric is not None
    return sim.fabric.deliveries(switch, in_port, VM_A)


def places(sim: SimCluster) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for cid, ctl in sim.controllers.items():
        rec = ctl.record(VM_A)
        out[cid] = None if rec is None else rec.loc.ovs
    return out


def test_a_naive_cluster_refuses_the_notify_and_changes_nothing() -> None:
    sim = naive()
    before = {cid: table(ctl) for cid, ctl in sim.controllers.items()}
    stored, queued = dict(sim.store), list(sim.queue)
    with pytest.raises(MigrationConflict, match="awareness is switched off"):
        sim.notify(VM_A, "hv1", "hv2")
    assert {cid: table(ctl) for cid, ctl in sim.controllers.items()} == before
    assert (sim.store, sim.queue) == (stored, queued)


def test_the_source_delete_removes_the_vm_until_the_destination_master_puts_it_back() -> None:
    sim = naive()
    # The live migration as the switches see it: the VM runs at hv2 now.
    sim.port_event(add("hv2", 1, VM_A))
    sim.port_event(link("hv1", 1, VM_A, up=False))
    sim.port_event(link("hv2", 1, VM_A, up=True))
    sim.deliver_all()
    assert set(places(sim).values()) == {"hv2"}
    assert reached(sim, "hv0", 101) == {("hv2", 1)}
    sim.port_event(delete("hv1", 1, VM_A))  # the source tap goes: "the VM left"
    assert places(sim)["c1"] is None  # hv1's master removed it
    # hv0 (the fabric's centre, mastered by c0) hears of the removal first: a blackhole.
    sim.deliver(first(sim, lambda m: m.to == "c0" and isinstance(m.message, Stored)))
    assert places(sim)["c0"] is None
    assert reached(sim, "hv0", 3) == set()
    sim.deliver_all()
    assert set(places(sim).values()) == {"hv2"}  # hv2's master saw the VM's port
    assert reached(sim, "hv0", 101) == {("hv2", 1)}
