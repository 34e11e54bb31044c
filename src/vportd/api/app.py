"""The FastAPI app of one controller, built by `create_app` (no module-level app).

The app only parses, authenticates, forwards and renders: every answer comes
from the `Service`. In front of the routes, outermost first: the body-size
limit (413), then the bearer-token check (401/403, see `guard` for which
paths are open), then the media type of a body (415); every refusal is
`{"error": code, "detail": text}`.

Routes: northbound `/v1/...` (`northbound`; the dashboard's feed
`/v1/events`, `dashboard`), east-west `/v1/peer/...` (`peer`), and open
`/healthz`, `/v1/healthz`, `/metrics`, `/docs`, `/openapi.json` and the
dashboard's page, `/ui/`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, FastAPI, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse

from vportd import __version__
from vportd.api.dashboard import events_router, mount_ui
from vportd.api.errors import install_error_handlers
from vportd.api.guard import BearerAuth, BodyLimit, JsonBodies, Realm, realm_of
from vportd.api.models import HealthOut
from vportd.api.northbound import northbound_router
from vportd.api.peer import peer_router
from vportd.api.service import Service
from vportd.cluster.peers import Forwarder

HTTP_UNAVAILABLE = 503

DESCRIPTION = """\
The REST API of one vportd controller (DESIGN §4). Any controller answers;
migration requests sent to a follower are relayed to the leader.

Auth: `/v1/peer/...` needs the controllers' bearer token, every other `/v1`
route the VMM's and operators' token. `/healthz`, `/metrics`, `/docs`,
`/openapi.json` and the dashboard's page `/ui/` are open. Errors are
`{"error": code, "detail": text}`.
"""


def create_app(
    service: Service,
    *,
    token: str | None,
    peer_token: str | None,
    max_body: int,
    forwarder: Forwarder,
) -> FastAPI:
    """One controller's API. A token that is None refuses its routes (403)."""
    app = FastAPI(
        title="vportd", version=__version__, description=DESCRIPTION,
        docs_url="/docs", redoc_url=None, openapi_url="/openapi.json",
    )  # fmt: skip
    install_error_handlers(app)
    # Routes are matched in order: the handshake's first (a vPort sync, then a notify).
    app.include_router(peer_router(service))
    app.include_router(northbound_router(service, forwarder))
    app.include_router(events_router(service, forwarder))
    app.include_router(_open_router(service))
    mount_ui(app)
    app.openapi = partial(_schema, app)  # type: ignore[method-assign]
    # Starlette runs the middleware added last first: the size limit, then auth,
    # then the media type.
    app.add_middleware(JsonBodies)
    app.add_middleware(BearerAuth, token=token, peer_token=peer_token)
    app.add_middleware(BodyLimit, max_body=max_body)
    return app


# The tokens as the OpenAPI schema shows them; `guard` enforces them, path by path.
SCHEMES = {
    Realm.NORTHBOUND: ("vmm-token", "The VMM's and operators' token (api.token_file)"),
    Realm.PEER: ("peer-token", "The controllers' token (api.peer_token_file)"),
}


def _schema(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI schema, with the token each path needs (`guard.realm_of`)."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {})
        components["securitySchemes"] = {
            name: {"type": "http", "scheme": "bearer", "description": text}
            for name, text in SCHEMES.values()
        }
        for path, operations in schema.get("paths", {}).items():
            scheme = SCHEMES.get(realm_of(path))
            for operation in operations.values():
                if scheme is not None:
                    operation["security"] = [{scheme[0]: []}]
        app.openapi_schema = schema
    return app.openapi_schema


def _open_router(service: Service) -> APIRouter:
    router = APIRouter(tags=["open"])

    @router.get(
        "/healthz", response_model=HealthOut,
        responses={503: {"model": HealthOut, "description": "unhealthy"}},
    )  # fmt: skip
    @router.get(
        "/v1/healthz", response_model=HealthOut,
        responses={503: {"model": HealthOut, "description": "unhealthy"}},
    )  # fmt: skip
    async def healthz() -> Response:
        """200 when healthy, 503 otherwise (for load balancers), with the details."""
        health = service.health()
        body = HealthOut(ok=health.ok, detail=health.detail).model_dump(mode="json")
        return JSONResponse(body, status_code=200 if health.ok else HTTP_UNAVAILABLE)

    @router.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        """Prometheus exposition text."""
        text, content_type = service.metrics()
        return Response(text, media_type=content_type)

    return router
