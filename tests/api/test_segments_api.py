"""`GET /v1/vports?segment=N`: the vPorts of one tenant segment (their ports' VLAN tag)."""

from __future__ import annotations

import httpx

from tests.api.conftest import VM_A, VM_B
from tests.rig.cluster import Rig
from tests.rig.fabric import VmPort

VM_T = VmPort("02:00:00:00:00:1c", "hv2", 3, tag=10)


async def test_vports_filtered_by_segment(rig: Rig, leader: httpx.AsyncClient) -> None:
    await rig.boot(VM_T)
    every = (await leader.get("/v1/vports")).json()
    assert {v["vm"]: v["segment"] for v in every} == {VM_A.mac: 0, VM_B.mac: 0, VM_T.mac: 10}
    tenant = await leader.get("/v1/vports", params={"segment": 10})
    assert [v["vm"] for v in tenant.json()] == [VM_T.mac]
    untagged = await leader.get("/v1/vports", params={"segment": 0})
    assert sorted(v["vm"] for v in untagged.json()) == [VM_A.mac, VM_B.mac]
    assert (await leader.get("/v1/vports", params={"segment": 11})).json() == []


async def test_a_bad_segment_is_a_400(leader: httpx.AsyncClient) -> None:
    for bad in ("-1", "4096", "ten"):
        answer = await leader.get("/v1/vports", params={"segment": bad})
        assert answer.status_code in (400, 422), bad
