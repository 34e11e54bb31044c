"""The read-only dashboard: the static page at `/ui` and its live feed, `GET /v1/events`.

The page (`ui/`: plain HTML, JavaScript and CSS, no build step) is open, as
it holds no secret; it asks for the northbound token and reads the feed
with it. The feed is server-sent events: a `snapshot` event (the cluster,
its switches, this controller's health, the vPorts and the leader's
migrations, as the JSON routes render them) whenever what it would say
changes, sampled at most `RATE` times a second, and a comment line as a
heartbeat while nothing changes. Each stream lives only as long as its
request: the server cancels it when the client goes, and at most
`MAX_STREAMS` run at once on a controller, as each builds a snapshot on
every tick (and builds it less often when it is big, see `SHARE`). The
feed is kept out of the OpenAPI schema (`/docs`).

A follower holds no migrations: it reads the leader's (`GET /v1/migrations`,
with the caller's token) at most once a second while a stream runs. Each
migration comes with its timeline; the packets' arrivals of a downtime report
only for the open migrations and the newest `PLOTS` finished ones (the others
keep each direction's gap and loss), so that a snapshot stays small.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from vportd.api.errors import ApiError
from vportd.api.forwarding import FORWARDED_BY
from vportd.api.models import HealthOut, MigrationOut
from vportd.api.northbound import cluster_out, switches_out, vports_out
from vportd.api.service import Service
from vportd.cluster.peers import Forwarder, PeerUnreachable
from vportd.core.errors import CoreError
from vportd.core.messages import MigrationView

UI_DIR = Path(__file__).parent / "ui"
RATE = 4  # snapshots a second at most, per stream
# The share of the event loop's time one stream may take: a big table's snapshot
# (thousands of vPorts) is built less often, not at the cost of the switches.
SHARE = 0.05
HEARTBEAT = 15.0  # seconds without a snapshot before a heartbeat comment
RELAY_EVERY = 1.0  # seconds between a follower's reads of the leader's migrations
MAX_STREAMS = 4
RECENT = 50  # finished migrations a snapshot shows, the newest
PLOTS = 10  # of those, the newest whose downtime arrivals it carries
OPEN_STATES = frozenset({"preparing", "ready", "activated"})
HTTP_OK = 200
HTTP_BUSY = 503


def mount_ui(app: FastAPI) -> None:
    """Serve the dashboard's files at `/ui/` (`/ui` redirects there)."""
    app.mount("/ui", StaticFiles(directory=UI_DIR, html=True), name="ui")


@dataclass
class Streams:
    """How many event streams run now; refuses one over `limit`."""

    limit: int = MAX_STREAMS
    running: int = 0

    def enter(self) -> None:
        if self.running >= self.limit:
            raise ApiError(
                HTTP_BUSY, "too-many-streams",
                f"this controller serves {self.limit} event streams already; retry later",
            )  # fmt: skip
        self.running += 1

    def leave(self) -> None:
        self.running -= 1


def events_router(service: Service, forwarder: Forwarder) -> APIRouter:
    router = APIRouter(prefix="/v1")
    streams = Streams()

    # Out of the OpenAPI schema: an answer that never ends is no request/response
    # operation to the schema's clients (schemathesis reads whole answers).
    @router.get("/events", include_in_schema=False)
    async def events(request: Request) -> StreamingResponse:
        """Server-sent events: a `snapshot` whenever the dashboard's view changes."""
        streams.enter()
        feed = Feed(service, forwarder, request.headers.get("authorization", ""))
        return EventStream(stream(feed), streams)

    return router


class EventStream(StreamingResponse):
    """A text/event-stream answer that gives its place in `streams` back however it ends."""

    def __init__(self, content: AsyncIterator[str], streams: Streams) -> None:
        super().__init__(
            content, media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )  # fmt: skip
        self.streams = streams

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.streams.leave()


async def stream(feed: Feed, heartbeat: float = HEARTBEAT) -> AsyncGenerator[str, None]:
    """Snapshots as they change, a heartbeat after `heartbeat` s without one; until
    cancelled."""
    loop = asyncio.get_running_loop()
    last, said = "", loop.time()
    while True:
        began = loop.time()
        body = json.dumps(await feed.snapshot(), separators=(",", ":"))
        spent = loop.time() - began
        if body != last:
            last, said = body, loop.time()
            yield f"event: snapshot\ndata: {body}\n\n"
        elif loop.time() - said >= heartbeat:
            said = loop.time()
            yield ": heartbeat\n\n"
        await asyncio.sleep(max(1 / RATE, spent / SHARE))


@dataclass
class Feed:
    """What one stream shows, read from the service's queries (and the leader's migrations)."""

    service: Service
    forwarder: Forwarder
    authorization: str
    _relayed: dict[str, object] = field(default_factory=dict)
    _relayed_at: float = float("-inf")

    async def snapshot(self) -> dict[str, object]:
        service = self.service
        health = service.health()
        return {
            "controller": service.me.id,
            "cluster": cluster_out(service).model_dump(mode="json"),
            "health": HealthOut(ok=health.ok, detail=health.detail).model_dump(mode="json"),
            "switches": [s.model_dump(mode="json") for s in switches_out(service)],
            "vports": self._vports(),
            "migrations": await self._migrations(),
        }

    def _vports(self) -> dict[str, object]:
        try:
            rows = vports_out(self.service)
        except ApiError as err:  # not ready yet
            return {"error": err.code, "detail": err.detail, "rows": []}
        return {"rows": [v.model_dump(mode="json") for v in rows]}

    async def _migrations(self) -> dict[str, object]:
        service = self.service
        leader = service.leader()
        if leader is not None and leader.id == service.me.id:
            try:
                return _split([MigrationOut.of(m) for m in _held(service)], leader.id)
            except CoreError:
                pass  # leadership just moved: read the new leader's below
        return await self._relay()

    async def _relay(self) -> dict[str, object]:
        loop = asyncio.get_running_loop()
        if loop.time() - self._relayed_at < RELAY_EVERY:
            return self._relayed
        self._relayed_at = loop.time()
        self._relayed = await self._read_leader()
        return self._relayed

    async def _read_leader(self) -> dict[str, object]:
        leader = self.service.leader()
        if leader is None:
            return _unavailable(None, "the cluster has no leader at the moment")
        headers = {"authorization": self.authorization, FORWARDED_BY: self.service.me.id}
        path = f"/v1/migrations?limit={RECENT * 2}"
        try:
            reply = await self.forwarder.forward(leader.api, "GET", path, b"", headers)
        except PeerUnreachable as err:
            return _unavailable(leader.id, f"the leader did not answer: {err.reason}")
        if reply.status != HTTP_OK:
            return _unavailable(leader.id, f"the leader answered {reply.status}")
        try:
            rows = [MigrationOut.model_validate(m) for m in json.loads(reply.body)]
        except ValueError:
            return _unavailable(leader.id, "the leader's answer was not a list of migrations")
        return _split(rows, leader.id)


def _held(service: Service) -> list[MigrationView]:
    return service.migrations(None, None)


def _split(rows: list[MigrationOut], leader: str) -> dict[str, object]:
    """Open migrations, and the newest `RECENT` finished ones (oldest first, as the leader
    lists them)."""
    dump = [m.model_dump(mode="json", exclude_none=True) for m in rows]
    done = [m for m in dump if m["state"] not in OPEN_STATES][-RECENT:]
    for m in done[:-PLOTS]:
        _without_arrivals(m)
    return {
        "from": leader,
        "open": [m for m in dump if m["state"] in OPEN_STATES],
        "recent": done,
    }


def _without_arrivals(migration: dict[str, Any]) -> None:
    downtime = migration.get("downtime")
    if downtime is not None:
        for direction in downtime["directions"]:
            direction["arrivals"] = []


def _unavailable(leader: str | None, why: str) -> dict[str, object]:
    return {"from": leader, "open": [], "recent": [], "error": why}
