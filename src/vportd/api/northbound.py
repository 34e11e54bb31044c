"""Northbound routes (DESIGN §4): the VMM's migrations and the operators' views.

Reads of the table, the cluster and the switches are answered by any
controller; migration requests and reads go to the leader (`forwarding`).
A VM is named by its MAC in any common form, normalised here before the
service sees it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from vportd.api.forwarding import LeaderOnly
from vportd.api.models import (
    ClusterOut,
    ConflictOut,
    DowntimeBody,
    ErrorOut,
    MemberOut,
    MigrationOut,
    MigrationState,
    NotifyBody,
    SwitchOut,
    VPortOut,
    normalise_mac,
)
from vportd.api.service import Service
from vportd.cluster.peers import Forwarder
from vportd.core.messages import MigrationView, NotifyRequest
from vportd.core.model import VPortRecord

HTTP_CREATED = 201
# GET /v1/migrations?state=...&limit=...
MAX_LIMIT = 10_000
STATE_HELP = "only the migrations in this state"
LIMIT_HELP = "only the newest this many (of those in `state`)"
SEGMENT_HELP = "only the vPorts of this segment (a VLAN tag; 0: untagged)"


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    always = (401, 403, 413)
    return {s: {"model": ErrorOut} for s in sorted({*always, *statuses})}


def _dpid(dpid: int) -> str:
    return f"{dpid:016x}"


def _vport(
    rec: VPortRecord, dpids: dict[str, str], conflicts: dict[str, list[ConflictOut]]
) -> VPortOut:
    return VPortOut.of(rec, dpids.get(rec.loc.ovs or ""), conflicts.get(rec.vm))


def _migration(view: MigrationView) -> dict[str, object]:
    return MigrationOut.of(view).model_dump(mode="json", exclude_none=True)


def migration_response(view: MigrationView, status: int = 200) -> JSONResponse:
    headers = {"Location": f"/v1/migrations/{view.id}"} if status == HTTP_CREATED else None
    return JSONResponse(_migration(view), status_code=status, headers=headers)


def northbound_router(service: Service, forwarder: Forwarder) -> APIRouter:
    router = APIRouter(prefix="/v1")
    _migration_routes(router, service, LeaderOnly(service, forwarder))
    _view_routes(router, service)
    return router


def _migration_routes(router: APIRouter, service: Service, leader: LeaderOnly) -> None:
    @router.post(
        "/migrations", tags=["migrations"], status_code=HTTP_CREATED, response_model=MigrationOut,
        responses={200: {"model": MigrationOut, "description": "The same migration again"},
                   **_errors(400, 404, 409, 422, 429, 503)},
    )  # fmt: skip
    async def notify(body: NotifyBody, request: Request) -> Response:
        """Migration notify (claim 6): answers once both controllers synced (notify complete).

        429 with Retry-After (seconds): the VM moved too often lately (flap damping).
        """
        notify = NotifyRequest(normalise_mac(body.vm), body.source, body.destination)

        async def local() -> Response:
            view, new = await service.notify(notify)
            return migration_response(view, HTTP_CREATED if new else 200)

        return await leader.run(request, local)

    @router.get(
        "/migrations", tags=["migrations"], response_model=list[MigrationOut],
        responses=_errors(422, 503),
    )  # fmt: skip
    async def migrations(
        request: Request,
        state: Annotated[MigrationState | None, Query(description=STATE_HELP)] = None,
        limit: Annotated[int | None, Query(ge=1, le=MAX_LIMIT, description=LIMIT_HELP)] = None,
    ) -> Response:
        """The migrations the leader keeps (`[migration] history_size`, `history_age`),
        oldest first (by when their notify started them)."""

        async def local() -> Response:
            return JSONResponse([_migration(m) for m in service.migrations(state, limit)])

        return await leader.run(request, local)

    @router.get(
        "/migrations/{migration_id}", tags=["migrations"], response_model=MigrationOut,
        responses=_errors(404, 503),
    )  # fmt: skip
    async def migration(migration_id: str, request: Request) -> Response:
        async def local() -> Response:
            return migration_response(service.migration(migration_id))

        return await leader.run(request, local)

    @router.put(
        "/migrations/{migration_id}/downtime", tags=["migrations"], response_model=MigrationOut,
        responses=_errors(400, 404, 415, 422, 503),
    )  # fmt: skip
    async def downtime(migration_id: str, body: DowntimeBody, request: Request) -> Response:
        """What a VMM or the lab measured of the migration's traffic, per direction: its
        longest gap, its losses and its packets' arrivals; a new report replaces the last."""
        report = body.to_core()

        async def local() -> Response:
            return migration_response(service.report_downtime(migration_id, report))

        return await leader.run(request, local)

    @router.delete(
        "/migrations/{migration_id}", tags=["migrations"], response_model=MigrationOut,
        responses=_errors(404, 409, 503),
    )  # fmt: skip
    async def abort(migration_id: str, request: Request) -> Response:
        """Abort: the cluster rolls the VM back to its source."""

        async def local() -> Response:
            return migration_response(await service.abort(migration_id))

        return await leader.run(request, local)


def _dpids(service: Service) -> dict[str, str]:
    return {s.name: _dpid(s.dpid) for s in service.switches()}


def _conflicts(service: Service) -> dict[str, list[ConflictOut]]:
    by_vm: dict[str, list[ConflictOut]] = {}
    for view in service.conflicts():
        by_vm.setdefault(view.vm, []).append(VPortOut.conflict(view))
    return by_vm


def vports_out(
    service: Service, records: Sequence[VPortRecord] | None = None, segment: int | None = None
) -> list[VPortOut]:
    """Every vPort (or those of `records`) as `GET /v1/vports` shows it (NotReady until the
    table is loaded); only those of `segment`, if given."""
    records = service.vports() if records is None else records
    if segment is not None:
        records = [r for r in records if r.loc.segment == segment]
    known, dup = _dpids(service), _conflicts(service)
    return [_vport(rec, known, dup) for rec in records]


def cluster_out(service: Service) -> ClusterOut:
    """The cluster as `GET /v1/cluster` shows it."""
    view = service.cluster()
    members = [
        MemberOut(
            id=m.id, api=m.api, healthy=m.healthy, switches=list(m.switches),
            switch_names=list(m.switch_names),
        )
        for m in view.members
    ]  # fmt: skip
    stale = view.stale_since
    since = None if stale is None else datetime.fromtimestamp(stale, UTC)
    return ClusterOut(leader=view.leader, members=members, session=view.session, stale_since=since)


def switches_out(service: Service) -> list[SwitchOut]:
    """The switches as `GET /v1/switches` shows them."""
    return [
        SwitchOut(
            name=s.name, dpid=_dpid(s.dpid), master=s.master,
            connected=s.connected, role=s.role, generation=s.generation,
        )
        for s in service.switches()
    ]  # fmt: skip


def _view_routes(router: APIRouter, service: Service) -> None:
    @router.get("/vports", tags=["vports"], responses=_errors())
    async def vports(
        segment: Annotated[int | None, Query(ge=0, le=4095, description=SEGMENT_HELP)] = None,
    ) -> list[VPortOut]:
        return vports_out(service, segment=segment)

    @router.get("/vports/{vm}", tags=["vports"], responses=_errors(400, 404))
    async def vport(vm: str) -> VPortOut:
        rec = service.vport(normalise_mac(vm))
        return _vport(rec, _dpids(service), _conflicts(service))

    @router.get("/cluster", tags=["cluster"], responses=_errors())
    async def cluster() -> ClusterOut:
        return cluster_out(service)

    @router.get("/switches", tags=["cluster"], responses=_errors())
    async def switches() -> list[SwitchOut]:
        return switches_out(service)
