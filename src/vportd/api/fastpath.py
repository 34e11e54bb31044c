"""The handshake's routes and the port-event syncs, served without FastAPI's machinery.

A notify waits on the leader's answer and on a vPort sync at the source and
at the destination. FastAPI's routing, dependencies and middleware around
those routes were a third to a half of each controller's CPU for a
handshake (py-spy); in a boot storm every port's entry reaches each peer in a
port-event batch. `FastPaths` answers `POST /v1/migrations` (relayed to
the leader by `forwarding`, as the FastAPI route does),
`PUT /v1/peer/vports/{vm}` and `POST /v1/peer/port-events` itself, behind the
same gate (body limit, then the bearer token), with the same body models,
service calls and error bodies as the FastAPI routes. Anything else goes on
to FastAPI, which also documents these routes in the OpenAPI schema.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vportd.api.errors import ApiError, describe, error_response
from vportd.api.forwarding import LeaderOnly
from vportd.api.models import NotifyBody, PortEventBatch, PortEventBody, VPortSyncBody
from vportd.api.northbound import answer_notify
from vportd.api.peer import answer_port_events, answer_vport_sync
from vportd.api.service import Service
from vportd.cluster.peers import Forwarder
from vportd.core.errors import CoreError

HTTP_BAD_REQUEST = 400
HTTP_UNPROCESSABLE = 422
M = TypeVar("M")
Handler = Callable[[Scope, re.Match[str], bytes], Awaitable[Response]]


class FastPaths:
    """ASGI middleware: the handshake's routes here, anything else to `app`."""

    def __init__(self, app: ASGIApp, service: Service, forwarder: Forwarder) -> None:
        self.app = app
        self.service = service
        self.leader = LeaderOnly(service, forwarder)
        self.notify_body = TypeAdapter(NotifyBody)
        self.sync_body = TypeAdapter(VPortSyncBody)
        self.events_body: TypeAdapter[PortEventBody | PortEventBatch] = TypeAdapter(
            PortEventBody | PortEventBatch
        )
        # The union's members, a batch first: tried one by one, a batch is parsed once.
        self.events_bodies = (TypeAdapter(PortEventBatch), TypeAdapter(PortEventBody))
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = [
            ("POST", re.compile(r"/v1/migrations"), self._notify),
            ("PUT", re.compile(r"/v1/peer/vports/([^/]+)"), self._vport_sync),
            ("POST", re.compile(r"/v1/peer/port-events"), self._port_events),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        routed = self._route(scope) if scope["type"] == "http" else None
        if routed is None:
            await self.app(scope, receive, send)
            return
        handler, found = routed
        raw = await _body(receive)
        response = await _answer(handler, scope, found, raw)
        await response(scope, receive, send)

    def _route(self, scope: Scope) -> tuple[Handler, re.Match[str]] | None:
        for method, path, handler in self.routes:
            if scope["method"] == method and (found := path.fullmatch(scope["path"])):
                return handler, found
        return None

    async def _notify(self, scope: Scope, _: re.Match[str], raw: bytes) -> Response:
        body = _parsed(raw, self.notify_body)
        return await answer_notify(self.service, self.leader, Request(scope, _replay(raw)), body)

    async def _vport_sync(self, _: Scope, found: re.Match[str], raw: bytes) -> Response:
        body = _parsed(raw, self.sync_body)
        return await answer_vport_sync(self.service, found.group(1), body)

    async def _port_events(self, _: Scope, __: re.Match[str], raw: bytes) -> Response:
        body = _parsed(raw, self.events_body, *self.events_bodies)
        return await answer_port_events(self.service, body)


async def _answer(handler: Handler, scope: Scope, found: re.Match[str], raw: bytes) -> Response:
    try:
        return await handler(scope, found, raw)
    except _Refused as refused:
        return refused.response
    except CoreError as err:
        return error_response(err.status, err.code, err.detail)
    except ApiError as err:
        return error_response(err.status, err.code, err.detail, err.headers)


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _parsed(raw: bytes, model: TypeAdapter[M], *parsers: TypeAdapter[Any]) -> M:
    """`raw` validated as `model`: by pydantic's JSON parser straight from the bytes (the
    first of `parsers`, default `model`, that takes it), about a quarter cheaper than JSON
    to Python objects to models; a body none takes goes the FastAPI way, so a refusal is
    FastAPI's own."""
    for parser in parsers or (model,):
        try:
            parsed: M = parser.validate_json(raw)
        except ValidationError:
            continue
        return parsed
    return _validated(model, raw)


def _validated(adapter: TypeAdapter[M], raw: bytes) -> M:
    """As FastAPI does it: JSON by the stdlib, then the model in Python (strict) mode."""
    if not raw:
        missing = "body: Field required"
        raise _Refused(error_response(HTTP_UNPROCESSABLE, "invalid-request", missing))
    try:
        data = json.loads(raw)
    except ValueError:
        invalid = error_response(HTTP_BAD_REQUEST, "invalid-json", "the body is not valid JSON")
        raise _Refused(invalid) from None
    try:
        validated: M = adapter.validate_python(data, from_attributes=True)  # as FastAPI
    except ValidationError as err:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in err.errors()]
        raise _Refused(
            error_response(HTTP_UNPROCESSABLE, "invalid-request", describe(errors))
        ) from None
    return validated


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(raw: bytes) -> Receive:
    """A `receive` that gives the body read already (a relay reads it again)."""

    async def again() -> Message:
        return {"type": "http.request", "body": raw, "more_body": False}

    return again
