"""The gate in front of the routes: tokens per realm, the body-size limit, JSON bodies only.

Every refusal is `{"error", "detail"}` and changes nothing in any table, in
the store or in the leader's migrations; a follower refuses by itself, with
nothing relayed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.api.conftest import VM_A
from tests.rig.cluster import Rig, running
from tests.rig.http import AUTH, PEER_AUTH, leader_sync, sync_json, sync_path
from tests.rig.member import Member, Options

NORTH = ("GET", "/v1/vports")
PEER = ("PUT", sync_path(VM_A.mac))
NOTIFY = {"vm": VM_A.mac, "source": "hv0", "destination": "hv1"}


REFUSED: list[tuple[tuple[str, str], dict[str, str], int, str]] = [
    (NORTH, {}, 401, "missing-token"),
    (NORTH, {"Authorization": "Basic dXNlcjpwdw=="}, 401, "missing-token"),
    (NORTH, {"Authorization": "Bearer"}, 401, "missing-token"),
    (NORTH, {"Authorization": "Bearer nope"}, 403, "wrong-token"),
    (NORTH, PEER_AUTH, 403, "wrong-token"),
    (PEER, {}, 401, "missing-token"),
    (PEER, AUTH, 403, "wrong-token"),
    (("GET", "/v1/nothing-here"), {}, 401, "missing-token"),
    (("GET", "/v1/peer"), AUTH, 403, "wrong-token"),
]


async def test_refused_tokens(rig: Rig, subtests: pytest.Subtests) -> None:
    for route, headers, status, code in REFUSED:
        with subtests.test(f"{route} with {headers}: {status} {code}"):
            before = rig.state()
            for m in rig.live():
                got = await rig.client(m.id, auth=False).request(*route, headers=headers, json={})
                assert (got.status_code, got.json()["error"]) == (status, code)
                assert set(got.json()) == {"error", "detail"}
                if status == 401:
                    assert got.headers["www-authenticate"] == "Bearer"
            assert rig.state() == before


async def test_auth_comes_before_the_body(rig: Rig) -> None:
    client = rig.client(rig.leader.id, auth=False)
    assert (await client.post("/v1/migrations", content=b"{garbage")).status_code == 401
    plain = {"content-type": "text/plain"}
    assert (await client.post("/v1/migrations", content=b"x", headers=plain)).status_code == 401


async def test_right_tokens_pass(rig: Rig) -> None:
    target = rig.master(VM_A.switch)
    client = rig.client(target.id, auth=False)
    assert (await client.request(*NORTH, headers=AUTH)).status_code == 200
    sync = leader_sync(rig.stored()[VM_A.mac], "hv1", rig.leader.id)
    got = await client.request(*PEER, headers=PEER_AUTH, json=sync_json(sync))
    assert (got.status_code, got.json()["status"]) == (200, "sync-complete")


@pytest.fixture
async def no_token(tmp_path: Path) -> AsyncIterator[Rig]:
    async with running(tmp_path, Options(token=False)) as r:
        yield r


@pytest.fixture
async def alone_without_peer_token(tmp_path: Path) -> AsyncIterator[Rig]:
    """One controller (store.kind = "memory": no peer token needed), none configured."""
    async with running(tmp_path, Options(controllers=1, store="memory", peer_token=False)) as r:
        yield r


async def _refused_by_everyone(rig: Rig, route: tuple[str, str], key: str) -> None:
    client = rig.client(rig.leader.id, auth=False)
    for headers in ({}, AUTH, PEER_AUTH):
        got = await client.request(*route, headers=headers, json={})
        assert (got.status_code, got.json()["error"]) == (403, "auth-not-configured")
        assert key in got.json()["detail"]
    assert (await client.get("/healthz")).status_code == 200


async def test_no_token_file_refuses_everyone(no_token: Rig) -> None:
    await _refused_by_everyone(no_token, NORTH, "api.token_file")
    got = await no_token.client(no_token.leader.id, auth=False).request(
        *PEER, headers=PEER_AUTH, json={}
    )
    assert got.status_code == 422  # the peer realm has its token: on to the body


async def test_no_peer_token_file_refuses_every_peer(alone_without_peer_token: Rig) -> None:
    rig = alone_without_peer_token
    await _refused_by_everyone(rig, PEER, "api.peer_token_file")
    assert (await rig.client(rig.leader.id).request(*NORTH)).status_code == 200


# -- the body-size limit ------------------------------------------------------------------
def _notify_padded(size: int) -> bytes:
    pad = "x" * size
    return f'{{"vm": "{VM_A.mac}", "source": "hv0", "destination": "hv1", "pad": "{pad}"}}'.encode()


async def test_oversize_with_content_length(rig: Rig) -> None:
    before = rig.state()
    for m in rig.live():
        got = await rig.client(m.id).post(
            "/v1/migrations", content=_notify_padded(rig.options.max_body),
            headers={"content-type": "application/json"},
        )  # fmt: skip
        assert (got.status_code, got.json()["error"]) == (413, "body-too-large")
    assert rig.state() == before


async def test_oversize_chunked_without_content_length(rig: Rig) -> None:
    before = rig.state()
    body = _notify_padded(rig.options.max_body)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 64 * 1024):
            yield body[i : i + 64 * 1024]

    # A streamed body: no Content-Length, so the limit counts what arrives.
    client = rig.client(rig.leader.id)
    request = client.build_request(
        "POST", "/v1/migrations", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in request.headers
    got = await client.send(request)
    assert (got.status_code, got.json()["error"]) == (413, "body-too-large")
    assert rig.state() == before


async def test_a_sync_over_the_limit_applies_nothing(rig: Rig) -> None:
    sync = sync_json(leader_sync(rig.stored()[VM_A.mac], "hv1", rig.leader.id))
    padded = json.dumps({**sync, "pad": "x" * rig.options.max_body})
    before = rig.state()
    got = await rig.client(rig.master("hv1").id, auth=False).put(
        sync_path(VM_A.mac), content=padded.encode(),
        headers={**PEER_AUTH, "content-type": "application/json"},
    )  # fmt: skip
    assert (got.status_code, got.json()["error"]) == (413, "body-too-large")
    assert rig.state() == before


# -- JSON bodies only -------------------------------------------------------------------------
async def test_a_notify_that_is_not_json_is_415(rig: Rig) -> None:
    for target in (rig.leader, rig.followers()[0]):
        await _not_json(rig, target)


async def _not_json(rig: Rig, target: Member) -> None:
    before = rig.state()
    served = len(rig.leader.served.requests)
    got = await rig.client(target.id).post(
        "/v1/migrations", content=json.dumps(NOTIFY).encode(),
        headers={"content-type": "text/plain"},
    )  # fmt: skip
    assert (got.status_code, got.json()["error"]) == (415, "unsupported-media-type")
    assert set(got.json()) == {"error", "detail"}
    # The leader served the request sent to it, if any: a follower relays nothing.
    assert len(rig.leader.served.requests) == served + (target is rig.leader)
    await rig.settle()
    assert rig.state() == before


async def test_a_sync_that_is_not_json_is_415(rig: Rig) -> None:
    sync = sync_json(leader_sync(rig.stored()[VM_A.mac], "hv1", rig.leader.id))
    before = rig.state()
    got = await rig.client(rig.master("hv1").id, auth=False).put(
        sync_path(VM_A.mac), content=json.dumps(sync).encode(),
        headers={**PEER_AUTH, "content-type": "text/plain; charset=utf-8"},
    )  # fmt: skip
    assert (got.status_code, got.json()["error"]) == (415, "unsupported-media-type")
    assert rig.state() == before
