"""Every refusal the API gives, as one JSON shape: `{"error": code, "detail": text}`.

The core's typed errors get their HTTP status here (DESIGN §4); the app's own
refusals (auth, size, media type, forwarding) are `ApiError`s; request
validation, Starlette's routing errors and bodies that cannot be parsed at
all are rendered in the same shape, so that a client reads every error the
same way. An error the app did not foresee is logged with its traceback and
answered 500 in that shape too, without the traceback.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from vportd.core import errors as core

log = logging.getLogger("vportd.api")

HTTP_BAD_REQUEST = 400
HTTP_UNPROCESSABLE = 422
HTTP_INTERNAL = 500

# The status of each refusal of the core (DESIGN §4).
CORE_STATUS: dict[type[core.CoreError], int] = {
    core.InvalidMac: 400,
    core.InvalidRequest: 400,
    core.UnknownVM: 404,
    core.UnknownSwitch: 404,
    core.UnknownMigration: 404,
    core.NotOnSource: 409,
    core.AlreadyMigrating: 409,
    core.MigrationConflict: 409,
    core.MigrationSuppressed: 429,  # with Retry-After (`core_headers`)
    core.NotLeader: 503,
    core.NoController: 503,
}

# Codes for Starlette's own refusals (unknown route, wrong method, ...).
_HTTP_CODES = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "body-too-large",
    415: "unsupported-media-type",
}


class ApiError(Exception):
    """A refusal decided by the API itself rather than by the core."""

    def __init__(
        self, status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})


def error_response(
    status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def core_status(err: core.CoreError) -> int:
    return next((s for kind, s in CORE_STATUS.items() if isinstance(err, kind)), HTTP_BAD_REQUEST)


def core_headers(err: core.CoreError) -> dict[str, str] | None:
    """Retry-After for a VM that moved too often: whole seconds, at least 1 (RFC 9110 §10.2.3)."""
    if isinstance(err, core.MigrationSuppressed):
        return {"Retry-After": str(max(1, math.ceil(err.retry_after)))}
    return None


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(core.CoreError, _core_error)  # type: ignore[arg-type]
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unforeseen)


async def _core_error(_: Request, err: core.CoreError) -> JSONResponse:
    return error_response(core_status(err), err.code, err.detail, core_headers(err))


async def _api_error(_: Request, err: ApiError) -> JSONResponse:
    return error_response(err.status, err.code, err.detail, err.headers)


async def _invalid(_: Request, err: RequestValidationError) -> JSONResponse:
    errors = err.errors()
    # A body that is not JSON at all is a 400; JSON of the wrong shape a 422.
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(HTTP_BAD_REQUEST, "invalid-json", "the body is not valid JSON")
    return error_response(HTTP_UNPROCESSABLE, "invalid-request", describe(errors))


def describe(errors: object) -> str:
    """One line per problem, `where: what`, the input itself left out (it may be huge)."""
    if not isinstance(errors, (list, tuple)):
        return "invalid request"
    lines = []
    for e in list(errors)[:10]:
        where = ".".join(str(p) for p in e.get("loc", ()))
        lines.append(f"{where}: {e.get('msg', 'invalid')}")
    more = len(errors) - 10
    if more > 0:
        lines.append(f"... and {more} more")
    return "; ".join(lines) or "invalid request"


async def _http_error(_: Request, err: HTTPException) -> JSONResponse:
    code = _HTTP_CODES.get(err.status_code, "error")
    if err.status_code == HTTP_BAD_REQUEST and isinstance(err.__cause__, RecursionError):
        return error_response(HTTP_BAD_REQUEST, "invalid-json", "the body is nested too deeply")
    return error_response(err.status_code, code, str(err.detail), err.headers)


async def _unforeseen(request: Request, err: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=err)
    return error_response(HTTP_INTERNAL, "internal-error", "the controller failed to answer")
