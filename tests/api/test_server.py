"""`serve()` really serves on a loopback port, leaves signals alone, and stops when cancelled."""

from __future__ import annotations

import asyncio
import signal
import socket

import httpx
import pytest

from tests.api.conftest import AUTH, PEER_TOKEN, Rig
from tests.api.test_peer import leader_syncs
from vportd.api.server import parse_listen, serve
from vportd.api.service import Peer
from vportd.cluster.peers import Forwarder, PeerClient, PeerRejected, PeerUnreachable
from vportd.core.messages import SyncComplete


async def test_serve_on_loopback_until_cancelled(rig: Rig) -> None:
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(rig.apps["c0"], "127.0.0.1:0", on_listening=lambda _h, p: bound.set_result(p))
    )
    port = await bound
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/v1/vports", headers=AUTH)).status_code == 200
        assert {sig: signal.getsignal(sig) for sig in handlers} == handlers

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/healthz")


async def test_port_in_use_raises(rig: Rig) -> None:
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(rig.apps["c0"], "127.0.0.1:0", on_listening=lambda _h, p: bound.set_result(p))
    )
    port = await bound
    with pytest.raises(OSError):
        await serve(rig.apps["c1"], f"127.0.0.1:{port}")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:8080") == ("::1", 8080)
    with pytest.raises(ValueError):
        parse_listen("localhost")


async def test_the_daemons_east_west_client_over_real_sockets(rig: Rig) -> None:
    """PeerClient and Forwarder as the daemon makes them, against uvicorn."""
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(rig.apps["c1"], "127.0.0.1:0", on_listening=lambda _h, p: bound.set_result(p))
    )
    c1 = Peer("c1", f"http://127.0.0.1:{await bound}")
    client, wrong, forwarder = PeerClient(PEER_TOKEN), PeerClient("nope"), Forwarder(timeout=5.0)
    sync = leader_syncs(rig)["c1"]
    try:
        assert isinstance(await client.sync(c1, sync), SyncComplete)
        with pytest.raises(PeerRejected) as refused:
            await wrong.sync(c1, sync)
        assert refused.value.status == 403
        relayed = await forwarder.forward(c1.api, "GET", "/v1/vports", b"", AUTH)
        assert (relayed.status, relayed.content_type) == (200, "application/json")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    with pytest.raises(PeerUnreachable):
        await client.sync(c1, sync)
    for closing in (client, wrong, forwarder):
        await closing.aclose()


async def test_an_answer_leaves_in_one_send(rig: Rig) -> None:
    """Status line, headers and body in one segment: the client wakes up once per answer."""
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(rig.apps["c0"], "127.0.0.1:0", on_listening=lambda _h, p: bound.set_result(p))
    )
    # A blocking client in a thread: it returns from recv() with the first segment.
    client = socket.create_connection(("127.0.0.1", await bound))
    try:
        for _ in range(20):  # kept alive: every answer on the connection
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            first = await asyncio.to_thread(client.recv, 65536)
            head, _, body = first.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1]) for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )  # fmt: skip
            assert head.startswith(b"HTTP/1.1 200") and len(body) == length
    finally:
        client.close()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
