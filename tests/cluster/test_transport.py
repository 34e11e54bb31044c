"""`PeerHttp` against real servers on loopback: uvicorn, and scripted raw servers."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from starlette.types import Message, Receive, Scope, Send

from tests.cluster.loopback import (
    OK,
    Conn,
    Handler,
    RawServer,
    answering,
    closed_port,
    dying_after,
    raw_server,
    until,
    uvicorn_serving,
)
from tests.pki import Certs
from vportd.cluster.transport import NoAnswer, PeerHttp

JSON = {"Content-Type": "application/json"}

# -- a uvicorn peer that echoes the request -------------------------------------------------


async def _body(receive: Receive) -> bytes:
    pieces: list[bytes] = []
    more = True
    while more:
        message = await receive()
        pieces.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(pieces)


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "http"
    echo = {
        "method": scope["method"],
        "path": scope["path"],
        "query": scope["query_string"].decode(),
        "body": (await _body(receive)).decode(),
        "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
        "client_port": scope["client"][1],
    }
    start: Message = {
        "type": "http.response.start", "status": 200,
        "headers": [(b"content-type", b"application/json")],
    }  # fmt: skip
    await send(start)
    await send({"type": "http.response.body", "body": json.dumps(echo).encode()})


@pytest.fixture
async def echo_url() -> AsyncIterator[str]:
    async with uvicorn_serving(echo_app) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[PeerHttp]:
    client = PeerHttp(timeout=5.0)
    yield client
    await client.aclose()


async def no_answer(http: PeerHttp, method: str, url: str, timeout: float | None = None) -> str:
    with pytest.raises(NoAnswer) as failed:
        await http.request(method, url, b"{}", JSON, timeout=timeout)
    return str(failed.value)


# -- against uvicorn ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["PUT", "POST", "GET", "DELETE"])
async def test_round_trip(echo_url: str, http: PeerHttp, method: str) -> None:
    body = b'{"vm": "02:00:00:00:00:01"}'
    headers = {**JSON, "Authorization": "Bearer t0ken"}
    reply = await http.request(method, f"{echo_url}/v1/echo?a=1&b=x%26y%2B", body, headers)
    assert (reply.status, reply.content_type) == (200, "application/json")
    echo = json.loads(reply.body)
    assert (echo["method"], echo["path"], echo["query"]) == (method, "/v1/echo", "a=1&b=x%26y%2B")
    assert echo["body"] == body.decode()
    assert echo["headers"]["authorization"] == "Bearer t0ken"
    assert echo["headers"]["content-length"] == str(len(body))


async def test_requests_in_a_row_share_one_kept_alive_connection(
    echo_url: str, http: PeerHttp
) -> None:
    ports = set()
    for n in range(5):
        reply = await http.request("PUT", f"{echo_url}/v1/peer/vports/{n}", b"{}", JSON)
        ports.add(json.loads(reply.body)["client_port"])
    assert len(ports) == 1


async def test_concurrent_requests_to_one_peer(echo_url: str, http: PeerHttp) -> None:
    bodies = [json.dumps({"n": n}).encode() for n in range(20)]
    replies = await asyncio.gather(
        *(http.request("POST", f"{echo_url}/echo", body, JSON) for body in bodies)
    )
    assert [json.loads(r.body)["body"] for r in replies] == [b.decode() for b in bodies]


# -- connections ------------------------------------------------------------------------------


def _tcp_nodelay(local_port: int) -> int:
    """TCP_NODELAY of this process's loopback socket bound to `local_port`, read off the socket."""
    for name in os.listdir("/proc/self/fd"):
        try:
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue  # not a socket
        with sock:
            if sock.family == socket.AF_INET and sock.getsockname() == ("127.0.0.1", local_port):
                return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    raise AssertionError(f"no socket on 127.0.0.1:{local_port}")


async def test_connections_have_tcp_nodelay(http: PeerHttp) -> None:
    async with raw_server(answering(OK)) as server:
        await http.request("PUT", server.url, b"{}", JSON)
        # The kept-alive connection is still open: its socket is in this process.
        assert _tcp_nodelay(server.client_ports[0]) == 1


async def test_requests_in_a_row_open_one_connection(http: PeerHttp) -> None:
    async with raw_server(answering(OK)) as server:
        for method in ("PUT", "POST", "GET", "PUT", "POST"):
            assert (await http.request(method, server.url, b"{}", JSON)).body == b"ok"
    assert (server.accepted, len(server.requests)) == (1, 5)


async def test_connections_to_one_peer_are_capped() -> None:
    http = PeerHttp(per_peer=2)
    try:
        async with raw_server(answering(OK)) as server:
            replies = await asyncio.gather(
                *(http.request("GET", server.url, b"", {}) for _ in range(6))
            )
    finally:
        await http.aclose()
    assert [r.body for r in replies] == [b"ok"] * 6
    assert server.accepted <= 2


async def test_an_answer_with_connection_close_is_not_reused(http: PeerHttp) -> None:
    close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    async with raw_server(answering(close)) as server:
        for _ in range(2):
            assert (await http.request("GET", server.url, b"", {})).body == b"ok"
    assert server.accepted == 2


async def test_aclose_closes_the_connections_and_a_later_request_reopens(
    http: PeerHttp,
) -> None:
    async with raw_server(answering(OK)) as server:
        await http.request("GET", server.url, b"", {})
        await http.aclose()
        await until(lambda: server.eofs == 1)
        assert (await http.request("GET", server.url, b"", {})).body == b"ok"
    assert server.accepted == 2


# -- a kept-alive connection that dies under a request ----------------------------------------


def sent_last(server: RawServer) -> list[bool]:
    return [r.endswith(b"again") for r in server.requests]


@pytest.mark.parametrize("method", ["PUT", "GET", "DELETE"])
@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
async def test_an_idempotent_request_is_sent_again_on_a_new_connection(
    http: PeerHttp, method: str, reset: bool
) -> None:
    async with raw_server(dying_after(1, reset=reset)) as server:
        assert (await http.request("PUT", server.url, b"{}", JSON)).body == b"ok"
        assert (await http.request(method, server.url, b"again", JSON)).body == b"ok"
    assert server.accepted == 2
    assert sent_last(server) == [False, True, True]


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
async def test_a_post_is_never_sent_again(http: PeerHttp, reset: bool) -> None:
    async with raw_server(dying_after(1, reset=reset)) as server:
        assert (await http.request("POST", server.url, b"{}", JSON)).body == b"ok"
        with pytest.raises(NoAnswer) as failed:
            await http.request("POST", server.url, b"again", JSON)
        # The next request finds a new connection.
        assert (await http.request("POST", server.url, b"{}", JSON)).body == b"ok"
    reason = "ClientOSError" if reset else "ServerDisconnectedError"
    assert str(failed.value).startswith(reason)
    assert sent_last(server) == [False, True, False]
    assert server.accepted == 2


async def test_an_idempotent_request_is_sent_again_only_once(http: PeerHttp) -> None:
    async def handler(conn: Conn) -> None:
        # The first request of all is answered; every other one meets a closing connection.
        if conn.number == 1:
            await conn.request()
            await conn.send(OK)
        await conn.request()

    async with raw_server(handler) as server:
        await http.request("PUT", server.url, b"{}", JSON)
        reason = await no_answer(http, "PUT", server.url)
    assert reason.startswith("ServerDisconnectedError")
    assert (server.accepted, len(server.requests)) == (2, 3)


async def test_closed_mid_answer_is_not_sent_again(http: PeerHttp) -> None:
    half = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"

    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(half)

    async with raw_server(handler) as server:
        reason = await no_answer(http, "PUT", server.url)
    assert reason.startswith("ClientPayloadError")
    assert server.accepted == 1


# -- no answer ------------------------------------------------------------------------------


async def test_connection_refused(http: PeerHttp) -> None:
    reason = await no_answer(http, "PUT", f"http://127.0.0.1:{closed_port()}/")
    assert reason.startswith("ClientConnectorError")


async def silent(conn: Conn) -> None:
    await conn.request()
    await conn.until_eof()


async def head_then_silent(conn: Conn) -> None:
    await conn.request()
    await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")
    await conn.until_eof()


@pytest.mark.parametrize("handler", [silent, head_then_silent], ids=["nothing", "half"])
async def test_no_answer_within_the_timeout(handler: Handler) -> None:
    # A default far above the request's own: the error names the limit that applied.
    http = PeerHttp(timeout=600.0)
    try:
        async with raw_server(handler) as server:
            reason = await no_answer(http, "PUT", server.url, timeout=0.2)
            assert reason == "TimeoutError: no answer within 0.2 s"
            await until(lambda: server.eofs == 1)  # the connection was closed, not kept
    finally:
        await http.aclose()
    assert server.accepted == 1


async def test_garbage_answer(http: PeerHttp) -> None:
    async with raw_server(answering(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")) as server:
        reason = await no_answer(http, "PUT", server.url)
        await until(lambda: server.eofs == 1)
    assert reason.startswith("ClientResponseError") and "Bad status line" in reason
    assert server.accepted == 1


async def test_cancelled_request_closes_its_connection(http: PeerHttp) -> None:
    asked = asyncio.Event()

    async def handler(conn: Conn) -> None:
        if conn.number == 1:
            await conn.request()
            asked.set()
            await conn.until_eof()
        else:
            await answering(OK)(conn)

    async with raw_server(handler) as server:
        task = asyncio.create_task(http.request("GET", server.url, b"", {}))
        await asked.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: server.eofs == 1)
        assert (await http.request("GET", server.url, b"", {})).body == b"ok"
    assert server.accepted == 2


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/x", "http:///x", "127.0.0.1:8080/x", "http://127.0.0.1:port/"]
)
async def test_not_an_http_url(http: PeerHttp, url: str) -> None:
    assert "Url" in await no_answer(http, "GET", url)


# -- answers as they are ------------------------------------------------------------------------


async def test_content_type_defaults_to_json(http: PeerHttp) -> None:
    async with raw_server(answering(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")) as server:
        assert await http.request("GET", server.url, b"", {}) == (
            200,
            b"{}",
            "application/json",
            (),
        )


async def test_no_content_then_the_connection_is_reused(http: PeerHttp) -> None:
    async with raw_server(answering(b"HTTP/1.1 204 No Content\r\n\r\n", OK)) as server:
        assert (await http.request("POST", server.url, b"{}", JSON)).status == 204
        assert (await http.request("GET", server.url, b"", {})).body == b"ok"
    assert server.accepted == 1


async def test_a_redirect_is_returned_not_followed(http: PeerHttp) -> None:
    moved = b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"
    async with raw_server(answering(moved)) as server:
        reply = await http.request("PUT", f"{server.url}/v1/here", b"{}", JSON)
    assert (reply.status, reply.body) == (307, b"")
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "headers", [{"X-Evil": "a\r\nX-Injected: 1"}, {"X-Evil\r\nX-Injected": "1"}]
)
async def test_a_line_break_in_a_header_is_refused(http: PeerHttp, headers: dict[str, str]) -> None:
    async with raw_server(answering(OK)) as server:
        with pytest.raises(ValueError):
            await http.request("GET", server.url, b"", headers)
    assert server.requests == []


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


async def test_https_checks_the_certificate(certificate: tuple[Path, Path], http: PeerHttp) -> None:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(*certificate)
    async with raw_server(answering(OK), tls) as server:
        reason = await no_answer(http, "GET", server.url)
    assert reason.startswith("ClientConnectorCertificateError")


# -- https with the cluster's CA ([tls]) -----------------------------------------------------


@pytest.fixture
async def cluster_http(certs: Certs) -> AsyncIterator[PeerHttp]:
    client = PeerHttp(timeout=5.0, tls=certs.contexts().peers)
    yield client
    await client.aclose()


async def test_https_reaches_a_peer_the_clusters_ca_signed(
    certs: Certs, cluster_http: PeerHttp
) -> None:
    async with raw_server(answering(OK), certs.contexts().rest) as server:
        reply = await cluster_http.request("GET", server.url, b"", {})
    assert reply.status == 200


async def test_https_refuses_a_peer_with_another_cas_certificate(
    certs: Certs, cluster_http: PeerHttp
) -> None:
    impostor = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    impostor.load_cert_chain(str(certs.stranger.cert), str(certs.stranger.key))
    async with raw_server(answering(OK), impostor) as server:
        reason = await no_answer(cluster_http, "GET", server.url)
    assert reason.startswith("ClientConnectorCertificateError"), reason
    assert server.requests == []


async def test_https_refuses_a_peer_certified_for_another_address(
    certs: Certs, cluster_http: PeerHttp
) -> None:
    async with raw_server(answering(OK), certs.contexts(certs.elsewhere).rest) as server:
        reason = await no_answer(cluster_http, "GET", server.url)
    assert "IP address mismatch" in reason, reason
