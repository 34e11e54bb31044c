"""Schemathesis over the app's own OpenAPI schema: every route, valid and invalid requests.

With the valid tokens, no request gets a 5xx; on a mutating route, a
refused request (4xx) leaves every controller's table and the leader's
migrations as they were. Deterministic (`derandomize`) and bounded
(`max_examples`), so that it runs the same way in CI every time.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode

from tests.api.conftest import AUTH, PEER_AUTH, build_rig
from tests.api.fake import state

EXAMPLES = 40
MUTATING = {"POST", "PUT", "DELETE"}
# Open routes without parameters or body: no invalid request to make of them.
NO_INPUT = {"/healthz", "/v1/healthz", "/metrics"}
HTTP_SERVER_ERROR = 500

_SCHEMA = schemathesis.openapi.from_dict(build_rig().apps["c0"].openapi())
_OPS = [r.ok() for r in _SCHEMA.get_all_operations() if isinstance(r, Ok)]
OPERATIONS = [(op.method.upper(), op.path) for op in _OPS]


def _headers(case: Any, path: str) -> dict[str, str]:
    headers = {
        str(k): str(v)
        for k, v in dict(case.headers or {}).items()
        if str(k).lower() not in {"authorization", "content-length", "host"}
        and str(k).isascii() and str(v).isascii()
    }  # fmt: skip
    return {**headers, **(PEER_AUTH if path.startswith("/v1/peer/") else AUTH)}


def _request(case: Any, path: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "method": case.method.upper(),
        "url": case.formatted_path,
        "headers": _headers(case, path),
        "params": case.query or None,
    }
    body = case.body
    if type(body).__name__ != "NotSet":
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        kwargs["content"] = raw
        kwargs["headers"]["content-type"] = case.media_type or "application/json"
    return kwargs


def test_every_route_is_fuzzed() -> None:
    paths = {p for _, p in OPERATIONS}
    assert {"/v1/migrations", "/v1/peer/vports/{vm}", "/v1/peer/port-events"} <= paths
    assert len(OPERATIONS) >= 13


CASES = [
    (method, path, mode)
    for method, path in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if not (mode is GenerationMode.NEGATIVE and path in NO_INPUT)
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_fuzz(method: str, path: str, mode: GenerationMode) -> None:
    rig = build_rig()
    operation = _SCHEMA[path][method]
    with asyncio.Runner() as runner:

        async def send(case: Any) -> httpx.Response:
            async with rig.client("c0") as client:
                return await client.request(**_request(case, path))

        @settings(
            max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
            suppress_health_check=list(HealthCheck),
        )  # fmt: skip
        @given(case=operation.as_strategy(mode))
        def check(case: Any) -> None:
            before = state(rig.sim)
            response = runner.run(send(case))
            assert response.status_code < HTTP_SERVER_ERROR, (case, response.text)
            if response.status_code >= 400:
                body = response.json()
                assert set(body) == {"error", "detail"}, body
                if method in MUTATING:
                    assert state(rig.sim) == before, (case, body)

        check()
