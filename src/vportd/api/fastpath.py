"""The migration handshake's two routes, served without FastAPI's machinery.

A notify waits on the leader's answer and on a vPort sync at the source and
at the destination. FastAPI's routing, dependencies and middleware around
those routes were a third to a half of each controller's CPU for a
handshake (py-spy). `FastPaths` answers `POST /v1/migrations` on the leader
and `PUT /v1/peer/vports/{vm}` itself, behind the same gate (body limit,
then the bearer token), with the same body models, the same service calls
and the same error bodies as the FastAPI routes. Anything else, and a
notify this controller cannot answer as leader (it is relayed), goes on to
FastAPI, which also documents both routes in the OpenAPI schema.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vportd.api.errors import ApiError, describe, error_response
from vportd.api.models import NotifyBody, VPortSyncBody, normalise_mac
from vportd.api.northbound import HTTP_CREATED, migration_response
from vportd.api.peer import answer_vport_sync
from vportd.api.service import Service
from vportd.core.errors import CoreError, NotLeader
from vportd.core.wire import NotifyRequest

HTTP_BAD_REQUEST = 400
HTTP_UNPROCESSABLE = 422
M = TypeVar("M", bound=BaseModel)
# A handler's answer; None: not here, FastAPI's route answers (the body is replayed to it).
Handler = Callable[[re.Match[str], bytes], Awaitable[Response | None]]


class FastPaths:
    """ASGI middleware: the handshake's routes here, anything else to `app`."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service
        self.notify_body = TypeAdapter(NotifyBody)
        self.sync_body = TypeAdapter(VPortSyncBody)
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = [
            ("POST", re.compile(r"/v1/migrations"), self._notify),
            ("PUT", re.compile(r"/v1/peer/vports/([^/]+)"), self._vport_sync),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        routed = self._route(scope) if scope["type"] == "http" else None
        if routed is None:
            await self.app(scope, receive, send)
            return
        handler, found = routed
        raw = await _body(receive)
        response = await _answer(handler, found, raw)
        if response is None:
            await self.app(scope, _replay(raw, receive), send)
            return
        await response(scope, receive, send)

    def _route(self, scope: Scope) -> tuple[Handler, re.Match[str]] | None:
        for method, path, handler in self.routes:
            if scope["method"] == method and (found := path.fullmatch(scope["path"])):
                return handler, found
        return None

    async def _notify(self, _: re.Match[str], raw: bytes) -> Response | None:
        leader = self.service.leader()
        if leader is None or leader.id != self.service.me.id:
            return None
        body = _validated(self.notify_body, raw)
        try:
            view, new = await self.service.notify(
                NotifyRequest(normalise_mac(body.vm), body.source, body.destination)
            )
        except NotLeader:
            return None  # leadership moved meanwhile: relayed
        return migration_response(view, HTTP_CREATED if new else 200)

    async def _vport_sync(self, found: re.Match[str], raw: bytes) -> Response | None:
        body = _validated(self.sync_body, raw)
        return await answer_vport_sync(self.service, found.group(1), body)


async def _answer(handler: Handler, found: re.Match[str], raw: bytes) -> Response | None:
    try:
        return await handler(found, raw)
    except _Refused as refused:
        return refused.response
    except CoreError as err:
        return error_response(err.status, err.code, err.detail)
    except ApiError as err:
        return error_response(err.status, err.code, err.detail, err.headers)


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


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


def _replay(raw: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the body read already, then what `receive` gives."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    return again
