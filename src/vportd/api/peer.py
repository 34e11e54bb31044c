"""East-west routes (DESIGN §4, `/v1/peer`, the controllers' token): peer messages in.

A body is validated whole before the first message reaches the service: a
batch with one bad event is refused whole, and nothing of it is applied.
"""

from __future__ import annotations

from fastapi import APIRouter, Response, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer

from vportd.api.models import (
    ErrorOut,
    PortEventBatch,
    PortEventBody,
    RecordIn,
    SyncAnswerOut,
    VPortSyncBody,
    normalise_mac,
)
from vportd.api.service import Service
from vportd.core.errors import InvalidRequest
from vportd.core.messages import PortEventSync, VPortSync
from vportd.core.wire import RestCall, answer_to_rest, from_rest

HTTP_NO_CONTENT = 204
PORT_EVENTS = "/v1/peer/port-events"

# Enforced by the BearerAuth middleware; declared for the OpenAPI schema.
PEER_TOKEN = HTTPBearer(
    scheme_name="peer-token", auto_error=False,
    description="The controllers' token (api.peer_token_file)",
)  # fmt: skip

_ERRORS: dict[int | str, dict[str, object]] = {
    s: {"model": ErrorOut} for s in (400, 401, 403, 413, 422)
}


def _record(rec: RecordIn) -> dict[str, object]:
    """The validated record in its wire form for `core.wire`: the models' own field dicts,
    not `model_dump`'s copies (each of a boot storm's entries comes through here)."""
    mig = None if rec.mig is None else rec.mig.__dict__
    return {"vm": rec.vm, "loc": rec.loc.__dict__, "mig": mig}


def _port_event(body: PortEventBody) -> PortEventSync:
    wire = {"kind": body.kind, "reason": body.reason, "record": _record(body.record),
            "origin": body.origin}  # fmt: skip
    msg = from_rest(RestCall("POST", PORT_EVENTS, wire))
    if not isinstance(msg, PortEventSync):
        raise InvalidRequest("not a port event")
    return msg


async def answer_vport_sync(service: Service, vm: str, body: VPortSyncBody) -> Response:
    """Apply a validated vPort sync; the answer to give (sync complete, refused, or none)."""
    path = f"/v1/peer/vports/{normalise_mac(vm)}"
    msg = from_rest(RestCall("PUT", path, body.model_dump()))
    if not isinstance(msg, VPortSync):
        raise InvalidRequest("not a vPort sync")
    answer = await service.vport_sync(msg)
    if answer is None:
        return Response(status_code=HTTP_NO_CONTENT)
    rest = answer_to_rest(answer)
    return JSONResponse(rest.body, status_code=rest.status)


async def answer_port_events(service: Service, body: PortEventBody | PortEventBatch) -> Response:
    """Apply validated port-event syncs, in order; 204."""
    events = body.events if isinstance(body, PortEventBatch) else [body]
    msgs = [_port_event(e) for e in events]
    if msgs:
        await service.port_events(msgs)
    return Response(status_code=HTTP_NO_CONTENT)


def peer_router(service: Service) -> APIRouter:
    router = APIRouter(prefix="/v1/peer", tags=["east-west"], dependencies=[Security(PEER_TOKEN)])

    @router.put(
        "/vports/{vm}", status_code=HTTP_NO_CONTENT, response_class=Response,
        responses={200: {"model": SyncAnswerOut, "description": "sync complete"},
                   204: {"description": "applied; the leader asked for no answer"},
                   409: {"model": SyncAnswerOut, "description": "sync refused"}, **_ERRORS},
    )  # fmt: skip
    async def vport_sync(vm: str, body: VPortSyncBody) -> Response:
        """The leader's vPort sync (claims 1 and 6): answers once applied."""
        # `fastpath.FastPaths` answers it before FastAPI routes it: declared for the schema.
        return await answer_vport_sync(service, vm, body)

    @router.post(
        "/port-events", status_code=HTTP_NO_CONTENT, response_class=Response, responses=_ERRORS
    )
    async def port_events(body: PortEventBody | PortEventBatch) -> Response:
        """Port add/modify/delete syncs (claims 2, 3, 5): one event, or `{"events": [...]}`."""
        # `fastpath.FastPaths` answers it before FastAPI routes it: declared for the schema.
        return await answer_port_events(service, body)

    return router
