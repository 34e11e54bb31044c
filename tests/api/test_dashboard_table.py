"""The dashboard's vPort table in the feed: `GET /v1/events?ovs=&segment=&state=&find=&page=&size=`
sends one page of it, filtered by the controller, with the counts and the hypervisors; a
bad parameter is refused before a stream starts. On the rig's controllers over real HTTP,
with more vPorts than a page holds."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from tests.api.test_dashboard import Snapshot, first, snapshots
from tests.rig.cluster import Rig, running
from tests.rig.fabric import VmPort
from tests.rig.http import notify_body
from vportd.api.dashboard import MAX_STREAMS
from vportd.api.vport_page import PAGE_SIZE

# 250 VMs, hv0..hv2 in turn: pages of 100, 100 and 50; every fifth in segment 10.
VMS = [
    VmPort(
        f"52:54:00:00:{k >> 8:02x}:{k & 255:02x}", f"hv{k % 3}", 1 + k // 3,
        tag=10 if k % 5 == 0 else None,
    )
    for k in range(250)
]  # fmt: skip
MACS = sorted(vm.mac for vm in VMS)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with running(tmp_path) as r:
        await r.boot(*VMS)
        yield r


def table(snap: Snapshot) -> dict[str, object]:
    vports: dict[str, object] = snap["vports"]  # type: ignore[assignment]
    return vports


def shown(snap: Snapshot) -> list[str]:
    return [v["vm"] for v in table(snap)["rows"]]  # type: ignore[attr-defined]


async def one(rig: Rig, query: str, wanted: Callable[[Snapshot], bool] | None = None) -> Snapshot:
    """The first snapshot of a stream on a follower with `query` (that `wanted` accepts)."""
    client = rig.client(rig.followers()[0].id)
    async with client.stream("GET", f"/v1/events?{query}") as answer:
        assert answer.status_code == 200, await answer.aread()
        return await first(snapshots(answer), wanted or (lambda s: bool(table(s)["total"])))


async def test_a_page_of_the_table_sorted_by_mac(rig: Rig) -> None:
    snap = await one(rig, "")
    page = table(snap)
    assert (page["total"], page["matched"], page["page"], page["size"]) == (250, 250, 0, PAGE_SIZE)
    assert page["hypervisors"] == ["hv0", "hv1", "hv2"]
    assert shown(snap) == MACS[:100]
    last = await one(rig, "page=2")
    assert (table(last)["page"], shown(last)) == (2, MACS[200:])
    small = await one(rig, "page=3&size=20")
    assert shown(small) == MACS[60:80]


async def test_a_page_past_the_end_is_the_last_one(rig: Rig) -> None:
    snap = await one(rig, "page=7")
    assert (table(snap)["page"], shown(snap)) == (2, MACS[200:])
    nothing = await one(rig, "ovs=hv9&page=3")
    assert (table(nothing)["matched"], table(nothing)["page"], shown(nothing)) == (0, 0, [])


async def test_filters_apply_before_paging(rig: Rig) -> None:
    on_hv1 = sorted(vm.mac for vm in VMS if vm.switch == "hv1")
    snap = await one(rig, "ovs=hv1")
    assert (table(snap)["matched"], table(snap)["total"]) == (len(on_hv1), 250)
    assert shown(snap) == on_hv1
    vm = VMS[123]
    found = await one(rig, f"find={vm.mac.upper()[-5:]}")  # any case, part of the MAC
    assert shown(found) == [vm.mac]
    by_port = await one(rig, f"find={vm.name}&ovs={vm.switch}")  # its port's name
    assert shown(by_port) == [vm.mac]
    by_vm_id = await one(rig, f"find=vm-{vm.mac}")
    assert shown(by_vm_id) == [vm.mac]
    assert shown(await one(rig, f"find={vm.mac}&ovs=hv9")) == []


async def test_the_segment_filter(rig: Rig) -> None:
    tagged = sorted(vm.mac for vm in VMS if vm.tag == 10)
    snap = await one(rig, "segment=10")
    assert (table(snap)["matched"], shown(snap)) == (len(tagged), tagged)
    assert table(snap)["segments"] == [0, 10]
    assert {row["segment"] for row in table(snap)["rows"]} == {10}  # type: ignore[attr-defined]
    untagged = await one(rig, "segment=0&size=500")
    assert table(untagged)["matched"] == 250 - len(tagged)
    assert shown(await one(rig, "segment=20")) == []


async def test_the_state_filter(rig: Rig) -> None:
    down, moving = VMS[5], VMS[6]
    rig.fabric.set_link(down, up=False)
    started = await rig.client(rig.leader.id).post(
        "/v1/migrations", json=notify_body(moving.mac, moving.switch, "hv2")
    )
    assert started.status_code == 201, started.text
    downs = await one(rig, "state=down", lambda s: shown(s) == [down.mac])
    assert table(downs)["matched"] == 1
    migrating = await one(rig, "state=migrating", lambda s: shown(s) == [moving.mac])
    assert table(migrating)["rows"][0]["destination"] == "hv2"  # type: ignore[index]
    ups = await one(rig, "state=up&size=500", lambda s: table(s)["matched"] == 249)
    assert down.mac not in shown(ups) and moving.mac in shown(ups)  # a migrating VM is up
    assert shown(await one(rig, "state=conflict")) == []


BAD = [
    "page=-1", "page=x", "size=0", "size=501", "state=nope", "state=UP", f"ovs={'h' * 65}",
    f"find={'x' * 65}", "segment=-1", "segment=4096", "segment=ten",
]  # fmt: skip


async def test_a_bad_parameter_is_refused_and_takes_no_stream(rig: Rig) -> None:
    client = rig.client(rig.leader.id)
    for query in BAD:
        refused = await client.get(f"/v1/events?{query}")
        assert refused.status_code == 422, query
        assert refused.json()["error"] == "invalid-request", query
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(MAX_STREAMS):  # every place is still free
            answer = await stack.enter_async_context(client.stream("GET", "/v1/events"))
            assert answer.status_code == 200


async def test_the_feed_needs_the_token_whatever_the_query(rig: Rig) -> None:
    anonymous: httpx.AsyncClient = rig.client(rig.leader.id, auth=False)
    assert (await anonymous.get("/v1/events?page=-1")).status_code == 401
