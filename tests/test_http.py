"""`KeptAliveExchange` against real servers on loopback.

Two kinds of server: the daemon's own uvicorn (`vportd.api.server.serve`)
with an echo app, for what a peer really answers; and `RawServer`, an
asyncio server whose connection handler a test scripts byte by byte, for
what uvicorn never does (a half answer, garbage, `Connection: close`, an
answer that never comes) and for counting the connections a client opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from vportd.api.server import serve
from vportd.cluster import http
from vportd.cluster.http import MAX_IDLE_PER_PEER, ExchangeFailed, KeptAliveExchange
from vportd_lab.bed.ports import free_port

JSON = {"Content-Type": "application/json"}
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
SETTLE = 5.0  # bound on waiting for something that happens on its own (not a timing check)

# -- the uvicorn echo server ---------------------------------------------------------------


async def _read_body(receive: Receive) -> bytes:
    pieces: list[bytes] = []
    while True:
        message = await receive()
        pieces.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(pieces)


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    length = [] if status == 204 else [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + length})
    await send({"type": "http.response.body", "body": body})


async def _stream(send: Send, pieces: list[bytes]) -> None:
    # No Content-Length: uvicorn sends it chunked.
    start: Message = {"type": "http.response.start", "status": 200, "headers": []}
    await send(start)
    for piece in pieces:
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "http"
    body = await _read_body(receive)
    path = scope["path"]
    if path == "/empty":
        await _answer(send, 204, b"", [])
    elif path == "/text":
        await _answer(send, 200, b"plain", [(b"content-type", b"text/plain; charset=utf-8")])
    elif path == "/redirect":
        await _answer(send, 302, b"", [(b"location", b"/echo")])
    elif path == "/stream":
        await _stream(send, [b"one,", b"two,", b"three"])
    else:
        echo = {
            "method": scope["method"],
            "path": path,
            "query": scope["query_string"].decode(),
            "body": body.decode(),
            "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
            "client_port": scope["client"][1],
        }
        await _answer(
            send, 200, json.dumps(echo).encode(), [(b"content-type", b"application/json")]
        )


@pytest.fixture
async def uvicorn_url() -> AsyncIterator[str]:
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(echo_app, "127.0.0.1:0", grace=1, on_listening=lambda _h, p: bound.set_result(p))
    )
    yield f"http://127.0.0.1:{await bound}"
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.fixture
async def exchange() -> AsyncIterator[KeptAliveExchange]:
    ex = KeptAliveExchange(5.0)
    yield ex
    await ex.aclose()


# -- the scripted raw server ----------------------------------------------------------------


@dataclass
class RawServer:
    """Runs `handler` on each accepted connection; counts connections, requests and EOFs."""

    handler: Callable[[Conn], Awaitable[None]]
    url: str = ""
    accepted: int = 0
    eofs: int = 0  # connections the client closed
    requests: list[bytes] = field(default_factory=list)
    live: dict[asyncio.Task[Any], asyncio.StreamWriter] = field(default_factory=dict)

    async def on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self.live[task] = writer
        try:
            await self.handler(Conn(self, reader, writer, self.accepted))
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


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(SETTLE):
        while not condition():
            await asyncio.sleep(0.005)


async def failure(awaitable: Awaitable[Any]) -> str:
    with pytest.raises(ExchangeFailed) as failed:
        await awaitable
    return str(failed.value)


def head_of(request: bytes) -> list[str]:
    return request.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")


# -- against uvicorn ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["PUT", "POST", "GET", "DELETE"])
@pytest.mark.parametrize("body", [b"", b'{"vm": "02:00:00:00:00:01"}'])
async def test_round_trip(
    uvicorn_url: str, exchange: KeptAliveExchange, method: str, body: bytes
) -> None:
    headers = {**JSON, "Authorization": "Bearer t0ken"}
    reply = await exchange.request(method, f"{uvicorn_url}/v1/echo?a=1&b=%2F", body, headers)
    assert (reply.status, reply.content_type) == (200, "application/json")
    echo = json.loads(reply.body)
    assert (echo["method"], echo["path"], echo["query"]) == (method, "/v1/echo", "a=1&b=%2F")
    assert echo["body"] == body.decode()
    assert echo["headers"]["authorization"] == "Bearer t0ken"
    assert echo["headers"]["content-length"] == str(len(body))
    assert echo["headers"]["host"] == uvicorn_url.removeprefix("http://")


async def test_content_type_is_the_answers(uvicorn_url: str, exchange: KeptAliveExchange) -> None:
    reply = await exchange.request("GET", f"{uvicorn_url}/text", b"", {})
    assert reply == (200, b"plain", "text/plain; charset=utf-8")


async def test_no_content(uvicorn_url: str, exchange: KeptAliveExchange) -> None:
    assert await exchange.request("POST", f"{uvicorn_url}/empty", b"{}", JSON) == (
        204, b"", "application/json",
    )  # fmt: skip
    # The connection is still good for the next answer.
    assert (await exchange.request("GET", f"{uvicorn_url}/text", b"", {})).body == b"plain"


async def test_chunked_answer(uvicorn_url: str, exchange: KeptAliveExchange) -> None:
    reply = await exchange.request("GET", f"{uvicorn_url}/stream", b"", {})
    assert (reply.status, reply.body) == (200, b"one,two,three")


async def test_a_redirect_is_returned_not_followed(
    uvicorn_url: str, exchange: KeptAliveExchange
) -> None:
    reply = await exchange.request("PUT", f"{uvicorn_url}/redirect", b"{}", JSON)
    assert (reply.status, reply.body) == (302, b"")


async def test_sequential_requests_share_one_connection(
    uvicorn_url: str, exchange: KeptAliveExchange
) -> None:
    ports = set()
    for _ in range(5):
        reply = await exchange.request("GET", f"{uvicorn_url}/echo", b"", {})
        ports.add(json.loads(reply.body)["client_port"])
    assert len(ports) == 1


async def test_concurrent_requests_to_one_peer(
    uvicorn_url: str, exchange: KeptAliveExchange
) -> None:
    bodies = [json.dumps({"n": n}).encode() for n in range(20)]
    replies = await asyncio.gather(
        *(exchange.request("POST", f"{uvicorn_url}/echo", body, JSON) for body in bodies)
    )
    assert [json.loads(r.body)["body"] for r in replies] == [b.decode() for b in bodies]


# -- the request on the wire -------------------------------------------------------------------


async def test_request_head(exchange: KeptAliveExchange) -> None:
    async with raw_server(answering(OK)) as server:
        caller = {"X-Request-Id": "r1", "Content-Length": "999", "Host": "elsewhere"}
        await exchange.request("PUT", f"{server.url}/v1/a b?x=1&y=%2F", b"hello", caller)
        await exchange.request("GET", f"{server.url}", b"", {})
    put, get = server.requests
    host = server.url.removeprefix("http://")
    assert head_of(put) == [
        "PUT /v1/a%20b?x=1&y=%2F HTTP/1.1", f"Host: {host}", "Content-Length: 5",
        "X-Request-Id: r1",
    ]  # fmt: skip
    assert put.endswith(b"\r\n\r\nhello")
    assert head_of(get) == ["GET / HTTP/1.1", f"Host: {host}", "Content-Length: 0"]


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("GET", {"X-Evil": "a\r\nX-Injected: 1"}),
        ("GET", {"X-Evil\r\nX-Injected": "1"}),
        ("GET / HTTP/1.1\r\nX-Injected: 1\r\n\r\nGET", {}),
    ],
)
async def test_a_line_break_in_the_request_head_is_refused(
    exchange: KeptAliveExchange, method: str, headers: dict[str, str]
) -> None:
    async with raw_server(answering(OK)) as server:
        with pytest.raises(ValueError):
            await exchange.request(method, server.url, b"", headers)
    assert server.requests == []


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/x", "http:///x", "127.0.0.1:8080/x", "http://127.0.0.1:port/"]
)
async def test_not_an_http_url(exchange: KeptAliveExchange, url: str) -> None:
    assert "URL" in await failure(exchange.request("GET", url, b"", {}))


def test_default_ports() -> None:
    assert http._target("http://c1.example/v1").peer == ("http", "c1.example", 80)
    assert http._target("https://c1.example/v1").peer == ("https", "c1.example", 443)
    assert http._target("https://[::1]:8443").peer == ("https", "::1", 8443)
    assert http._target("https://[::1]:8443").host == "[::1]:8443"


# -- answers uvicorn does not give -----------------------------------------------------------


async def test_content_type_defaults_to_json(exchange: KeptAliveExchange) -> None:
    async with raw_server(answering(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")) as server:
        assert await exchange.request("GET", server.url, b"", {}) == (
            200,
            b"{}",
            "application/json",
        )


async def test_chunked_in_pieces_then_kept_alive(exchange: KeptAliveExchange) -> None:
    async def handler(conn: Conn) -> None:
        while await conn.request() is not None:
            await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for piece in (b"5\r\nhello\r\n", b"6\r\n world\r\n", b"0\r\n\r\n"):
                await conn.send(piece)

    async with raw_server(handler) as server:
        for _ in range(2):
            assert (await exchange.request("GET", server.url, b"", {})).body == b"hello world"
    assert server.accepted == 1


async def test_a_body_until_the_connection_closes(exchange: KeptAliveExchange) -> None:
    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it")

    async with raw_server(handler) as server:
        reply = await exchange.request("GET", server.url, b"", {})
    assert reply == (200, b"all of it", "text/plain")


async def test_head_answer_without_body_keeps_the_connection(exchange: KeptAliveExchange) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
    async with raw_server(answering(head, OK)) as server:
        assert await exchange.request("HEAD", server.url, b"", {}) == (200, b"", "application/json")
        assert (await exchange.request("GET", server.url, b"", {})).body == b"ok"
    assert server.accepted == 1


async def test_an_interim_answer_is_skipped(exchange: KeptAliveExchange) -> None:
    async with raw_server(answering(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)) as server:
        assert (await exchange.request("POST", server.url, b"{}", JSON)).status == 200


async def test_sequential_requests_open_one_connection(exchange: KeptAliveExchange) -> None:
    async with raw_server(answering(OK)) as server:
        for _ in range(5):
            assert (await exchange.request("GET", server.url, b"", {})).body == b"ok"
    assert (server.accepted, len(server.requests)) == (1, 5)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
    ],
    ids=["connection-close", "http-1.0", "http-1.0-keep-alive"],
)
async def test_an_answer_that_ends_the_connection(
    exchange: KeptAliveExchange, answer: bytes
) -> None:
    # The server keeps the connection open: only the client decides not to reuse it.
    async with raw_server(answering(answer)) as server:
        for _ in range(2):
            assert (await exchange.request("GET", server.url, b"", {})).body == b"ok"
        await until(lambda: server.eofs == 1)
    assert server.accepted == 2


async def test_a_second_answer_to_one_request_drops_the_connection(
    exchange: KeptAliveExchange,
) -> None:
    async with raw_server(answering(OK + OK)) as server:
        for _ in range(2):
            assert (await exchange.request("GET", server.url, b"", {})).body == b"ok"
    assert server.accepted == 2


async def test_idle_connections_per_peer_are_capped(exchange: KeptAliveExchange) -> None:
    many = MAX_IDLE_PER_PEER + 4
    all_in = asyncio.Event()

    async def handler(conn: Conn) -> None:
        # Every request waits for all of them: each needs its own connection.
        while await conn.request() is not None:
            if len(conn.server.requests) == many:
                all_in.set()
            await all_in.wait()
            await conn.send(OK)

    async with raw_server(handler) as server:
        await asyncio.gather(*(exchange.request("GET", server.url, b"", {}) for _ in range(many)))
        assert server.accepted == many
        await until(lambda: server.eofs == many - MAX_IDLE_PER_PEER)
        await asyncio.gather(
            *(exchange.request("GET", server.url, b"", {}) for _ in range(MAX_IDLE_PER_PEER))
        )
    assert server.accepted == many


# -- failures ------------------------------------------------------------------------------


async def test_an_idle_connection_the_server_closed_leaves_the_pool(
    exchange: KeptAliveExchange,
) -> None:
    async def handler(conn: Conn) -> None:  # as uvicorn does after 5 s of idleness
        await conn.request()
        await conn.send(OK)

    async with raw_server(handler) as server:
        for _ in range(3):
            assert (await exchange.request("GET", server.url, b"", {})).body == b"ok"
            # Let go of as soon as the peer's EOF comes, not found dead at the next request.
            await until(lambda: not any(exchange._idle.values()))
    assert (server.accepted, len(server.requests)) == (3, 3)


async def test_a_reused_connection_closed_before_answering_is_retried(
    exchange: KeptAliveExchange,
) -> None:
    async def handler(conn: Conn) -> None:
        # The first request on a connection is answered; the next one finds it closing.
        await conn.request()
        await conn.send(OK)
        await conn.request()

    async with raw_server(handler) as server:
        assert (await exchange.request("GET", server.url, b"", {})).body == b"ok"
        assert (await exchange.request("POST", server.url, b"again", {})).body == b"ok"
    assert server.accepted == 2
    assert [r.endswith(b"again") for r in server.requests] == [False, True, True]


async def test_a_fresh_connection_closed_before_answering_is_not_retried(
    exchange: KeptAliveExchange,
) -> None:
    async def handler(conn: Conn) -> None:
        await conn.request()

    async with raw_server(handler) as server:
        reason = await failure(exchange.request("GET", server.url, b"", {}))
    assert reason.startswith("ConnectionError: the peer closed the connection before answering")
    assert server.accepted == 1


async def test_a_server_that_closes_at_once(exchange: KeptAliveExchange) -> None:
    async def handler(conn: Conn) -> None:
        pass

    async with raw_server(handler) as server:
        for _ in range(20):  # the close lands before, during or after the client's write
            reason = await failure(exchange.request("GET", server.url, b"", {}))
            assert not reason.startswith("TimeoutError"), reason


@pytest.mark.parametrize("reused", [False, True])
async def test_closed_mid_answer(exchange: KeptAliveExchange, reused: bool) -> None:
    half = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"

    async def handler(conn: Conn) -> None:
        if reused:
            await conn.request()
            await conn.send(OK)
        await conn.request()
        await conn.send(half)

    async with raw_server(handler) as server:
        if reused:
            await exchange.request("GET", server.url, b"", {})
        reason = await failure(exchange.request("GET", server.url, b"", {}))
    assert reason.startswith("ConnectionError: the peer closed the connection before its answer")
    assert server.accepted == 1  # some answer came: not sent again


async def test_connection_refused(exchange: KeptAliveExchange) -> None:
    reason = await failure(exchange.request("GET", f"http://127.0.0.1:{free_port()}/", b"", {}))
    assert reason.startswith("ConnectionRefusedError")


async def test_no_answer_within_the_timeout() -> None:
    exchange = KeptAliveExchange(0.2)

    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.until_eof()

    try:
        async with raw_server(handler) as server:
            reason = await failure(exchange.request("GET", server.url, b"", {}))
            assert reason.startswith("TimeoutError")
            await until(lambda: server.eofs == 1)  # the connection was closed, not pooled
    finally:
        await exchange.aclose()


async def test_garbage_answer(exchange: KeptAliveExchange) -> None:
    async with raw_server(answering(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")) as server:
        reason = await failure(exchange.request("GET", server.url, b"", {}))
        assert reason.startswith("HttpParser")
        await until(lambda: server.eofs == 1)


async def test_cancelled_request_closes_its_connection(exchange: KeptAliveExchange) -> None:
    asked = asyncio.Event()

    async def handler(conn: Conn) -> None:
        if conn.number == 1:
            await conn.request()
            asked.set()
            await conn.until_eof()
        else:
            await answering(OK)(conn)

    async with raw_server(handler) as server:
        task = asyncio.create_task(exchange.request("GET", server.url, b"", {}))
        await asked.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: server.eofs == 1)
        assert (await exchange.request("GET", server.url, b"", {})).body == b"ok"
    assert server.accepted == 2


async def test_aclose_closes_idle_connections_and_a_later_request_reopens(
    exchange: KeptAliveExchange,
) -> None:
    async with raw_server(answering(OK)) as server:
        await exchange.request("GET", server.url, b"", {})
        await exchange.aclose()
        await until(lambda: server.eofs == 1)
        assert (await exchange.request("GET", server.url, b"", {})).body == b"ok"
    assert server.accepted == 2


# -- https ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def _server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(*certificate)
    return tls


async def test_https(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, exchange: KeptAliveExchange
) -> None:
    server_tls = _server_tls(certificate)
    default = ssl.create_default_context
    # The client's context as the daemon makes it, trusting the test's certificate.
    monkeypatch.setattr(ssl, "create_default_context", lambda: default(cafile=certificate[0]))
    async with raw_server(answering(OK), server_tls) as server:
        for _ in range(2):
            assert (await exchange.request("GET", server.url, b"", {})).body == b"ok"
    assert server.accepted == 1


async def test_https_checks_the_certificate(
    certificate: tuple[Path, Path], exchange: KeptAliveExchange
) -> None:
    async with raw_server(answering(OK), _server_tls(certificate)) as server:
        reason = await failure(exchange.request("GET", server.url, b"", {}))
    assert reason.startswith("SSLCertVerificationError")
