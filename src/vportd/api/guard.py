"""The API's gate, as ASGI middleware: body size first, then the bearer token, then JSON.

All run before FastAPI parses anything, so that an oversize or
unauthenticated request is refused without its body being read or
validated (a 401 never depends on what the body contains) and never
reaches the service.

Which token a path needs:

* open (no token): `/healthz`, `/v1/healthz`, `/metrics`, `/docs`,
  `/openapi.json`, and the dashboard's static files under `/ui`: probes
  and scrapers carry no secret, and the schema and the page hold none;
* `/v1/peer/...`: the controllers' token (`api.peer_token_file`);
* everything else: the VMM's and operators' token (`api.token_file`), so
  that an unknown path answers 401 to a stranger rather than telling it
  which routes exist.

A token that is not configured refuses every request with 403 naming the
configuration key, rather than leaving the routes open.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import Enum

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vportd.api.errors import ApiError, error_response

OPEN_PATHS = frozenset(
    {"/healthz", "/v1/healthz", "/metrics", "/docs", "/docs/oauth2-redirect", "/openapi.json"}
)
PEER_PREFIX = "/v1/peer/"
UI_PREFIX = "/ui"
HTTP_UNAUTHORIZED = 401
HTTP_FORBIDDEN = 403
HTTP_TOO_LARGE = 413


class Realm(Enum):
    OPEN = "open"
    NORTHBOUND = "api.token_file"
    PEER = "api.peer_token_file"


def realm_of(path: str) -> Realm:
    if path in OPEN_PATHS or path == UI_PREFIX or path.startswith(UI_PREFIX + "/"):
        return Realm.OPEN
    if path.startswith(PEER_PREFIX) or path == PEER_PREFIX.rstrip("/"):
        return Realm.PEER
    return Realm.NORTHBOUND


def check_bearer(authorization: str | None, token: str | None, realm: Realm) -> None:
    """Raise the ApiError a request with this Authorization header gets, if any."""
    if token is None:
        raise ApiError(
            HTTP_FORBIDDEN, "auth-not-configured",
            f"{realm.value} is not configured on this controller: every request is refused",
        )  # fmt: skip
    scheme, _, given = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise ApiError(
            HTTP_UNAUTHORIZED, "missing-token",
            "an 'Authorization: Bearer <token>' header is required",
            {"WWW-Authenticate": "Bearer"},
        )  # fmt: skip
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise ApiError(HTTP_FORBIDDEN, "wrong-token", f"the bearer token is not {realm.value}'s")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


@dataclass
class BearerAuth:
    app: ASGIApp
    token: str | None
    peer_token: str | None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        realm = realm_of(scope["path"])
        if realm is not Realm.OPEN:
            token = self.peer_token if realm is Realm.PEER else self.token
            try:
                check_bearer(_header(scope, b"authorization"), token, realm)
            except ApiError as err:
                response = error_response(err.status, err.code, err.detail, err.headers)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _TooLarge(Exception):
    """Raised into the app when the body it reads passes the limit."""


@dataclass
class BodyLimit:
    """413 for a body over `max_body` bytes: by Content-Length, or counted as it streams."""

    app: ASGIApp
    max_body: int

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            await self._refuse(scope, receive, send, declared)
            return
        await self._counted(scope, receive, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        seen = 0
        over = False

        async def receive_counted() -> Message:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    over = True
                    raise _TooLarge
            return message

        async def send_unless_over(message: Message) -> None:
            # Whatever the app made of a cut body (FastAPI calls it a 400) is
            # replaced by our 413.
            if not over:
                await send(message)

        try:
            await self.app(scope, receive_counted, send_unless_over)
        except Exception:
            # However the app wrapped our _TooLarge, the answer is the 413.
            if not over:
                raise
        if over:
            await self._refuse(scope, receive, send, None)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, declared: str | None
    ) -> None:
        if declared is not None and not declared.isdigit():
            response = error_response(400, "bad-request", "malformed Content-Length")
        else:
            response = error_response(
                HTTP_TOO_LARGE, "body-too-large", f"the body is over {self.max_body} bytes"
            )
        await response(scope, receive, send)


HTTP_UNSUPPORTED = 415
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


def _json_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


@dataclass
class JsonBodies:
    """415 for a body that says it is not JSON (a body with no Content-Type is read as JSON)."""

    app: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in _WITH_BODY:
            content_type = _header(scope, b"content-type")
            if content_type is not None and not _json_type(content_type):
                response = error_response(
                    HTTP_UNSUPPORTED, "unsupported-media-type",
                    f"the body must be JSON (Content-Type: application/json), not {content_type!r}",
                )  # fmt: skip
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
