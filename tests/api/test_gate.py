"""Auth per token kind, and the body-size limit, with and without Content-Length."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.api.conftest import AUTH, MAX_BODY, PEER_AUTH, Rig, build_rig
from tests.api.fake import VM_A, state, url_of

NORTH = ("GET", "/v1/vports")
PEER = ("POST", "/v1/peer/port-events")


@pytest.mark.parametrize(
    ("route", "headers", "status", "code"),
    [
        (NORTH, {}, 401, "missing-token"),
        (NORTH, {"Authorization": "Basic dXNlcjpwdw=="}, 401, "missing-token"),
        (NORTH, {"Authorization": "Bearer"}, 401, "missing-token"),
        (NORTH, {"Authorization": "Bearer nope"}, 403, "wrong-token"),
        (NORTH, PEER_AUTH, 403, "wrong-token"),
        (PEER, {}, 401, "missing-token"),
        (PEER, AUTH, 403, "wrong-token"),
        (("GET", "/v1/nothing-here"), {}, 401, "missing-token"),
    ],
)
async def test_refused_tokens(
    rig: Rig,
    route: tuple[str, str],
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    before = state(rig.sim)
    async with rig.client("c0") as leader:
        got = await leader.request(*route, headers=headers, json={"events": []})
    assert (got.status_code, got.json()["error"]) == (status, code)
    if status == 401:
        assert got.headers["www-authenticate"] == "Bearer"
    assert state(rig.sim) == before


async def test_auth_comes_before_body_validation(leader: httpx.AsyncClient) -> None:
    got = await leader.post("/v1/migrations", content=b"{garbage")
    assert got.status_code == 401


async def test_right_tokens_pass(leader: httpx.AsyncClient) -> None:
    assert (await leader.request(*NORTH, headers=AUTH)).status_code == 200
    got = await leader.request(*PEER, headers=PEER_AUTH, json={"events": []})
    assert got.status_code == 204


@pytest.mark.parametrize(("missing", "route", "key"), [
    ("token", NORTH, "api.token_file"), ("peer_token", PEER, "api.peer_token_file"),
])  # fmt: skip
async def test_unconfigured_token_refuses_everyone(
    missing: str, route: tuple[str, str], key: str
) -> None:
    rig = build_rig(**{missing: None})
    async with rig.client("c0") as client:
        for headers in ({}, AUTH, PEER_AUTH):
            got = await client.request(*route, headers=headers, json={"events": []})
            assert (got.status_code, got.json()["error"]) == (403, "auth-not-configured")
            assert key in got.json()["detail"]
        assert (await client.get("/healthz")).status_code == 200


def _notify_body(size: int) -> bytes:
    pad = "x" * size
    return f'{{"vm": "{VM_A}", "source": "hv0", "destination": "hv1", "pad": "{pad}"}}'.encode()


async def test_oversize_with_content_length(rig: Rig, leader: httpx.AsyncClient) -> None:
    before = state(rig.sim)
    got = await leader.post(
        "/v1/migrations",
        content=_notify_body(MAX_BODY),
        headers={**AUTH, "content-type": "application/json"},
    )
    assert (got.status_code, got.json()["error"]) == (413, "body-too-large")
    assert state(rig.sim) == before


async def test_oversize_chunked_without_content_length(rig: Rig) -> None:
    before = state(rig.sim)
    body = _notify_body(MAX_BODY)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 4096):
            yield body[i : i + 4096]

    # A streamed body: no Content-Length, so the limit counts what arrives.
    async with httpx.AsyncClient(transport=rig.router, base_url=url_of("c0")) as client:
        request = client.build_request(
            "POST", "/v1/migrations", content=chunks(),
            headers={**AUTH, "content-type": "application/json"},
        )  # fmt: skip
        assert "content-length" not in request.headers
        got = await client.send(request)
    assert (got.status_code, got.json()["error"]) == (413, "body-too-large")
    assert state(rig.sim) == before


async def test_peer_batch_over_the_limit_applies_nothing(
    rig: Rig, leader: httpx.AsyncClient
) -> None:
    before = state(rig.sim)
    got = await leader.post(
        "/v1/peer/port-events", content=b'{"events": [' + b" " * MAX_BODY + b"]}",
        headers={**PEER_AUTH, "content-type": "application/json"},
    )  # fmt: skip
    assert got.status_code == 413
    assert state(rig.sim) == before
