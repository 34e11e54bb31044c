"""Northbound routes on the leader of a real cluster: the bodies of DESIGN §4, the statuses,
and refusals that change nothing anywhere."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import VM_A, VM_B
from tests.rig.cluster import Rig
from tests.rig.http import notify_body

MIGRATION_KEYS = {"id", "vm", "source", "destination", "state", "seq"}
VPORT_KEYS = {
    "vm", "ips", "ovs", "dpid", "port", "port_name", "migration_state", "port_state",
    "seq", "destination",
}  # fmt: skip


async def notify(client: httpx.AsyncClient, vm: str, src: str, dst: str) -> httpx.Response:
    return await client.post("/v1/migrations", json=notify_body(vm, src, dst))


async def test_notify_201_then_200_for_the_same_triple(rig: Rig, leader: httpx.AsyncClient) -> None:
    first = await notify(leader, VM_A.mac, "hv0", "hv1")
    assert first.status_code == 201
    body = first.json()
    assert set(body) >= MIGRATION_KEYS
    assert (body["vm"], body["source"], body["destination"]) == (VM_A.mac, "hv0", "hv1")
    assert body["state"] == "ready"
    assert first.headers["location"] == f"/v1/migrations/{body['id']}"

    # The same triple again, the MAC in another form and the OVS by dpid: the same migration.
    again = await notify(leader, "02-00-00-00-00-0A", "hv0", "0000000000000002")
    assert again.status_code == 200
    assert again.json()["id"] == body["id"]
    # Both controllers answered sync complete: their tables show the VM migrating.
    for cid in (rig.master("hv0").id, rig.master("hv1").id):
        entry = rig[cid].core.vport(VM_A.mac)
        assert (entry.migrating, entry.destination) == (True, "hv1")


async def test_migration_reads_and_abort(rig: Rig, leader: httpx.AsyncClient) -> None:
    mid = (await notify(leader, VM_A.mac, "hv0", "hv1")).json()["id"]

    listed = await leader.get("/v1/migrations")
    assert listed.status_code == 200
    assert [m["id"] for m in listed.json()] == [mid]
    one = await leader.get(f"/v1/migrations/{mid}")
    assert one.status_code == 200 and one.json()["state"] == "ready"

    vport = (await leader.get(f"/v1/vports/{VM_A.mac}")).json()
    assert (vport["migration_state"], vport["port_state"], vport["destination"]) == (
        "migrating", "up", "hv1",
    )  # fmt: skip

    aborted = await leader.delete(f"/v1/migrations/{mid}")
    assert aborted.status_code == 200
    assert aborted.json()["state"] == "aborted"
    vport = (await leader.get(f"/v1/vports/{VM_A.mac}")).json()
    assert (vport["ovs"], vport["migration_state"], vport["destination"]) == (
        "hv0", "not-migrating", None,
    )  # fmt: skip
    await rig.settle()  # the rollback in every table, as in the store
    assert not any(m.core.vport(VM_A.mac).migrating for m in rig.live())


async def test_vports_bodies(rig: Rig) -> None:
    for m in rig.live():  # claim 1: every controller holds every entry
        listed = await rig.client(m.id).get("/v1/vports")
        assert listed.status_code == 200
        by_vm = {v["vm"]: v for v in listed.json()}
        assert set(by_vm) == {VM_A.mac, VM_B.mac}
        a = by_vm[VM_A.mac]
        assert set(a) >= VPORT_KEYS
        assert a == {
            **a, "ovs": "hv0", "dpid": "0000000000000001", "port": 1, "port_name": VM_A.name,
            "iface_id": f"iface-{VM_A.name}", "vm_id": f"vm-{VM_A.mac}",
            "migration_state": "not-migrating", "port_state": "up", "destination": None,
            "ips": [],
        }  # fmt: skip


async def test_vport_accepts_any_common_mac_form(follower: httpx.AsyncClient) -> None:
    for form in ["02:00:00:00:00:0B", "02-00-00-00-00-0b", "0200.0000.000b", "02000000000b"]:
        got = await follower.get(f"/v1/vports/{form}")
        assert got.status_code == 200, form
        assert got.json()["vm"] == VM_B.mac


async def test_vport_errors(leader: httpx.AsyncClient) -> None:
    bad = await leader.get("/v1/vports/not-a-mac")
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid-mac")
    unknown = await leader.get("/v1/vports/02:00:00:00:00:99")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown-vm")
    assert set(unknown.json()) == {"error", "detail"}


async def test_cluster_and_switches(rig: Rig) -> None:
    dpids = {name: f"{n + 1:016x}" for n, name in enumerate(rig.fabric.names)}
    for m in rig.live():
        client = rig.client(m.id)
        cluster = (await client.get("/v1/cluster")).json()
        assert (cluster["leader"], cluster["session"], cluster["stale_since"]) == (
            rig.leader.id,
            True,
            None,
        )
        assert {x["id"]: x for x in cluster["members"]} == {
            x.id: {
                "id": x.id, "api": x.url, "healthy": True,
                "switches": sorted(dpids[s] for s in rig.fabric.names if rig.master(s) is x),
                "switch_names": sorted(s for s in rig.fabric.names if rig.master(s) is x),
            }
            for x in rig.live()
        }  # fmt: skip
        switches = (await client.get("/v1/switches")).json()
        assert [s["name"] for s in switches] == rig.fabric.names
        for s in switches:
            assert s == {
                **s, "dpid": dpids[s["name"]], "master": rig.master(s["name"]).id,
                "connected": True, "role": "master" if rig.master(s["name"]) is m else "slave",
            }  # fmt: skip
            assert isinstance(s["generation"], int)


async def test_healthz_is_open(rig: Rig) -> None:
    for m in rig.live():
        for path in ["/healthz", "/v1/healthz"]:
            got = await rig.client(m.id, auth=False).get(path)
            assert got.status_code == 200
            assert got.json()["ok"] is True
            assert got.json()["detail"]["controller"] == m.id


async def test_metrics_parse(rig: Rig, leader: httpx.AsyncClient) -> None:
    assert (await notify(leader, VM_A.mac, "hv0", "hv1")).status_code == 201
    got = await rig.client(rig.leader.id, auth=False).get("/metrics")
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(got.text)}
    names = {"vportd_migrations", "vportd_vports", "vportd_migration_handshake_seconds"}
    assert names <= set(families)
    gauge = families["vportd_vports"].samples[0]
    assert (gauge.labels, gauge.value) == ({"controller": rig.leader.id}, 2.0)
    handshakes = families["vportd_migration_handshake_seconds"].samples
    assert [s.value for s in handshakes if s.name.endswith("_count")] == [1.0]


async def test_docs_and_schema_are_open(rig: Rig) -> None:
    client = rig.client(rig.leader.id, auth=False)
    assert (await client.get("/docs")).status_code == 200
    schema = (await client.get("/openapi.json")).json()
    assert {"/v1/migrations", "/v1/peer/vports/{vm}", "/v1/cluster"} <= set(schema["paths"])


# -- refusals: the right error, and nothing changed anywhere ------------------------------
REFUSED = [
    ({"vm": "02:00:00:00:00:99", "source": "hv0", "destination": "hv1"}, 404, "unknown-vm"),
    ({"vm": VM_A.mac, "source": "hv0", "destination": "hv9"}, 404, "unknown-ovs"),
    ({"vm": VM_A.mac, "source": "hv2", "destination": "hv1"}, 409, "vm-not-on-source"),
    ({"vm": VM_A.mac, "source": "hv0", "destination": "hv0"}, 400, "invalid-request"),
    ({"vm": "zz:00", "source": "hv0", "destination": "hv1"}, 400, "invalid-mac"),
    ({"vm": "01:00:00:00:00:0a", "source": "hv0", "destination": "hv1"}, 400, "invalid-mac"),
    ({"vm": VM_A.mac, "source": "hv0"}, 422, "invalid-request"),
    ({"vm": VM_A.mac, "source": "hv0", "destination": "hv1", "extra": 1}, 422, "invalid-request"),
    ({"vm": 5, "source": "hv0", "destination": "hv1"}, 422, "invalid-request"),
    ([VM_A.mac, "hv0", "hv1"], 422, "invalid-request"),
]


async def test_refused_notify_changes_nothing(
    rig: Rig, leader: httpx.AsyncClient, subtests: pytest.Subtests
) -> None:
    for body, status, code in REFUSED:
        with subtests.test(f"{status} {code}: {body}"):
            before = rig.state()
            got = await leader.post("/v1/migrations", json=body)
            assert (got.status_code, got.json()["error"]) == (status, code)
            assert set(got.json()) == {"error", "detail"}
            await rig.settle()
            assert rig.state() == before


async def test_malformed_json_is_400(rig: Rig, leader: httpx.AsyncClient) -> None:
    before = rig.state()
    got = await leader.post(
        "/v1/migrations", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert (got.status_code, got.json()["error"]) == (400, "invalid-json")
    await rig.settle()
    assert rig.state() == before


async def test_second_migration_of_a_migrating_vm_is_409(
    rig: Rig, leader: httpx.AsyncClient
) -> None:
    assert (await notify(leader, VM_A.mac, "hv0", "hv1")).status_code == 201
    await rig.settle()
    before = rig.state()
    got = await notify(leader, VM_A.mac, "hv0", "hv2")
    assert (got.status_code, got.json()["error"]) == (409, "already-migrating")
    await rig.settle()
    assert rig.state() == before


async def test_unknown_migration(leader: httpx.AsyncClient) -> None:
    for method in ("GET", "DELETE"):
        got = await leader.request(method, "/v1/migrations/nope")
        assert (got.status_code, got.json()["error"]) == (404, "unknown-migration")


async def test_unknown_route_and_method(leader: httpx.AsyncClient) -> None:
    got = await leader.get("/v1/nothing-here")
    assert (got.status_code, got.json()["error"]) == (404, "not-found")
    wrong = await leader.put("/v1/vports")
    assert (wrong.status_code, wrong.json()["error"]) == (405, "method-not-allowed")
