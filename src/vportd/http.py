"""HTTP clients: the controllers' east-west exchange, and httpx transports with TCP_NODELAY.

East-west (peer messages, requests relayed to the leader) goes through an
`Exchange`: one request, its status, body and content type back, or
`ExchangeFailed` when no answer came. The daemon's is `AiohttpExchange`:
measured on this project's 2-core machine, an httpx request costs its sender
about 2 ms of CPU and six context switches, an aiohttp one 0.4 ms and two, and
a migration's handshake is three such requests in a row on the leader
(BENCHMARKS.md, "Cluster"). `HttpxExchange` runs the same code over any httpx
transport (the API tests route it to in-process apps).

httpx writes a request's headers and its body in separate sends. With Nagle's
algorithm on, the body then waits for the peer to acknowledge the headers,
and the peer delays that acknowledgement (40 ms on Linux): every httpx client
vportd makes uses a transport with TCP_NODELAY. aiohttp sets it itself.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import NamedTuple, Protocol

import aiohttp
import httpx

NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def async_transport() -> httpx.AsyncHTTPTransport:
    return httpx.AsyncHTTPTransport(socket_options=NODELAY)


def sync_transport() -> httpx.HTTPTransport:
    return httpx.HTTPTransport(socket_options=NODELAY)


class Reply(NamedTuple):
    status: int
    body: bytes
    content_type: str


class ExchangeFailed(Exception):
    """No answer: no connection, a timeout, a broken response."""


class Exchange(Protocol):
    async def request(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str]
    ) -> Reply: ...

    async def aclose(self) -> None: ...


class AiohttpExchange:
    """Kept-alive connections per peer; no redirects (one would carry the token elsewhere)."""

    def __init__(self, timeout: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _opened(self) -> aiohttp.ClientSession:
        # Made on first use: a ClientSession belongs to the loop it is made in.
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, auto_decompress=True)
        return self._session

    async def request(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str]
    ) -> Reply:
        session = self._opened()
        try:
            async with session.request(
                method, url, data=body, headers=dict(headers), allow_redirects=False
            ) as response:
                content = await response.read()
                kind = response.headers.get("content-type", "application/json")
                return Reply(response.status, content, kind)
        except (aiohttp.ClientError, TimeoutError) as err:
            raise ExchangeFailed(f"{type(err).__name__}: {err}") from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class HttpxExchange:
    """The same exchange over an httpx transport (default: TCP with TCP_NODELAY)."""

    def __init__(self, timeout: float, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._http = httpx.AsyncClient(
            timeout=timeout, transport=transport or async_transport(), follow_redirects=False
        )

    async def request(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str]
    ) -> Reply:
        try:
            response = await self._http.request(method, url, content=body, headers=dict(headers))
        except httpx.HTTPError as err:
            raise ExchangeFailed(f"{type(err).__name__}: {err}") from None
        kind = response.headers.get("content-type", "application/json")
        return Reply(response.status_code, response.content, kind)

    async def aclose(self) -> None:
        await self._http.aclose()
