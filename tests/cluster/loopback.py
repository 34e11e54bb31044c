"""Servers on loopback for the east-west client's tests.

Two kinds: the daemon's own uvicorn (`vportd.api.server.serve`) serving a
small ASGI app, for what a peer really answers; and `RawServer`, an asyncio
server whose connection handler a test scripts byte by byte, for what
uvicorn never does (a half answer, garbage, a connection closed under a
request, an answer that never comes) and for counting the connections a
client opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp

from vportd.api.server import serve

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
SETTLE = 10.0  # bound on waiting for something that happens on its own (not a timing check)


@contextlib.asynccontextmanager
async def uvicorn_serving(app: ASGIApp) -> AsyncIterator[str]:
    """`app` served by uvicorn on a loopback port; yields its base URL."""
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(app, "127.0.0.1:0", grace=1, on_listening=lambda _h, p: bound.set_result(p))
    )
    try:
        yield f"http://127.0.0.1:{await bound}"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def closed_port() -> int:
    """A loopback port nothing listens on (the kernel just gave it out and took it back)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- the scripted raw server ----------------------------------------------------------------


@dataclass
class RawServer:
    """Runs `handler` on each accepted connection; counts connections, requests and EOFs."""

    handler: Callable[[Conn], Awaitable[None]]
    url: str = ""
    accepted: int = 0
    eofs: int = 0  # connections the client closed
    requests: list[bytes] = field(default_factory=list)
    client_ports: list[int] = field(default_factory=list)
    live: dict[asyncio.Task[Any], asyncio.StreamWriter] = field(default_factory=dict)

    async def on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.accepted += 1
        self.client_ports.append(writer.get_extra_info("peername")[1])
        task = asyncio.current_task()
        assert task is not None
        self.live[task] = writer
        try:
            await self.handler(Conn(self, reader, writer, self.accepted))
        except ConnectionError:
            pass  # the client went away: nothing to do for this connection
        finally:
            writer.close()
            del self.live[task]


@dataclass
class Conn:
    server: RawServer
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    number: int  # 1 on the first connection the server accepted

    async def request(self) -> bytes | None:
        """The next request, head and body; None when the client closed the connection."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.server.eofs += 1
            return None
        found = re.search(rb"(?im)^content-length: *(\d+)", head)
        request = head + await self.reader.readexactly(int(found.group(1)) if found else 0)
        self.server.requests.append(request)
        return request

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def until_eof(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self.reader.read()
        self.server.eofs += 1

    def reset(self) -> None:
        """Close with a TCP RST instead of a FIN (SO_LINGER 0), as a crashed peer's kernel does."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


Handler = Callable[[Conn], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(
    handler: Handler, tls: ssl.SSLContext | None = None
) -> AsyncIterator[RawServer]:
    raw = RawServer(handler)
    server = await asyncio.start_server(raw.on_connection, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    raw.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        yield raw
    finally:
        server.close()
        # Not task.cancel(): asyncio would log each cancelled handler as an error.
        for writer in raw.live.values():
            writer.transport.abort()
        await asyncio.gather(*raw.live, return_exceptions=True)
        await server.wait_closed()


def answering(*answers: bytes) -> Handler:
    """Answers the requests on a connection with `answers` in turn (the last one repeats)."""

    async def handler(conn: Conn) -> None:
        turn = 0
        while await conn.request() is not None:
            await conn.send(answers[min(turn, len(answers) - 1)])
            turn += 1

    return handler


def dying_after(answers: int, *, reset: bool = False, answer: bytes = OK) -> Handler:
    """Connection 1 answers `answers` requests, then reads one more and closes (or resets).

    The connections after it answer every request.
    """

    async def handler(conn: Conn) -> None:
        if conn.number > 1:
            await answering(answer)(conn)
            return
        for _ in range(answers):
            await conn.request()
            await conn.send(answer)
        await conn.request()
        if reset:
            conn.reset()

    return handler


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(SETTLE):
        while not condition():
            await asyncio.sleep(0.005)
