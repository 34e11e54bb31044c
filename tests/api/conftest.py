"""A three-controller rig: the real core (SimCluster), one app per controller.

Controllers are named by base URLs `http://c0.test` ... The tests' own
clients reach the apps in-process: `Router` sends each request to the app
its host names through `httpx.ASGITransport`. The controllers' east-west
client (forwarding, the peer client) goes over real sockets: `Loopback`
resolves `cN.test` to a uvicorn serving cN's app on 127.0.0.1, started the
first time the name is looked up, so that only the tests that go east-west
start servers.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from fastapi import FastAPI

from tests.api.fake import SimService, new_cluster, url_of
from vportd.api.app import create_app
from vportd.api.server import serve
from vportd.cluster.peers import Forwarder
from vportd.cluster.transport import PeerHttp
from vportd_lab.sim.cluster import SimCluster

TOKEN = "vmm-secret"
PEER_TOKEN = "peer-secret"
MAX_BODY = 64 * 1024
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PEER_AUTH = {"Authorization": f"Bearer {PEER_TOKEN}"}


class Router(httpx.AsyncBaseTransport):
    """Sends each request to the app its host names; unknown hosts do not answer.

    Hosts in `down` do not answer either, here or east-west (`Loopback`): set
    them before the first request to them, as a kept-alive connection outlives it.
    """

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


class Loopback(AbstractResolver):
    """Resolves a controller's host to a uvicorn serving its app on 127.0.0.1, started on demand."""

    def __init__(self, down: set[str]) -> None:
        self.apps: dict[str, FastAPI] = {}
        self.down = down
        self._ports: dict[str, asyncio.Future[int]] = {}
        self._servers: list[asyncio.Task[None]] = []

    def add(self, host: str, app: FastAPI) -> None:
        self.apps[host] = app

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host in self.down or host not in self.apps:
            raise OSError(errno.ECONNREFUSED, f"connection refused by {host}")
        bound = await self._serving(host)
        found: ResolveResult = {
            "hostname": host, "host": "127.0.0.1", "port": bound,
            "family": socket.AF_INET, "proto": 0, "flags": 0,
        }  # fmt: skip
        return [found]

    async def _serving(self, host: str) -> int:
        if host not in self._ports:
            bound = self._ports[host] = asyncio.get_running_loop().create_future()
            server = serve(
                self.apps[host], "127.0.0.1:0", grace=1,
                on_listening=lambda _h, p: bound.set_result(p),
            )  # fmt: skip
            self._servers.append(asyncio.create_task(server))
        return await asyncio.shield(self._ports[host])

    async def close(self) -> None:
        pass  # a connector closing its resolver: the servers stay until `stop`

    async def stop(self) -> None:
        for server in self._servers:
            server.cancel()
        await asyncio.gather(*self._servers, return_exceptions=True)


@dataclass
class Rig:
    sim: SimCluster
    services: dict[str, SimService]
    apps: dict[str, FastAPI]
    router: Router
    names: Loopback
    forwarder: Forwarder

    def client(self, cid: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.router, base_url=url_of(cid))

    def http(self) -> PeerHttp:
        """An east-west client that reaches the rig's controllers over loopback."""
        return PeerHttp(timeout=5.0, resolver=self.names)

    async def aclose(self) -> None:
        await self.forwarder.aclose()
        await self.names.stop()


def build_rig(*, token: str | None = TOKEN, peer_token: str | None = PEER_TOKEN) -> Rig:
    sim = new_cluster()
    router = Router()
    names = Loopback(router.down)
    forwarder = Forwarder(timeout=5.0, http=PeerHttp(timeout=5.0, resolver=names))
    services = {cid: SimService(sim, cid) for cid in sim.controllers}
    apps = {
        cid: create_app(
            svc, token=token, peer_token=peer_token, max_body=MAX_BODY, forwarder=forwarder
        )
        for cid, svc in services.items()
    }
    for cid, app in apps.items():
        router.add(f"{cid}.test", app)
        names.add(f"{cid}.test", app)
    return Rig(sim, services, apps, router, names, forwarder)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    r = build_rig()
    yield r
    await r.aclose()


@pytest.fixture
async def leader(rig: Rig) -> AsyncIterator[httpx.AsyncClient]:
    async with rig.client("c0") as client:
        yield client


@pytest.fixture
async def follower(rig: Rig) -> AsyncIterator[httpx.AsyncClient]:
    async with rig.client("c1") as client:
        yield client
