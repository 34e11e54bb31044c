"""Schemathesis over a real controller's own OpenAPI schema: every route, valid and invalid
requests, sent over loopback to the leader of a running cluster.

With the valid tokens, no request gets a 5xx, every refusal is `{"error",
"detail"}`, and a refused request to a mutating route leaves every
controller's table and migrations, and the store, as they were.
Deterministic (`derandomize`) and bounded (`max_examples`). Hypothesis runs
in a worker thread, so that the cluster's event loop runs on between
requests as it would (leases are renewed, watches delivered); each request
and each look at the state is made on that loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode

from tests.api.conftest import VM_A, VM_B
from tests.rig.cluster import Rig, running
from tests.rig.http import AUTH, PEER_AUTH, token_files
from tests.rig.member import Options, config, member
from vportd.cluster.memory import MemoryServer

EXAMPLES = 40
PATIENCE = 30.0  # for one request or one look at the state
MUTATING = {"POST", "PUT", "DELETE"}
HTTP_SERVER_ERROR = 500
OPERATIONS = [
    ("GET", "/v1/migrations"), ("POST", "/v1/migrations"),
    ("GET", "/v1/migrations/{migration_id}"), ("DELETE", "/v1/migrations/{migration_id}"),
    ("GET", "/v1/vports"), ("GET", "/v1/vports/{vm}"), ("GET", "/v1/cluster"),
    ("GET", "/v1/switches"), ("PUT", "/v1/peer/vports/{vm}"), ("GET", "/v1/healthz"),
    ("GET", "/healthz"), ("GET", "/metrics"),
]  # fmt: skip
# Open routes without parameters or body: no invalid request to make of them.
NO_INPUT = {"/healthz", "/v1/healthz", "/metrics"}
CASES = [
    (method, path, mode)
    for method, path in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if not (mode is GenerationMode.NEGATIVE and path in NO_INPUT)
]
T = TypeVar("T")


def test_every_route_is_fuzzed(tmp_path: Path) -> None:
    made = config("c0", Options(), "tcp:127.0.0.1:1", token_files(tmp_path))
    schema = member(made, MemoryServer()).app.openapi()
    ops = schemathesis.openapi.from_dict(schema).get_all_operations()
    assert sorted((r.ok().method.upper(), r.ok().path) for r in ops if isinstance(r, Ok)) == sorted(
        OPERATIONS
    )


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


class OnLoop:
    """Runs coroutines on the rig's loop from Hypothesis's thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(PATIENCE)


async def _quiet(rig: Rig) -> dict[str, object]:
    """The state, once no runtime has work queued (what an earlier request set going is done)."""
    await rig.until(lambda: all(m.runtime.idle for m in rig.live()), "every runtime idle")
    return rig.state()


@dataclass
class Fuzzer:
    """Sends one operation's generated requests to the rig's leader, from Hypothesis's thread."""

    rig: Rig
    schema: Any  # schemathesis's OpenAPI schema of the app
    on_loop: OnLoop

    def fuzz(self, method: str, path: str, mode: GenerationMode) -> None:
        client = self.rig.client(self.rig.leader.id, auth=False)
        on_loop, rig = self.on_loop, self.rig

        @settings(
            max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
            suppress_health_check=list(HealthCheck),
        )  # fmt: skip
        @given(case=self.schema[path][method].as_strategy(mode))
        def check(case: Any) -> None:
            before = on_loop.run(_quiet(rig))
            response = on_loop.run(client.request(**_request(case, path)))
            assert response.status_code < HTTP_SERVER_ERROR, (case, response.text)
            if response.status_code >= 400:
                body = response.json()
                assert set(body) == {"error", "detail"}, body
                if method in MUTATING:
                    assert on_loop.run(_quiet(rig)) == before, (case, body)

        check()


async def test_fuzz(tmp_path: Path, subtests: pytest.Subtests) -> None:
    """Every operation and mode on one cluster, each reported on its own."""
    async with running(tmp_path) as rig:
        await rig.boot(VM_A, VM_B)
        served = await rig.client(rig.leader.id, auth=False).get("/openapi.json")
        schema = schemathesis.openapi.from_dict(served.json())
        fuzzer = Fuzzer(rig, schema, OnLoop(asyncio.get_running_loop()))
        for method, path, mode in CASES:
            with subtests.test(f"{method} {path} {mode.value}"):
                await asyncio.to_thread(fuzzer.fuzz, method, path, mode)
