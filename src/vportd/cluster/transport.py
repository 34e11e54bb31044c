"""The controllers' east-west HTTP: one aiohttp session, kept-alive connections per peer.

`PeerHttp` sends one request and gives back its status, body and content
type (and its Location and Retry-After, for a relay), or raises `NoAnswer`
when no answer came (no connection, a timeout, a connection lost
mid-answer, bytes that are not HTTP). A daemon makes one and shares it
between its peer client and its forwarder.

A kept-alive connection can die under a request: the peer closes or resets
it while the request is on its way. aiohttp then sends an idempotent
request (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) once more (RFC 9112
§9.3.1), on another idle connection or a new one, and never re-sends any
other (a POST): the peer may have acted on it. It does the same when a new
connection dies before the answer's head is complete; an answer cut off in
its body is not re-sent. Redirects are returned, not followed (one would
carry the token elsewhere). aiohttp sets TCP_NODELAY on every connection.

With `tls` (the daemon's `[tls]`), https URLs are checked against that
context (the cluster's CA, the peer's name) and this controller's certificate
is shown; without it, against the system's CAs.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Mapping
from typing import NamedTuple

import aiohttp
from aiohttp.abc import AbstractResolver

# Idle connections are closed by us before uvicorn (timeout_keep_alive, 5 s)
# would close them, so that a request rarely meets a connection being closed.
IDLE_LIMIT = 4.0
# Connections open at once to one peer; more requests wait for one of them.
PER_PEER = 32
DEFAULT_TYPE = "application/json"


# The answer's headers a relay hands back with its status and body.
KEPT_HEADERS = ("Location", "Retry-After")


class Reply(NamedTuple):
    status: int
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()  # those of KEPT_HEADERS the answer has


class NoAnswer(Exception):
    """No answer: no connection, a timeout, a lost connection, a broken answer."""


@functools.lru_cache(maxsize=8)  # the same one or two timeouts on every request
def _limit(total: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=total)


class PeerHttp:
    """HTTP/1.1 to other controllers over one `aiohttp.ClientSession`.

    `timeout` bounds a whole request (connecting, sending, the full answer)
    unless the request names its own. `resolver` turns peer names into
    addresses (tests send names to loopback ports). `tls` checks https peers
    (module docstring). The session is made on
    the running loop at the first request; `aclose` closes it, and a later
    request opens a new one.
    """

    def __init__(
        self,
        *,
        timeout: float = 30.0,
        per_peer: int = PER_PEER,
        resolver: AbstractResolver | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._timeout = timeout
        self._per_peer = per_peer
        self._resolver = resolver
        self._tls: ssl.SSLContext | bool = True if tls is None else tls  # True: aiohttp's default
        self._session: aiohttp.ClientSession | None = None

    async def request(
        self,
        method: str,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        timeout: float | None = None,
    ) -> Reply:
        """The peer's answer, whatever its status; `NoAnswer` when none came."""
        limit = self._timeout if timeout is None else timeout
        session = self._opened()
        try:
            async with session.request(
                method, url, data=body or None, headers=headers, allow_redirects=False,
                timeout=_limit(limit),
            ) as response:  # fmt: skip
                content = await response.read()
                kind = response.headers.get(aiohttp.hdrs.CONTENT_TYPE, DEFAULT_TYPE)
                kept = tuple((h, v) for h in KEPT_HEADERS if (v := response.headers.get(h)))
                return Reply(response.status, content, kind, kept)
        except (aiohttp.ClientError, TimeoutError) as err:
            raise NoAnswer(_reason(err, limit)) from None

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _opened(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit_per_host=self._per_peer, keepalive_timeout=IDLE_LIMIT,
                resolver=self._resolver, ssl=self._tls,
            )  # fmt: skip
            # No cookie jar: a cookie one VMM's request brought back must not go with another's.
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self._session


def _reason(err: BaseException, limit: float) -> str:
    if isinstance(err, TimeoutError) and not str(err):
        return f"TimeoutError: no answer within {limit:g} s"
    return f"{type(err).__name__}: {err}"
