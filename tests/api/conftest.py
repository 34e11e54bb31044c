"""A three-controller rig: the real core (SimCluster), one app per controller, in-process HTTP.

Base URLs `http://c0.test` ... are routed by `Router` to each controller's
app through `httpx.ASGITransport`, so that forwarding and the peer client
go over real HTTP requests without sockets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from tests.api.fake import SimService, new_cluster, url_of
from vportd.api.app import create_app
from vportd.cluster.http import HttpxExchange
from vportd.cluster.peers import Forwarder
from vportd_lab.sim.cluster import SimCluster

TOKEN = "vmm-secret"
PEER_TOKEN = "peer-secret"
MAX_BODY = 64 * 1024
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PEER_AUTH = {"Authorization": f"Bearer {PEER_TOKEN}"}


class Router(httpx.AsyncBaseTransport):
    """Sends each request to the app its host names; unknown hosts do not answer."""

    def __init__(self) -> None:
        self.apps: dict[str, httpx.AsyncBaseTransport] = {}
        self.down: set[str] = set()

    def add(self, host: str, app: FastAPI) -> None:
        self.apps[host] = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host in self.down or host not in self.apps:
            raise httpx.ConnectError(f"connection refused by {host}", request=request)
        return await self.apps[host].handle_async_request(request)


@dataclass
class Rig:
    sim: SimCluster
    services: dict[str, SimService]
    apps: dict[str, FastAPI]
    router: Router
    forwarder: Forwarder

    def client(self, cid: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.router, base_url=url_of(cid))


def build_rig(*, token: str | None = TOKEN, peer_token: str | None = PEER_TOKEN) -> Rig:
    sim = new_cluster()
    router = Router()
    forwarder = Forwarder(exchange=HttpxExchange(5.0, router))
    services = {cid: SimService(sim, cid) for cid in sim.controllers}
    apps = {
        cid: create_app(
            svc, token=token, peer_token=peer_token, max_body=MAX_BODY, forwarder=forwarder
        )
        for cid, svc in services.items()
    }
    for cid, app in apps.items():
        router.add(f"{cid}.test", app)
    return Rig(sim, services, apps, router, forwarder)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    r = build_rig()
    yield r
    await r.forwarder.aclose()


@pytest.fixture
async def leader(rig: Rig) -> AsyncIterator[httpx.AsyncClient]:
    async with rig.client("c0") as client:
        yield client


@pytest.fixture
async def follower(rig: Rig) -> AsyncIterator[httpx.AsyncClient]:
    async with rig.client("c1") as client:
        yield client
