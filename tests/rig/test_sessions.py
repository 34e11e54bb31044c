"""OVSDB sessions by mastership: with an OVSDB server per hypervisor, each controller
follows the servers of the hypervisors it masters and no other; what the others need of
a switch (its datapath id, its links) they read in etcd (`switches/`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.rig.cluster import Rig, running
from tests.rig.fabric import PATCH_BASE, VmPort
from tests.rig.member import Member, Options

HYPERVISORS = 6
VMS = [VmPort(f"02:00:00:00:07:{i:02x}", f"hv{i}", 1 + i) for i in range(HYPERVISORS)]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    options = Options(hypervisors=HYPERVISORS, ovsdb_per_hypervisor=True)
    async with running(tmp_path, options) as r:
        yield r


def mastered(m: Member) -> set[str]:
    return {s.name for s in m.core.switches() if s.master == m.id}


def sessions_unlike_mastership(rig: Rig) -> str | None:
    remotes = {db.remote: name for name, db in rig.fabric.dbs.items()}
    for m in rig.live():
        held = {remotes[x.remote] for x in m.runtime.monitors if x.live}
        if held != mastered(m):
            return f"{m.id} follows {sorted(held)}, masters {sorted(mastered(m))}"
    return None


async def test_each_controller_follows_the_servers_of_what_it_masters(rig: Rig) -> None:
    await rig.until_none(lambda: sessions_unlike_mastership(rig))
    shares = [len(mastered(m)) for m in rig.live()]
    assert sum(shares) == HYPERVISORS and max(shares) < HYPERVISORS
    await rig.boot(*VMS)
    await rig.until_none(lambda: sessions_unlike_mastership(rig))
    for vm in VMS:
        for sender in VMS:
            if sender is not vm:  # across links only the masters read in OVSDB
                want = {(vm.switch, vm.port)}
                assert rig.fabric.deliveries(vm.mac, sender.switch, sender.port) == want


async def test_the_masters_publish_their_switches_in_etcd(rig: Rig) -> None:
    assert rig.server is not None
    published = rig.server.range("switches/")
    assert sorted(published) == [f"switches/{name}" for name in rig.fabric.names]
    facts = json.loads(published["switches/hv1"].value or b"")
    assert facts["dpid"] == 2 and facts["remote"] == rig.fabric.dbs["hv1"].remote
    assert ["p1-0", PATCH_BASE + 0, "hv0/p0-1"] in facts["links"]
    for m in rig.live():  # every controller knows every link, followed or not
        assert len(m.runtime.feed.declared) == HYPERVISORS * (HYPERVISORS - 1) // 2


async def test_sessions_move_to_the_survivors_of_a_crash(rig: Rig) -> None:
    await rig.boot(*VMS)
    victim = max(rig.live(), key=lambda m: len(mastered(m)))
    await rig.crashed(victim.id, expire=True)
    await rig.settle()
    await rig.until_none(lambda: sessions_unlike_mastership(rig))
    assert sum(len(mastered(m)) for m in rig.live()) == HYPERVISORS
    stored = rig.stored()
    for m in rig.live():
        assert {rec.vm: rec for rec in m.core.records()} == stored
    vm, to = VMS[0], VmPort(VMS[0].mac, "hv5", 50)
    client = rig.client(rig.live()[0].id)
    got = await client.post("/v1/migrations", json={"vm": vm.mac, "source": vm.switch,
                                                     "destination": to.switch})  # fmt: skip
    assert got.status_code == 201
    await rig.live_migrate(vm, to)
    await rig.until(
        lambda: rig.leader.core.migration(got.json()["id"]).state == "completed", "completion"
    )
    assert rig.fabric.deliveries(to.mac, VMS[1].switch, VMS[1].port) == {(to.switch, to.port)}


async def test_a_source_port_deleted_while_its_master_is_cut_off_completes_the_migration(
    rig: Rig,
) -> None:
    """The source's master, cut off from the store, sees its port go but cannot say so;
    the new master reads the source's server on gaining, finds the port gone and
    completes the migration."""
    leader, names = rig.leader, rig.fabric.names
    source = next(s for s in names if rig.master(s) is not leader)
    victim = rig.master(source)
    destination = next(s for s in names if rig.master(s) is not victim)
    mac = "02:00:00:00:08:01"
    vm, there = VmPort(mac, source, 10), VmPort(mac, destination, 11)
    other = VmPort("02:00:00:00:08:02", destination, 12)
    await rig.boot(vm, other)
    got = await rig.client(leader.id).post(
        "/v1/migrations", json={"vm": mac, "source": source, "destination": destination}
    )
    assert got.status_code == 201
    await rig.arrive(there)
    rig.partition(victim.id)
    rig.fabric.leave(vm)
    await rig.until(
        lambda: leader.core.migration(got.json()["id"]).state == "completed", "completion"
    )
    new = leader.core.master_of(source)
    assert new not in (None, victim.id)
    assert rig.stored()[mac].loc.ovs == destination
    rig.heal(victim.id)
    await rig.settle()
    await rig.until_none(lambda: sessions_unlike_mastership(rig))
    assert rig.fabric.deliveries(mac, other.switch, other.port) == {(there.switch, there.port)}
