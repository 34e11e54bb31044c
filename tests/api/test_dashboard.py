"""The dashboard: its page at `/ui` (open, static) and its feed `GET /v1/events` (the
northbound token; server-sent `snapshot` events as the cluster changes), on the rig's
controllers over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from tests.api.conftest import VM_A, VM_B
from tests.rig.cluster import PATIENCE, Rig
from tests.rig.http import AUTH, PEER_AUTH, notify_body
from vportd.api.dashboard import MAX_STREAMS, PLOTS, Feed, stream

Snapshot = dict[str, object]


async def snapshots(response: httpx.Response) -> AsyncIterator[Snapshot]:
    """The `snapshot` events of a text/event-stream answer, as they come."""
    event, data = "", []
    async for line in response.aiter_lines():
        if line.startswith(":"):
            continue  # a heartbeat
        if line:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            event = value if field == "event" else event
            data += [value] if field == "data" else []
            continue
        if event == "snapshot":
            yield json.loads("\n".join(data))
        event, data = "", []


async def first(feed: AsyncIterator[Snapshot], wanted: Callable[[Snapshot], bool]) -> Snapshot:
    """The next snapshot of `feed` that `wanted` accepts (the test fails if none comes
    within PATIENCE)."""
    async with asyncio.timeout(PATIENCE):
        async for snap in feed:
            if wanted(snap):
                return snap
    raise AssertionError("the stream ended")


def vms(snap: Snapshot) -> set[str]:
    rows = snap["vports"]["rows"]  # type: ignore[index]
    return {v["vm"] for v in rows}


def migrations(snap: Snapshot, which: str) -> list[dict[str, object]]:
    held: list[dict[str, object]] = snap["migrations"][which]  # type: ignore[index]
    return held


async def test_the_page_is_served_without_a_token(rig: Rig) -> None:
    for cid in rig.members:
        anonymous = rig.client(cid, auth=False)
        page = await anonymous.get("/ui/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert 'id="login-form"' in page.text and 'src="app.js"' in page.text
        script = await anonymous.get("/ui/app.js")
        assert (script.status_code, "/v1/events" in script.text) == (200, True)
        assert (await anonymous.get("/ui/style.css")).status_code == 200
        timelines = await anonymous.get("/ui/migrations.js")  # (the page loads it)
        assert (timelines.status_code, 'src="migrations.js"' in page.text) == (200, True)
        bare = await anonymous.get("/ui", follow_redirects=True)
        assert (bare.status_code, bare.url.path) == (200, "/ui/")
        missing = await anonymous.get("/ui/nothing-here.js")
        assert missing.status_code == 404


async def test_the_feed_needs_the_token(rig: Rig) -> None:
    cid = rig.followers()[0].id
    anonymous = rig.client(cid, auth=False)
    refused = await anonymous.get("/v1/events")
    assert refused.status_code == 401
    assert refused.json()["error"] == "missing-token"
    wrong = await anonymous.get("/v1/events", headers={"Authorization": "Bearer nope"})
    assert (wrong.status_code, wrong.json()["error"]) == (403, "wrong-token")
    peer = await anonymous.get("/v1/events", headers=PEER_AUTH)  # not the northbound token
    assert (peer.status_code, peer.json()["error"]) == (403, "wrong-token")


async def test_a_snapshot_shows_the_cluster_and_the_vports(rig: Rig) -> None:
    for cid in rig.members:
        async with rig.client(cid).stream("GET", "/v1/events") as answer:
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/event-stream")
            snap = await first(snapshots(answer), lambda s: {VM_A.mac, VM_B.mac} <= vms(s))
        cluster = snap["cluster"]
        assert snap["controller"] == cid
        assert cluster["leader"] == rig.leader.id  # type: ignore[index]
        assert {m["id"] for m in cluster["members"]} == set(rig.members)  # type: ignore[index]
        assert "loop_stall_max_s" in snap["health"]["detail"]  # type: ignore[index]
        assert {s["name"] for s in snap["switches"]} == {"hv0", "hv1", "hv2"}  # type: ignore[attr-defined]
        assert snap["migrations"] == {"from": rig.leader.id, "open": [], "recent": []}


async def test_a_migration_shows_up_live_on_every_controller(rig: Rig) -> None:
    async with contextlib.AsyncExitStack() as stack:
        streams = [
            snapshots(await stack.enter_async_context(rig.client(cid).stream("GET", "/v1/events")))
            for cid in rig.members
        ]
        for feed in streams:
            await first(feed, lambda s: VM_A.mac in vms(s))
        leader = rig.client(rig.leader.id)
        started = await leader.post("/v1/migrations", json=notify_body(VM_A.mac, "hv0", "hv1"))
        assert started.status_code == 201, started.text
        mid = started.json()["id"]
        for feed in streams:
            snap = await first(feed, lambda s: [m["id"] for m in migrations(s, "open")] == [mid])
            assert migrations(snap, "open")[0]["state"] == "ready"
        assert (await leader.delete(f"/v1/migrations/{mid}")).status_code == 200
        for feed in streams:
            snap = await first(feed, lambda s: bool(migrations(s, "recent")))
            (done,) = migrations(snap, "recent")
            assert (done["id"], done["state"]) == (mid, "aborted")
            assert done["reason"]


async def test_streams_are_bounded_and_freed_when_their_clients_go(rig: Rig) -> None:
    client = rig.client(rig.leader.id)
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(MAX_STREAMS):
            answer = await stack.enter_async_context(client.stream("GET", "/v1/events"))
            assert answer.status_code == 200
        busy = await client.get("/v1/events")
        assert (busy.status_code, busy.json()["error"]) == (503, "too-many-streams")
    # Every client went: their streams end and give their places back.
    async with asyncio.timeout(PATIENCE):
        while True:
            async with client.stream("GET", "/v1/events") as again:
                if again.status_code == 200:
                    break
            await asyncio.sleep(0.05)


async def test_a_quiet_stream_sends_heartbeats(rig: Rig) -> None:
    member = rig.followers()[0]
    feed = Feed(member.service, member.forwarder, AUTH["Authorization"])
    frames = stream(feed, heartbeat=0.2)
    try:
        first_frame = await anext(frames)
        assert first_frame.startswith("event: snapshot\ndata: {")
        async with asyncio.timeout(PATIENCE):
            while (frame := await anext(frames)) != ": heartbeat\n\n":
                assert frame.startswith("event: snapshot\n")  # the cluster still changing
    finally:
        await frames.aclose()


async def test_a_stopping_controller_ends_its_streams(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """Rather than waiting out the shutdown's grace period for answers that never end."""
    stopping = rig.followers()[0]
    async with rig.client(stopping.id).stream("GET", "/v1/events") as answer:
        feed = snapshots(answer)
        await first(feed, lambda s: VM_A.mac in vms(s))
        await rig.crashed(stopping.id)
        with contextlib.suppress(httpx.RemoteProtocolError):  # cut, or ended
            async with asyncio.timeout(PATIENCE):
                async for _ in feed:
                    pass
    assert not [r for r in caplog.records if "graceful shutdown exceeded" in r.getMessage()]


async def test_a_snapshot_carries_arrivals_for_the_newest_finished_migrations_only(
    rig: Rig,
) -> None:
    leader = rig.client(rig.leader.id)
    report = {"directions": [{"name": "vm -> peer", "gap_s": 0.05, "lost": 3, "arrivals": [1.0]}]}
    ids = []
    for _ in range(PLOTS + 2):
        started = await leader.post("/v1/migrations", json=notify_body(VM_A.mac, "hv0", "hv1"))
        mid = started.json()["id"]
        assert (await leader.delete(f"/v1/migrations/{mid}")).status_code == 200
        put = await leader.put(f"/v1/migrations/{mid}/downtime", json=report)
        assert put.status_code == 200, put.text
        ids.append(mid)
    follower = rig.client(rig.followers()[0].id)  # its migrations are the leader's, relayed
    async with follower.stream("GET", "/v1/events") as answer:
        snap = await first(snapshots(answer), lambda s: len(migrations(s, "recent")) == len(ids))

    recent = migrations(snap, "recent")
    assert [m["id"] for m in recent] == ids
    arrivals = [m["downtime"]["directions"][0]["arrivals"] for m in recent]  # type: ignore[index]
    assert arrivals == [[], []] + [[1.0]] * PLOTS
    assert all(m["timeline"] for m in recent)  # every one keeps its timeline
    gaps = {m["downtime"]["directions"][0]["gap_s"] for m in recent}  # type: ignore[index]
    assert gaps == {0.05}
