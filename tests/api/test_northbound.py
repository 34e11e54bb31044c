"""Northbound routes on the leader: bodies of DESIGN §4, statuses, refusals that change nothing."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import AUTH, Rig
from tests.api.fake import VM_A, VM_B, state

MIGRATION_KEYS = {"id", "vm", "source", "destination", "state", "seq"}
VPORT_KEYS = {
    "vm", "ips", "ovs", "dpid", "port", "port_name", "migration_state", "port_state",
    "seq", "destination",
}  # fmt: skip


async def notify(client: httpx.AsyncClient, vm: str, src: str, dst: str) -> httpx.Response:
    body = {"vm": vm, "source": src, "destination": dst}
    return await client.post("/v1/migrations", json=body, headers=AUTH)


async def test_notify_201_then_200_for_the_same_triple(leader: httpx.AsyncClient) -> None:
    first = await notify(leader, VM_A, "hv0", "hv1")
    assert first.status_code == 201
    body = first.json()
    assert set(body) >= MIGRATION_KEYS
    assert (body["vm"], body["source"], body["destination"]) == (VM_A, "hv0", "hv1")
    assert body["state"] == "ready"
    assert first.headers["location"] == f"/v1/migrations/{body['id']}"

    # The same triple again, the MAC in another form and the OVS by dpid: the same migration.
    again = await notify(leader, "02-00-00-00-00-0A", "hv0", "0000000000000002")
    assert again.status_code == 200
    assert again.json()["id"] == body["id"]


async def test_migration_reads_and_abort(leader: httpx.AsyncClient) -> None:
    mid = (await notify(leader, VM_A, "hv0", "hv1")).json()["id"]

    listed = await leader.get("/v1/migrations", headers=AUTH)
    assert listed.status_code == 200
    assert [m["id"] for m in listed.json()] == [mid]
    one = await leader.get(f"/v1/migrations/{mid}", headers=AUTH)
    assert one.status_code == 200 and one.json()["state"] == "ready"

    vport = (await leader.get(f"/v1/vports/{VM_A}", headers=AUTH)).json()
    assert (vport["migration_state"], vport["port_state"], vport["destination"]) == (
        "migrating", "up", "hv1",
    )  # fmt: skip

    aborted = await leader.delete(f"/v1/migrations/{mid}", headers=AUTH)
    assert aborted.status_code == 200
    assert aborted.json()["state"] == "aborted"
    vport = (await leader.get(f"/v1/vports/{VM_A}", headers=AUTH)).json()
    assert (vport["ovs"], vport["migration_state"], vport["destination"]) == (
        "hv0", "not-migrating", None,
    )  # fmt: skip


async def test_vports_bodies(leader: httpx.AsyncClient) -> None:
    listed = await leader.get("/v1/vports", headers=AUTH)
    assert listed.status_code == 200
    by_vm = {v["vm"]: v for v in listed.json()}
    assert set(by_vm) == {VM_A, VM_B}
    a = by_vm[VM_A]
    assert set(a) >= VPORT_KEYS
    assert a == {
        **a, "ovs": "hv0", "dpid": "0000000000000001", "port": 1, "port_name": "tap1",
        "migration_state": "not-migrating", "port_state": "up", "destination": None, "ips": [],
    }  # fmt: skip


@pytest.mark.parametrize("form", ["02:00:00:00:00:0B", "02-00-00-00-00-0b", "0200.0000.000b",
                                  "02000000000b"])  # fmt: skip
async def test_vport_accepts_any_common_mac_form(leader: httpx.AsyncClient, form: str) -> None:
    got = await leader.get(f"/v1/vports/{form}", headers=AUTH)
    assert got.status_code == 200
    assert got.json()["vm"] == VM_B


async def test_vport_errors(leader: httpx.AsyncClient) -> None:
    bad = await leader.get("/v1/vports/not-a-mac", headers=AUTH)
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid-mac")
    unknown = await leader.get("/v1/vports/02:00:00:00:00:99", headers=AUTH)
    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown-vm")
    assert set(unknown.json()) == {"error", "detail"}


async def test_cluster_and_switches(leader: httpx.AsyncClient) -> None:
    cluster = (await leader.get("/v1/cluster", headers=AUTH)).json()
    assert cluster["leader"] == "c0"
    members = {m["id"]: m for m in cluster["members"]}
    assert members["c1"] == {
        "id": "c1", "api": "http://c1.test", "healthy": True, "switches": ["0000000000000002"],
    }  # fmt: skip
    switches = (await leader.get("/v1/switches", headers=AUTH)).json()
    assert switches[0] == {
        "name": "hv0", "dpid": "0000000000000001", "master": "c0", "connected": True,
        "generation": 1,
    }  # fmt: skip


@pytest.mark.parametrize("path", ["/healthz", "/v1/healthz"])
async def test_healthz_is_open(leader: httpx.AsyncClient, path: str) -> None:
    got = await leader.get(path)
    assert got.status_code == 200
    assert got.json()["ok"] is True


async def test_metrics_parse(rig: Rig, leader: httpx.AsyncClient) -> None:
    rig.services["c0"].metrics.migration("completed")
    rig.services["c0"].metrics.table_size(2)
    got = await leader.get("/metrics")
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(got.text)}
    assert {"vportd_migrations", "vportd_vports", "vportd_handshake_seconds"} <= set(families)
    gauge = families["vportd_vports"].samples[0]
    assert (gauge.labels, gauge.value) == ({"controller": "c0"}, 2.0)


async def test_docs_and_schema_are_open(leader: httpx.AsyncClient) -> None:
    assert (await leader.get("/docs")).status_code == 200
    schema = (await leader.get("/openapi.json")).json()
    assert "/v1/migrations" in schema["paths"]
    assert "/v1/peer/port-events" in schema["paths"]


# -- refusals: the right error, and nothing changed ------------------------------
REFUSED = [
    ({"vm": "02:00:00:00:00:99", "source": "hv0", "destination": "hv1"}, 404, "unknown-vm"),
    ({"vm": VM_A, "source": "hv0", "destination": "hv9"}, 404, "unknown-ovs"),
    ({"vm": VM_A, "source": "hv2", "destination": "hv1"}, 409, "vm-not-on-source"),
    ({"vm": VM_A, "source": "hv0", "destination": "hv0"}, 400, "invalid-request"),
    ({"vm": "zz:00", "source": "hv0", "destination": "hv1"}, 400, "invalid-mac"),
    ({"vm": "01:00:00:00:00:0a", "source": "hv0", "destination": "hv1"}, 400, "invalid-mac"),
    ({"vm": VM_A, "source": "hv0"}, 422, "invalid-request"),
    ({"vm": VM_A, "source": "hv0", "destination": "hv1", "extra": 1}, 422, "invalid-request"),
    ({"vm": 5, "source": "hv0", "destination": "hv1"}, 422, "invalid-request"),
    ([VM_A, "hv0", "hv1"], 422, "invalid-request"),
]


@pytest.mark.parametrize(("body", "status", "code"), REFUSED)
async def test_refused_notify_changes_nothing(
    rig: Rig, leader: httpx.AsyncClient, body: object, status: int, code: str
) -> None:
    before = state(rig.sim)
    got = await leader.post("/v1/migrations", json=body, headers=AUTH)
    assert (got.status_code, got.json()["error"]) == (status, code)
    assert set(got.json()) == {"error", "detail"}
    assert state(rig.sim) == before


async def test_malformed_json_is_400(rig: Rig, leader: httpx.AsyncClient) -> None:
    before = state(rig.sim)
    got = await leader.post(
        "/v1/migrations", content=b"{not json", headers={**AUTH, "content-type": "application/json"}
    )
    assert (got.status_code, got.json()["error"]) == (400, "invalid-json")
    assert state(rig.sim) == before


async def test_second_migration_of_a_migrating_vm_is_409(
    rig: Rig, leader: httpx.AsyncClient
) -> None:
    assert (await notify(leader, VM_A, "hv0", "hv1")).status_code == 201
    before = state(rig.sim)
    got = await notify(leader, VM_A, "hv0", "hv2")
    assert (got.status_code, got.json()["error"]) == (409, "already-migrating")
    assert state(rig.sim) == before


async def test_unknown_migration_and_abort_conflicts(rig: Rig, leader: httpx.AsyncClient) -> None:
    for method in ("GET", "DELETE"):
        got = await leader.request(method, "/v1/migrations/nope", headers=AUTH)
        assert (got.status_code, got.json()["error"]) == (404, "unknown-migration")


async def test_unknown_route_and_method(leader: httpx.AsyncClient) -> None:
    got = await leader.get("/v1/nothing-here", headers=AUTH)
    assert (got.status_code, got.json()["error"]) == (404, "not-found")
    wrong = await leader.put("/v1/vports", headers=AUTH)
    assert (wrong.status_code, wrong.json()["error"]) == (405, "method-not-allowed")
