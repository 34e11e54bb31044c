"""The dashboard's vPort table as one page: the filters and the page a stream asks for
(`GET /v1/events?ovs=&segment=&state=&find=&page=&size=`), applied to the whole table on every
snapshot.

A big table (thousands of vPorts) is filtered and counted here, and only the page's rows
are rendered as `GET /v1/vports` renders them: the snapshot stays small and cheap to
build, and the page never holds more than `MAX_SIZE` rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Query

from vportd.api.errors import ApiError
from vportd.api.northbound import vports_out
from vportd.api.service import Service
from vportd.core.model import MigrationState, PortState, VPortRecord

PAGE_SIZE = 100  # rows a page shows unless the stream asks otherwise
MAX_SIZE = 500
MAX_TEXT = 64  # longest hypervisor name or search text a stream may give

RowState = Literal["up", "down", "migrating", "conflict"]


@dataclass(frozen=True)
class TableView:
    """Which rows a stream shows: those on hypervisor `ovs`, of `segment`, in `state`, whose
    MAC, IPs, port name, iface-id or vm-id contain `find`; page `page` (from 0) of `size`
    rows."""

    ovs: str | None = None
    segment: int | None = None
    state: RowState | None = None
    find: str | None = None
    page: int = 0
    size: int = PAGE_SIZE


def table_view(
    *,
    ovs: Annotated[
        str | None, Query(max_length=MAX_TEXT, description="only this hypervisor's")
    ] = None,
    segment: Annotated[
        int | None, Query(ge=0, le=4095, description="only this segment's (0: untagged)")
    ] = None,
    state: Annotated[RowState | None, Query(description="only the vPorts in this state")] = None,
    find: Annotated[str | None, Query(max_length=MAX_TEXT, description="text to look for")] = None,
    page: Annotated[int, Query(ge=0, le=1_000_000, description="the page, from 0")] = 0,
    size: Annotated[int, Query(ge=1, le=MAX_SIZE, description="rows a page")] = PAGE_SIZE,
) -> TableView:
    """The stream's query parameters (FastAPI checks them: a bad one is a 422)."""
    text = (find or "").strip().lower() or None
    return TableView(ovs or None, segment, state, text, page, size)


def table_page(service: Service, view: TableView) -> dict[str, object]:
    """The table's counts and hypervisors, and the page of matching rows, sorted by MAC."""
    try:
        records = service.vports()
    except ApiError as err:  # not ready yet
        empty = {**_counts(view, 0, 0, []), "segments": [], "rows": []}
        return {"error": err.code, "detail": err.detail, **empty}
    conflicted = {c.vm for c in service.conflicts()}
    matched = sorted((r for r in records if _matches(r, view, conflicted)), key=_by_mac)
    page = min(view.page, max(0, (len(matched) - 1) // view.size))
    shown = matched[page * view.size : (page + 1) * view.size]
    hypervisors = sorted({r.loc.ovs for r in records if r.loc.ovs})
    return {
        **_counts(view, len(records), len(matched), hypervisors),
        "segments": sorted({r.loc.segment for r in records}),
        "page": page,
        "rows": [v.model_dump(mode="json") for v in vports_out(service, shown)],
    }


def _counts(view: TableView, total: int, matched: int, hypervisors: list[str]) -> dict[str, object]:
    return {
        "total": total, "matched": matched, "page": view.page, "size": view.size,
        "hypervisors": hypervisors,
    }  # fmt: skip


def _by_mac(rec: VPortRecord) -> str:
    return rec.vm


def _matches(rec: VPortRecord, view: TableView, conflicted: set[str]) -> bool:
    if view.ovs is not None and rec.loc.ovs != view.ovs:
        return False
    if view.segment is not None and rec.loc.segment != view.segment:
        return False
    if view.state is not None and not _in_state(rec, view.state, conflicted):
        return False
    return view.find is None or view.find in _text(rec)


def _in_state(rec: VPortRecord, state: RowState, conflicted: set[str]) -> bool:
    if state == "conflict":
        return rec.vm in conflicted
    if state == "migrating":
        return rec.migration_state is MigrationState.MIGRATING
    return rec.port_state is PortState(state)


def _text(rec: VPortRecord) -> str:
    loc = rec.loc
    words: Sequence[str | None] = (rec.vm, *loc.ips, loc.port_name, loc.iface_id, loc.vm_id)
    return " ".join(w.lower() for w in words if w)
