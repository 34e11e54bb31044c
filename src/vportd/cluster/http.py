"""HTTP clients: the controllers' east-west exchange, and httpx transports with TCP_NODELAY.

East-west (peer messages, requests relayed to the leader) goes through an
`Exchange`: one request, its status, body and content type back, or
`ExchangeFailed` when no answer came. A migration's handshake is three such
requests in a row on the leader (BENCHMARKS.md, "Cluster"), and on this
project's 2-core machine their latency is the sender's CPU time. The daemon's
exchange is therefore `KeptAliveExchange`, a bare asyncio protocol with
httptools' parser over kept-alive connections: against one uvicorn on
loopback, a request costs its sender 100-160 µs of CPU and 210-320 µs of
wall time, an aiohttp one 215-300 µs and 350-490 µs (alternated runs; an
httpx one about 2 ms of CPU).
`AiohttpExchange` stays for the cluster bench's VMM client, and
`HttpxExchange` runs the same code over any httpx transport (the API tests
route it to in-process apps).

httpx writes a request's headers and its body in separate sends. With Nagle's
algorithm on, the body then waits for the peer to acknowledge the headers,
and the peer delays that acknowledgement (40 ms on Linux): every httpx client
vportd makes uses a transport with TCP_NODELAY. aiohttp sets it itself, and
`KeptAliveExchange` sends a request in one write, on a TCP_NODELAY socket.
"""

from __future__ import annotations

import asyncio
import functools
import re
import socket
import ssl
from collections.abc import Callable, Mapping
from typing import NamedTuple, Protocol, cast
from urllib.parse import quote, urlsplit

import aiohttp
import httptools
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


# -- KeptAliveExchange ----------------------------------------------------------------

MAX_IDLE_PER_PEER = 8
_FINAL = 200  # statuses below are interim (1xx): the answer follows them
_DEFAULT_PORTS = {"http": 80, "https": 443}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# What a request target may hold as is (RFC 3986 pchar, "/", "?" and "%" escapes).
_TARGET = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*")
_TARGET_SAFE = "!$&'()*+,;=:@/?%"
# Framing, target and connection are ours to set: a caller's copy would contradict them.
_OURS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
# What a request can fail with besides a timeout: no connection, reset, EOF, a bad answer.
_FAILURES = (OSError, httptools.HttpParserError, httptools.HttpParserUpgrade)

_PeerKey = tuple[str, str, int]


class _Target(NamedTuple):
    peer: _PeerKey  # scheme, host, port
    host: str  # the Host header
    path: str  # with its query


@functools.lru_cache(maxsize=256)  # a peer's URLs repeat, and parsing one costs µs
def _target(url: str) -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise ExchangeFailed(f"bad URL {url!r}: {err}") from None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ExchangeFailed(f"not an http:// or https:// URL with a host: {url!r}")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    if not _TARGET.fullmatch(path):
        # A relayed path comes decoded (a space, non-ASCII): percent-encoded, as aiohttp did.
        path = quote(path, safe=_TARGET_SAFE)
    peer = (parts.scheme, parts.hostname, port or _DEFAULT_PORTS[parts.scheme])
    return _Target(peer, parts.netloc.rpartition("@")[2], path)


def _request_bytes(method: str, target: _Target, body: bytes, headers: Mapping[str, str]) -> bytes:
    _check(method, headers)
    fields = "".join(
        [f"{name}: {value}\r\n" for name, value in headers.items() if name.lower() not in _OURS]
    )
    head = (
        f"{method} {target.path} HTTP/1.1\r\nHost: {target.host}\r\n"
        f"Content-Length: {len(body)}\r\n{fields}\r\n"
    )
    # Latin-1 gives back the very bytes uvicorn decoded a relayed header from.
    return head.encode("latin-1") + body


def _check(method: str, headers: Mapping[str, str]) -> None:
    text = "".join(headers) + "".join(headers.values())
    if "\r" in text or "\n" in text or "\0" in text:
        # It would end the header there, and start another (or a request) of the caller's making.
        raise ValueError(f"a line break in one of the headers {list(headers)}")
    if not _TOKEN.fullmatch(method):
        raise ValueError(f"{method!r} is not an HTTP method")


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection to a peer: one request at a time, its answer parsed by httptools."""

    def __init__(self, peer: _PeerKey, lost: Callable[[_Connection], None]) -> None:
        self.peer = peer
        self.received = False  # a byte of the current answer came back
        self.closed = False
        self._lost = lost
        self._transport: asyncio.Transport | None = None
        self._waiting: asyncio.Future[Reply] | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._head = False
        self._headers_done = False
        self._framed = False  # Content-Length or Transfer-Encoding, not "until EOF"
        self._kind = "application/json"
        self._body: list[bytes] = []
        self._keep_alive = False

    @property
    def reusable(self) -> bool:
        return self._keep_alive and not self.closed and not self._transport_closing()

    def _transport_closing(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    def send(self, data: bytes, *, head: bool) -> asyncio.Future[Reply]:
        waiting = self._waiting = asyncio.get_running_loop().create_future()
        # A parser per request: httptools cannot be told that a HEAD answer has no body.
        self._parser = httptools.HttpResponseParser(self)
        self._head, self.received, self._keep_alive = head, False, False
        self._start_message()
        if self.closed or self._transport is None:
            # Closed by the peer since it was made: a write now would be dropped unsaid.
            self._fail(ConnectionError("the peer closed the connection before answering"))
        else:
            self._transport.write(data)
        return waiting

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        # Not close(): a peer that stopped reading would keep the socket until it drained.
        if self._transport is not None:
            self._transport.abort()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports are not asyncio's classes.
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        # asyncio and uvloop set it on the TCP sockets they make; set here so that no
        # loop's default can bring Nagle's wait for an ACK back into the exchange.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self._waiting is None:
            # Bytes nobody asked for: what comes next on this connection cannot be trusted.
            self.abort()
            return
        self.received = True
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as err:
            self._fail(err)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._lost(self)
        if self._waiting is None:
            return
        if self._headers_done and not self._framed and exc is None:
            self._complete()  # a body delimited by the end of the connection
            return
        what = "its answer was complete" if self.received else "answering"
        self._fail(exc or ConnectionError(f"the peer closed the connection before {what}"))

    # httptools' callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-type":
            self._kind = value.decode("latin-1")
        elif name in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        self._headers_done = True
        if self._head and self._parser.get_status_code() >= _FINAL:
            self._complete()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() < _FINAL:
            self._start_message()
        elif not self._head:
            self._complete()

    # the answer

    def _start_message(self) -> None:
        self._headers_done, self._framed = False, False
        self._kind, self._body = "application/json", []

    def _complete(self) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is None or waiting.done():
            self.abort()  # an answer to no request: this connection is out of step
            return
        parser = self._parser
        self._keep_alive = parser.should_keep_alive() and parser.get_http_version() == "1.1"
        waiting.set_result(Reply(parser.get_status_code(), b"".join(self._body), self._kind))

    def _fail(self, err: BaseException) -> None:
        waiting, self._waiting = self._waiting, None
        self.abort()
        if waiting is not None and not waiting.done():
            waiting.set_exception(err)


class KeptAliveExchange:
    """HTTP/1.1 over kept-alive connections per peer, one request at a time on each.

    No redirects (one would carry the token elsewhere). A request that finds
    its reused connection closed by the peer before any answer (a server drops
    idle connections: uvicorn after 5 s) is sent once more on a new one. At
    most `MAX_IDLE_PER_PEER` idle connections are kept per peer. A line break
    in a header or in the method raises ValueError: a caller's bug, not a
    peer's failure (aiohttp raised it too).
    """

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._idle: dict[_PeerKey, list[_Connection]] = {}
        self._tls: ssl.SSLContext | None = None

    async def request(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str]
    ) -> Reply:
        target = _target(url)
        data = _request_bytes(method, target, body, headers)
        head = method.upper() == "HEAD"
        try:
            async with asyncio.timeout(self._timeout):
                return await self._exchange(target.peer, data, head)
        except TimeoutError as err:  # before _FAILURES: a TimeoutError is an OSError
            reason = str(err) or f"no answer from {url} within {self._timeout} s"
            raise ExchangeFailed(f"TimeoutError: {reason}") from None
        except _FAILURES as err:
            raise ExchangeFailed(f"{type(err).__name__}: {err}") from None

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()
        # Lets the transports' connection_lost run before the caller closes the loop.
        await asyncio.sleep(0)

    async def _exchange(self, peer: _PeerKey, data: bytes, head: bool) -> Reply:
        conn = self._pooled(peer)
        if conn is not None:
            try:
                return await self._send_on(conn, data, head)
            except OSError:
                if conn.received:
                    raise
        return await self._send_on(await self._connect(peer), data, head)

    async def _send_on(self, conn: _Connection, data: bytes, head: bool) -> Reply:
        try:
            reply = await conn.send(data, head=head)
        except BaseException:  # a failure, a timeout, a cancellation: the answer is unknown
            conn.abort()
            raise
        if conn.reusable:
            self._release(conn)
        else:
            conn.close()
        return reply

    def _pooled(self, peer: _PeerKey) -> _Connection | None:
        idle = self._idle.get(peer)
        while idle:
            conn = idle.pop()  # the most recent: the least likely to have timed out
            if conn.reusable:
                return conn
            conn.close()
        return None

    def _release(self, conn: _Connection) -> None:
        idle = self._idle.setdefault(conn.peer, [])
        if len(idle) < MAX_IDLE_PER_PEER:
            idle.append(conn)
        else:
            conn.close()

    def _forget(self, conn: _Connection) -> None:
        idle = self._idle.get(conn.peer)
        if idle is not None and conn in idle:
            idle.remove(conn)

    async def _connect(self, peer: _PeerKey) -> _Connection:
        scheme, host, port = peer
        tls = self._tls_context() if scheme == "https" else None
        _, conn = await asyncio.get_running_loop().create_connection(
            lambda: _Connection(peer, self._forget),
            host,
            port,
            ssl=tls,
            server_hostname=host if tls is not None else None,
        )
        return conn

    def _tls_context(self) -> ssl.SSLContext:
        # Made once: loading the CA certificates costs milliseconds.
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls
