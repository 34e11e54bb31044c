"""`serve()` really serves a controller's app on a loopback port, leaves signals alone, stops
when cancelled, and sends each answer in one segment."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.types import ASGIApp

from tests.rig.cluster import Rig, running
from tests.rig.http import AUTH
from tests.rig.member import Options
from vportd.api.server import parse_listen, serve


@pytest.fixture
async def alone(tmp_path: Path) -> AsyncIterator[Rig]:
    async with running(tmp_path, Options(controllers=1, store="memory")) as rig:
        yield rig


def app_of(rig: Rig) -> ASGIApp:
    return rig.leader.app


async def serving(app: ASGIApp, listen: str = "127.0.0.1:0") -> tuple[asyncio.Task[None], int]:
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(app, listen, grace=1, on_listening=lambda _h, p: bound.set_result(p))
    )
    return task, await bound


async def stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_serve_on_loopback_until_cancelled(alone: Rig) -> None:
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    task, port = await serving(app_of(alone))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/v1/vports", headers=AUTH)).status_code == 200
        assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
    await stopped(task)
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/healthz")


async def test_a_port_in_use_raises(alone: Rig) -> None:
    with pytest.raises(OSError):
        await serve(app_of(alone), alone.leader.config.api.listen)


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:8080") == ("::1", 8080)
    with pytest.raises(ValueError):
        parse_listen("localhost")


async def test_an_answer_leaves_in_one_send(alone: Rig) -> None:
    """Status line, headers and body in one segment: the client wakes up once per answer."""
    host, port = parse_listen(alone.leader.config.api.listen)
    # A blocking client in a thread: it returns from recv() with the first segment.
    client = socket.create_connection((host, port))
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
