"""`PeerClient` and `Forwarder` against peers on loopback: what each answer becomes.

A scripted ASGI peer under the daemon's uvicorn answers what a test tells it
to and keeps the requests it got; raw servers stand in for peers that close
a connection under a request, answer garbage or never answer.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from starlette.types import Receive, Scope, Send

from tests.cluster.loopback import (
    Conn,
    RawServer,
    answering,
    closed_port,
    dying_after,
    raw_server,
    uvicorn_serving,
)
from tests.cluster.support import at
from vportd.cluster.members import Peer
from vportd.cluster.peers import Forwarder, PeerClient, PeerRejected, PeerUnreachable
from vportd.core.messages import SyncComplete, SyncRefused, VPortSync

TOKEN = "peer-secret"
VM = "52:54:00:00:00:01"
SYNC = VPortSync(at(VM, 3, 1, "c0"), "m-1", "c0")
COMPLETE = {"status": "sync-complete", "migration_id": "m-1", "vm": VM, "controller": "c1"}
REFUSED = {**COMPLETE, "status": "sync-refused", "reason": "stale migration"}


@dataclass
class Request:
    method: str
    path: str  # with the query
    body: bytes
    headers: dict[str, str]
    client_port: int


@dataclass
class ScriptedPeer:
    """Answers every request with `status`, `body` and `content_type`; keeps the requests."""

    status: int = 204
    body: bytes = b""
    content_type: str = "application/json"
    got: list[Request] = field(default_factory=list)

    def answers(self, status: int, body: object, content_type: str = "application/json") -> None:
        self.status, self.content_type = status, content_type
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        query = scope["query_string"].decode()
        self.got.append(
            Request(
                scope["method"], scope["path"] + (f"?{query}" if query else ""), body,
                {k.decode(): v.decode() for k, v in scope["headers"]}, scope["client"][1],
            )
        )  # fmt: skip
        headers = [(b"content-type", self.content_type.encode())]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


@pytest.fixture
async def peer() -> AsyncIterator[tuple[ScriptedPeer, Peer]]:
    app = ScriptedPeer()
    async with uvicorn_serving(app) as url:
        yield app, Peer("c1", url)


@pytest.fixture
async def client() -> AsyncIterator[PeerClient]:
    c = PeerClient(TOKEN)
    yield c
    await c.aclose()


@pytest.fixture
async def forwarder() -> AsyncIterator[Forwarder]:
    f = Forwarder(timeout=5.0)
    yield f
    await f.aclose()


# -- the vPort sync -----------------------------------------------------------------------


async def test_sync_answered_sync_complete(
    peer: tuple[ScriptedPeer, Peer], client: PeerClient
) -> None:
    app, c1 = peer
    app.answers(200, COMPLETE)
    assert await client.sync(c1, SYNC) == SyncComplete("m-1", VM, "c1")
    (put,) = app.got
    assert (put.method, put.path) == ("PUT", f"/v1/peer/vports/{VM}")
    assert put.headers["authorization"] == f"Bearer {TOKEN}"
    assert put.headers["content-type"] == "application/json"
    sent = json.loads(put.body)
    assert (sent["migration_id"], sent["leader"]) == ("m-1", "c0")
    assert sent["record"]["vm"] == VM


async def test_sync_refused(peer: tuple[ScriptedPeer, Peer], client: PeerClient) -> None:
    app, c1 = peer
    app.answers(409, REFUSED)
    assert await client.sync(c1, SYNC) == SyncRefused("m-1", VM, "c1", "stale migration")


async def test_an_answer_without_a_body_is_a_rejection(
    peer: tuple[ScriptedPeer, Peer], client: PeerClient
) -> None:
    app, c1 = peer
    app.answers(204, b"")
    with pytest.raises(PeerRejected) as rejected:
        await client.sync(c1, SYNC)
    assert rejected.value.status == 204


async def test_syncs_in_a_row_share_one_connection(
    peer: tuple[ScriptedPeer, Peer], client: PeerClient
) -> None:
    app, c1 = peer
    app.answers(200, COMPLETE)
    for _ in range(5):
        await client.sync(c1, SYNC)
    assert len({r.client_port for r in app.got}) == 1


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_a_5xx_is_unreachable(
    peer: tuple[ScriptedPeer, Peer], client: PeerClient, status: int
) -> None:
    app, c1 = peer
    app.answers(status, {"error": "not-ready", "detail": "starting up"})
    with pytest.raises(PeerUnreachable) as failed:
        await client.sync(c1, SYNC)
    assert not isinstance(failed.value, PeerRejected)
    assert failed.value.peer == "c1"
    assert failed.value.reason == f"HTTP {status}: not-ready: starting up"


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (403, {"error": "wrong-token", "detail": "not the peer token"},
         "wrong-token: not the peer token"),
        (422, {"error": "invalid-body", "detail": "record.vm: not a MAC"},
         "invalid-body: record.vm: not a MAC"),
        (400, b"plain words", "plain words"),
    ],
)  # fmt: skip
async def test_a_4xx_is_a_rejection_with_its_detail(
    peer: tuple[ScriptedPeer, Peer], client: PeerClient, status: int, body: object, reason: str
) -> None:
    app, c1 = peer
    app.answers(status, body)
    with pytest.raises(PeerRejected) as rejected:
        await client.sync(c1, SYNC)
    assert (rejected.value.peer, rejected.value.status) == ("c1", status)
    assert rejected.value.reason == f"HTTP {status}: {reason}"


@pytest.mark.parametrize("body", [b"{not json", b"[]", json.dumps({"vm": VM}).encode()])
async def test_an_unreadable_sync_answer_is_a_rejection(
    peer: tuple[ScriptedPeer, Peer], client: PeerClient, body: bytes
) -> None:
    app, c1 = peer
    app.answers(200, body)
    with pytest.raises(PeerRejected) as rejected:
        await client.sync(c1, SYNC)
    assert "unreadable answer" in rejected.value.reason


# -- no answer ------------------------------------------------------------------------------


async def test_nobody_listening(client: PeerClient) -> None:
    with pytest.raises(PeerUnreachable) as failed:
        await client.sync(Peer("c2", f"http://127.0.0.1:{closed_port()}"), SYNC)
    assert not isinstance(failed.value, PeerRejected)
    assert failed.value.peer == "c2"


async def silent(conn: Conn) -> None:
    await conn.request()
    await conn.until_eof()


async def test_no_answer_within_the_timeout() -> None:
    client = PeerClient(TOKEN, timeout=0.2)
    try:
        async with raw_server(silent) as server:
            with pytest.raises(PeerUnreachable) as failed:
                await client.sync(Peer("c1", server.url), SYNC)
    finally:
        await client.aclose()
    assert failed.value.reason.startswith("TimeoutError")


async def test_garbage_is_unreachable(client: PeerClient) -> None:
    async with raw_server(answering(b"\x00\x01garbage\r\n\r\n")) as server:
        with pytest.raises(PeerUnreachable) as failed:
            await client.sync(Peer("c1", server.url), SYNC)
    assert not isinstance(failed.value, PeerRejected)


def _http(status: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    return head.encode() + b"\r\n\r\n" + body


def _sent(server: RawServer) -> list[str]:
    return [r.split(b" ", 2)[1].decode() for r in server.requests]


async def test_a_sync_is_sent_again_when_its_kept_alive_connection_dies(
    client: PeerClient,
) -> None:
    complete = _http("200 OK", json.dumps(COMPLETE).encode())
    async with raw_server(dying_after(1, answer=complete)) as server:
        c1 = Peer("c1", server.url)
        for _ in range(2):
            assert await client.sync(c1, SYNC) == SyncComplete("m-1", VM, "c1")
    assert _sent(server) == [f"/v1/peer/vports/{VM}"] * 3
    assert server.accepted == 2


async def test_a_relayed_post_is_not_sent_again_when_the_connection_dies(
    forwarder: Forwarder,
) -> None:
    created = _http("201 Created", json.dumps({"id": "m-1"}).encode())
    async with raw_server(dying_after(1, answer=created)) as server:
        await forwarder.forward(server.url, "POST", "/v1/migrations", b"{}", {})
        with pytest.raises(PeerUnreachable):
            await forwarder.forward(server.url, "POST", "/v1/migrations", b"{}", {})
    assert _sent(server) == ["/v1/migrations"] * 2
    assert server.accepted == 1


# -- forwarding ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (201, b'{"id": "m-1", "state": "ready"}', "application/json"),
        (409, b'{"error": "vm-not-on-source", "detail": "..."}', "application/json"),
        (503, b'{"error": "no-controller", "detail": "..."}', "application/json"),
        (200, b"plain answer", "text/plain; charset=utf-8"),
        (204, b"", "application/json"),
    ],
)
async def test_forward_returns_the_leaders_answer_untouched(
    peer: tuple[ScriptedPeer, Peer],
    forwarder: Forwarder,
    status: int,
    body: bytes,
    content_type: str,
) -> None:
    app, leader = peer
    app.answers(status, body, content_type)
    sent = b'{"vm": "52:54:00:00:00:01", "source": "hv0", "destination": "hv1"}'
    headers = {"authorization": "Bearer vmm", "content-type": "application/json",
               "x-vportd-forwarded-by": "c2"}  # fmt: skip
    reply = await forwarder.forward(leader.api, "POST", "/v1/migrations?wait=1", sent, headers)
    assert (reply.status, reply.body, reply.content_type) == (status, body, content_type)
    (got,) = app.got
    assert (got.method, got.path, got.body) == ("POST", "/v1/migrations?wait=1", sent)
    assert {k: got.headers[k] for k in headers} == headers


async def test_forward_without_an_answer(forwarder: Forwarder) -> None:
    base = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(PeerUnreachable) as failed:
        await forwarder.forward(base, "GET", "/v1/migrations", b"", {})
    assert failed.value.peer == base
