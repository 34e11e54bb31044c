"""Claims 1-9 end to end on a real cluster: etcd, three `vportd` processes, real OVS.

Every bridge of a dummy-datapath fabric (hv0 - hv1 - hv2) connects to all three
controllers; etcd gives each bridge one master. The tests act as the VMM and
the operator would: `ovs-vsctl` for ports, REST for everything else, and
`ovs-ofctl`/`ofproto/trace` to see where traffic goes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.support import TOKEN, Cluster, Node, cluster
from tests.integration.support import Fabric
from vportd_lab.bed.etcd import PrivateEtcd, temporary_etcd
from vportd_lab.bed.ovs import PrivateOVS, temporary_ovs

pytestmark = [
    pytest.mark.ovs,
    pytest.mark.etcd,
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="Open vSwitch not installed"),
    pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd not installed"),
]

MAC = "02:00:00:00:0e:01"


@pytest.fixture(scope="module")
def ovs() -> Iterator[PrivateOVS]:
    with temporary_ovs() as switch:
        yield switch


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[PrivateEtcd]:
    with temporary_etcd(tmp_path) as member:
        yield member


@pytest.fixture
async def fabric(ovs: PrivateOVS) -> AsyncIterator[Fabric]:
    f = await Fabric(ovs).build()
    try:
        yield f
    finally:
        await f.tear_down()


@pytest.fixture
async def c3(tmp_path: Path, fabric: Fabric, etcd: PrivateEtcd) -> AsyncIterator[Cluster]:
    async with cluster(tmp_path, fabric, etcd) as c:
        yield c


async def vm_on(c: Cluster, bridge: str, name: str, ofport: int, mac: str = MAC) -> None:
    """Boot a VM's port (up) on `bridge`, and wait until every controller has it there."""
    await c.fabric.add_vm(bridge, name, ofport, mac)
    await c.until(lambda: at(c, mac, bridge, "up"), f"{mac} up on {bridge} everywhere")


async def at(c: Cluster, mac: str, bridge: str, state: str = "up") -> bool:
    views = await c.everywhere(mac)
    return all(v is not None and v["ovs"] == bridge and v["port_state"] == state for v in views)


async def trace(c: Cluster, bridge: str, in_port: int, mac: str) -> list[str]:
    """The OpenFlow outputs a frame for `mac` entering `bridge` on `in_port` meets first.

    A patch port hands the frame to the next bridge, whose outputs follow: the
    first output is `bridge`'s own choice.
    """
    out = await c.fabric.appctl(
        "ofproto/trace", bridge, f"in_port={in_port},dl_src=02:00:00:00:ff:ff,dl_dst={mac}"
    )
    return [word.strip(",") for word in out.split() if word.startswith("output:")]


async def notify(node: Node, vm: str, source: str, destination: str) -> httpx.Response:
    async with node.client() as client:
        body = {"vm": vm, "source": source, "destination": destination}
        return await client.post("/v1/migrations", json=body)


async def test_claims_1_5_a_port_added_on_one_master_appears_on_every_controller(
    c3: Cluster,
) -> None:
    await c3.fabric.add_vm("hv0", "vm1", 1, MAC)
    await c3.until(lambda: at(c3, MAC, "hv0", "up"), "the new port on every controller")
    master = next(s["master"] for s in await c3.nodes[0].get("/v1/switches") if s["name"] == "hv0")
    assert {n.id for n in c3.nodes} - {master}, "the others learnt it from the master"
    # hv2 sends the VM's traffic towards hv1 (its port 101); hv0 to the VM's port.
    assert (await trace(c3, "hv2", 3, MAC))[:1] == ["output:101"]
    assert (await trace(c3, "hv0", 101, MAC))[:1] == ["output:1"]


async def test_claims_6_9_notify_answered_after_both_syncs_then_the_migration_completes(
    c3: Cluster,
) -> None:
    await vm_on(c3, "hv0", "vm1", 1)
    leader = await c3.leader()
    follower = next(n for n in c3.nodes if n is not leader)
    seen_down: list[str] = []

    async def watch() -> None:  # claim 4: nobody ever reports the port down meanwhile
        while True:
            for view in await c3.everywhere(MAC):
                if view is not None and view["port_state"] != "up":
                    seen_down.append(str(view))
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    try:
        r = await notify(follower, MAC, "hv0", "hv2")  # forwarded to the leader
        assert r.status_code == 201, r.text
        migration = r.json()
        assert migration["state"] == "ready" and migration["vm"] == MAC
        # Answered only after the syncs: every controller shows it migrating, now.
        for view in await c3.everywhere(MAC):
            assert view is not None
            assert (view["migration_state"], view["destination"]) == ("migrating", "hv2")
        again = await notify(leader, MAC, "hv0", "hv2")
        assert (again.status_code, again.json()["id"]) == (200, migration["id"])
        # The VMM moves the VM: the destination port comes up, the source port goes.
        await c3.fabric.add_vm("hv2", "vm1-dst", 1, MAC)
        await c3.fabric.vsctl("del-port", "hv0", "vm1")
        await c3.until(lambda: done_at(c3, MAC, "hv2"), "not-migrating at hv2 on every controller")
    finally:
        watcher.cancel()
    assert seen_down == []
    async with leader.client() as client:
        final = (await client.get(f"/v1/migrations/{migration['id']}")).json()
    assert final["state"] == "completed"
    # No flow anywhere points at the old port: hv0 sends the VM's traffic towards hv1.
    assert (await trace(c3, "hv0", 3, MAC))[:1] == ["output:101"]
    assert (await trace(c3, "hv1", 100, MAC))[:1] == ["output:102"]


async def done_at(c: Cluster, mac: str, bridge: str) -> bool:
    views = await c.everywhere(mac)
    return all(
        v is not None and v["ovs"] == bridge and v["migration_state"] == "not-migrating"
        for v in views
    )


async def test_failover_kill_the_leader_another_leads_and_accepts_migrations(c3: Cluster) -> None:
    await vm_on(c3, "hv0", "vm1", 1)
    old = await c3.leader()
    old.kill(signal.SIGKILL)
    await c3.until(c3.settled, "a new leader and every bridge mastered", timeout=30)
    new = await c3.leader()
    assert new is not old
    r = await notify(c3.live()[0], MAC, "hv0", "hv1")
    assert r.status_code == 201, r.text


async def test_failover_kill_a_master_its_switches_get_a_new_one_and_keep_forwarding(
    c3: Cluster,
) -> None:
    await vm_on(c3, "hv2", "vm1", 1)
    before = await trace(c3, "hv0", 3, MAC)
    assert before[:1] == ["output:101"]
    switches = await c3.nodes[0].get("/v1/switches")
    master_id = next(s["master"] for s in switches if s["name"] == "hv2")
    master = next(n for n in c3.nodes if n.id == master_id)
    master.kill(signal.SIGKILL)
    assert await trace(c3, "hv0", 3, MAC) == before  # flows stay in OVS meanwhile
    await c3.until(c3.settled, "every bridge mastered by a live controller", timeout=30)
    after = await c3.live()[0].get("/v1/switches")
    assert next(s["master"] for s in after if s["name"] == "hv2") != master_id
    assert await trace(c3, "hv0", 3, MAC) == before
    # The new master follows its OVS: a port change there reaches every table.
    await c3.fabric.vsctl("del-port", "hv2", "vm1")
    await c3.until(lambda: gone(c3, MAC), "the VM removed on every live controller")


async def gone(c: Cluster, mac: str) -> bool:
    return all(v is None for v in await c.everywhere(mac))


async def test_etcd_restart_watches_resume_and_every_table_equals_etcd(c3: Cluster) -> None:
    await vm_on(c3, "hv0", "vm1", 1)
    c3.etcd.restart()
    await c3.until(c3.settled, "the cluster back after the etcd restart", timeout=30)
    await vm_on(c3, "hv1", "vm2", 2, "02:00:00:00:0e:02")
    stored = await stored_records(c3)
    for node in c3.live():
        table = {v["vm"]: (v["ovs"], v["seq"]) for v in await node.get("/v1/vports")}
        assert table == stored


async def stored_records(c: Cluster) -> dict[str, tuple[str, int]]:
    from vportd.cluster.etcd import EtcdStore  # noqa: PLC0415

    async with EtcdStore([c.etcd.endpoint]) as store:
        records, _ = await store.records()
    return {vm: (str(r.loc.ovs), r.seq) for vm, r in records.items() if r.present}


async def test_failover_leader_killed_between_vport_sync_and_notify_complete(
    c3: Cluster,
) -> None:
    """The VMM's retry gets the same migration from the new leader; nothing stays migrating."""
    leader = await c3.leader()
    masters = {s["name"]: s["master"] for s in await leader.get("/v1/switches")}
    # The destination's master will be paused, so that the leader waits for its answer.
    dst = next(s for s, m in sorted(masters.items()) if m != leader.id)
    src = next(s for s in sorted(masters) if s != dst)
    paused = next(n for n in c3.nodes if n.id == masters[dst])
    await vm_on(c3, src, "vm1", 1)
    paused.kill(signal.SIGSTOP)
    first = asyncio.create_task(notify(leader, MAC, src, dst))
    try:
        witness = next(n for n in c3.nodes if n not in (leader, paused))
        await c3.until(lambda: migrating_on(c3, witness), "the vPort sync to reach a controller")
        leader.kill(signal.SIGKILL)
    finally:
        paused.kill(signal.SIGCONT)
    with pytest.raises(httpx.HTTPError):
        await first  # the leader died with the request
    retry = await retry_notify(c3, MAC, src, dst)
    assert retry.status_code in (200, 201), retry.text
    migration = retry.json()
    for view in await c3.everywhere(MAC):
        assert view is not None and view["migration_state"] == "migrating"
        assert view["destination"] == dst
    await c3.fabric.add_vm(dst, "vm1-dst", 1, MAC)
    await c3.fabric.vsctl("del-port", src, "vm1")
    await c3.until(lambda: done_at(c3, MAC, dst), "not-migrating at the destination everywhere")
    new_leader = await c3.leader()
    async with new_leader.client() as client:
        final = (await client.get(f"/v1/migrations/{migration['id']}")).json()
    assert final["state"] == "completed", final


async def migrating_on(c: Cluster, node: Node) -> bool:
    view = await c.vport(node, MAC)
    return view is not None and view["migration_state"] == "migrating"


async def retry_notify(c: Cluster, vm: str, source: str, destination: str) -> httpx.Response:
    """The VMM retries on 503 or a dead controller, as `vportctl migrate --wait` does."""
    for _ in range(200):
        for node in c.live():
            try:
                r = await notify(node, vm, source, destination)
            except httpx.HTTPError:
                continue
            if r.status_code != 503:
                return r
        await asyncio.sleep(0.1)
    raise AssertionError("no controller answered the notify")


async def test_auth_and_oversized_bodies_are_refused_and_change_nothing(c3: Cluster) -> None:
    await vm_on(c3, "hv0", "vm1", 1)
    node = c3.nodes[0]
    body = {"vm": MAC, "source": "hv0", "destination": "hv1"}
    async with httpx.AsyncClient(base_url=node.api, timeout=10) as anon:
        assert (await anon.post("/v1/migrations", json=body)).status_code == 401
        wrong = {"Authorization": "Bearer not-the-token-at-all"}
        assert (await anon.post("/v1/migrations", json=body, headers=wrong)).status_code == 403
        vmm = {"Authorization": f"Bearer {TOKEN}"}
        sync = await anon.post("/v1/peer/port-events", json={"events": []}, headers=vmm)
        assert sync.status_code == 403  # the VMM's token is not a controller's
        huge = {**body, "padding": "x" * (2 * 1024 * 1024)}
        assert (await anon.post("/v1/migrations", json=huge, headers=vmm)).status_code == 413
        assert (await anon.get("/metrics")).status_code == 200
    for view in await c3.everywhere(MAC):
        assert view is not None and view["migration_state"] == "not-migrating"
    async with c3.nodes[0].client() as client:
        assert (await client.get("/v1/migrations")).json() == []


async def test_etcd_silent_longer_than_the_lease_every_controller_rejoins(c3: Cluster) -> None:
    """Leases lost: each controller ends its session, steps down, and joins again."""
    await vm_on(c3, "hv0", "vm1", 1)
    assert c3.etcd.pid is not None
    os.kill(c3.etcd.pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(5)  # > lease_ttl (3 s, the lab's): every lease is gone
    finally:
        os.kill(c3.etcd.pid, signal.SIGCONT)
    await c3.until(c3.settled, "a leader and every bridge mastered again", timeout=40)
    assert all(n.alive for n in c3.nodes)
    r = await notify(c3.nodes[0], MAC, "hv0", "hv1")
    assert r.status_code == 201, r.text


async def test_sigterm_during_a_port_storm_stops_every_controller(c3: Cluster) -> None:
    """Stopping must not wait on a session that ends meanwhile (lease lost under load)."""
    names = c3.fabric.names
    for k in range(60):
        await c3.fabric.add_vm(names[k % len(names)], f"s{k}", 10 + k, f"02:00:00:00:1f:{k:02x}")
    for node in c3.nodes:
        assert node.proc is not None
        node.proc.send_signal(signal.SIGTERM)
    for node in c3.nodes:
        assert node.proc is not None
        assert await asyncio.to_thread(node.proc.wait, 14) == 0  # (70: the stop hung)
