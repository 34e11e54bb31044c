"""East-west routes (DESIGN §4, `/v1/peer`, the controllers' token): the leader's vPort sync.

The body is the cluster's codec (`cluster.codec.SyncWire`), validated whole
before anything reaches the service.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from vportd.api.models import ErrorOut
from vportd.api.service import Service
from vportd.cluster.codec import SyncAnswerWire, SyncWire
from vportd.core.messages import SyncComplete

HTTP_OK = 200
HTTP_CONFLICT = 409

_ERRORS: dict[int | str, dict[str, object]] = {
    s: {"model": ErrorOut} for s in (400, 401, 403, 404, 413, 415, 422, 503)
}


def peer_router(service: Service) -> APIRouter:
    router = APIRouter(prefix="/v1/peer", tags=["east-west"])

    @router.put(
        "/vports/{vm}", response_class=Response,
        responses={200: {"model": SyncAnswerWire, "description": "sync complete"},
                   409: {"model": SyncAnswerWire, "description": "sync refused"}, **_ERRORS},
    )  # fmt: skip
    async def vport_sync(vm: str, body: SyncWire) -> Response:
        """The leader's vPort sync (claims 1 and 6): answers once applied, flows confirmed."""
        answer = await service.vport_sync(body.to_core(vm))
        status = HTTP_OK if isinstance(answer, SyncComplete) else HTTP_CONFLICT
        wire = SyncAnswerWire.of(answer).model_dump(exclude_none=True)
        return JSONResponse(wire, status_code=status)

    return router
