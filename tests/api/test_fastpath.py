"""The handshake's fast paths answer as the FastAPI routes they stand in for.

Each request is sent to a controller's app (with `FastPaths`) and to an app
of the same service built without it (FastAPI routes it); both answers must
be the same, refusals included, and a refused request changes nothing.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.api.conftest import AUTH, MAX_BODY, PEER_AUTH, PEER_TOKEN, TOKEN, Rig
from tests.api.fake import VM_A, state
from tests.api.test_peer import boot_storm, leader_syncs
from vportd.api.app import create_app
from vportd.api.fastpath import FastPaths
from vportd.core.wire import to_rest


def without_fast_paths(rig: Rig, cid: str) -> FastAPI:
    app = create_app(
        rig.services[cid], token=TOKEN, peer_token=PEER_TOKEN, max_body=MAX_BODY,
        forwarder=rig.forwarder,
    )  # fmt: skip
    # (`cls` is typed as a factory, not a class: read it untyped)
    app.user_middleware = [
        m for m in app.user_middleware if getattr(m, "cls", None) is not FastPaths
    ]
    return app


async def both(rig: Rig, cid: str, request: tuple[str, str, bytes], auth: dict[str, str]) -> Any:
    method, path, body = request
    headers = {**auth, "content-type": "application/json"}
    answers = []
    for app in (rig.apps[cid], without_fast_paths(rig, cid)):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            got = await client.request(method, path, content=body, headers=headers)
            answers.append((got.status_code, got.json()))
    assert answers[0] == answers[1]
    return answers[0]


NOTIFY = {"vm": VM_A, "source": "hv0", "destination": "hv1"}
BAD_NOTIFIES = [
    b"", b"{", b"[]", b"null", b"{}",
    json.dumps({**NOTIFY, "extra": 1}).encode(),
    json.dumps({**NOTIFY, "vm": "zz"}).encode(),
    json.dumps({**NOTIFY, "vm": 7}).encode(),
    json.dumps({**NOTIFY, "vm": "02:00:00:00:00:99"}).encode(),
    json.dumps({**NOTIFY, "destination": "hv9"}).encode(),
    json.dumps({**NOTIFY, "destination": "hv0"}).encode(),
]  # fmt: skip


@pytest.mark.parametrize("body", BAD_NOTIFIES)
async def test_a_refused_notify_is_answered_alike(rig: Rig, body: bytes) -> None:
    before = state(rig.sim)
    status, answer = await both(rig, "c0", ("POST", "/v1/migrations", body), AUTH)
    assert status >= 400 and set(answer) == {"error", "detail"}
    assert state(rig.sim) == before


async def test_a_refused_vport_sync_is_answered_alike(rig: Rig) -> None:
    call = to_rest(leader_syncs(rig)["c1"])
    good = call.body
    bodies: list[Any] = [
        {**good, "extra": True}, {**good, "answer": "yes"},
        {**good, "record": {**good["record"], "vm": "zz"}}, [], None,
    ]  # fmt: skip
    before = state(rig.sim)
    for body in bodies:
        raw = b"" if body is None else json.dumps(body).encode()
        status, answer = await both(rig, "c1", ("PUT", call.path, raw), PEER_AUTH)
        assert status >= 400 and set(answer) == {"error", "detail"}
    for path in ("/v1/peer/vports/nope", "/v1/peer/vports/02:00:00:00:00:0b"):
        status, _ = await both(rig, "c1", ("PUT", path, json.dumps(good).encode()), PEER_AUTH)
        assert status == 400
    assert state(rig.sim) == before


async def test_refused_port_events_are_answered_alike(rig: Rig) -> None:
    good = [to_rest(m).body for m in boot_storm(rig, 3)]
    bodies: list[Any] = [
        {"events": [*good[:2], {**good[2], "kind": "explode"}]},
        {"events": good, "extra": 1}, {**good[0], "origin": 7}, {"events": "no"},
        {**good[0], "record": {**good[0]["record"], "vm": "zz"}}, [], None,
    ]  # fmt: skip
    before = state(rig.sim)
    raws = [b"" if body is None else json.dumps(body).encode() for body in bodies]
    # JSON that only Python's parser reads, and a key given twice (the last one counts).
    raws += [b'{"events": NaN}', b'{"events": [], "events": 5}']
    for raw in raws:
        status, answer = await both(rig, "c0", ("POST", "/v1/peer/port-events", raw), PEER_AUTH)
        assert status >= 400 and set(answer) == {"error", "detail"}, raw
    assert state(rig.sim) == before


async def test_a_notify_to_a_follower_is_relayed_to_the_leader(rig: Rig) -> None:
    async with rig.client("c1") as client:
        got = await client.post("/v1/migrations", json=NOTIFY, headers=AUTH)
    assert got.status_code == 201
    assert got.headers["x-vportd-answered-by"] == "c0"
