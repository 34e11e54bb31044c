"""The rig with TLS on every channel (`Options(tls=True)`): a migration handshake over https.

Three controllers with `[tls]`: the switches connect over TLS with a
certificate the rig's CA signed, the API is https, and the leader's vPort
syncs and a follower's forwarding go over https, each peer checked against the
CA. vportctl's client reaches the API with the CA (`ca`) and refuses it with
another CA's; plain http to the API gets no answer at all.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.rig.cluster import Rig, running
from tests.rig.fabric import VmPort
from tests.rig.http import TOKEN, notify_body
from tests.rig.member import Options
from vportd.api.server import parse_listen
from vportd.ctl.client import Client, Unreachable

A = VmPort("02:00:00:00:02:0a", "hv0", 1)
B = VmPort("02:00:00:00:02:0b", "hv1", 2)


@pytest.fixture
async def rig(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Rig]:
    caplog.set_level(logging.INFO, logger="vportd.openflow")
    async with running(tmp_path, Options(tls=True)) as r:
        await r.boot(A, B)
        yield r


async def test_the_switches_connect_over_tls(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    for name in rig.fabric.names:
        assert sum(c.ready for c in rig.fabric.switch(name).channels) == len(rig.live())
    said = [r.getMessage() for r in caplog.get_records("setup")]  # while the rig started
    assert sum("connected (TLSv1." in line for line in said) == 3 * len(rig.fabric.names)
    assert not any("refused" in line for line in said)


async def test_a_migration_handshake_goes_over_https(rig: Rig) -> None:
    follower = rig.followers()[0]
    assert follower.url.startswith("https://127.0.0.1:")
    client = rig.client(follower.id)
    got = await client.post("/v1/migrations", json=notify_body(A.mac, "hv0", "hv2"))
    assert got.status_code == 201, got.text
    assert got.json()["state"] == "ready"
    # Forwarded from the follower to the leader, and the leader's syncs to its peers: https.
    east_west = [r for m in rig.live() for r in m.served.east_west()]
    assert east_west and {r.scheme for r in east_west} == {"https"}
    assert {r.scheme for m in rig.live() for r in m.served.requests} == {"https"}
    there = VmPort(A.mac, "hv2", 4)
    await rig.arrive(there)
    rig.fabric.leave(A)
    mid = got.json()["id"]
    await rig.until(lambda: rig.leader.core.migration(mid).state == "completed", "completion")
    await rig.settle()
    assert rig.fabric.deliveries(A.mac, B.switch, B.port) == {(there.switch, there.port)}


def vportctl_client(rig: Rig, ca: Path) -> list[dict[str, object]]:
    with Client([m.url for m in rig.live()], TOKEN, ca=ca) as client:
        return client.vports()


async def test_vportctls_client_checks_the_api_against_the_ca(rig: Rig) -> None:
    assert rig.certs is not None
    vports = await asyncio.to_thread(vportctl_client, rig, rig.certs.ca.cert)
    assert {v["vm"] for v in vports} == {A.mac, B.mac}
    with pytest.raises(Unreachable) as err:
        await asyncio.to_thread(vportctl_client, rig, rig.certs.stranger_ca.cert)
    assert "CERTIFICATE_VERIFY_FAILED" in err.value.detail


async def test_plain_http_to_the_api_gets_no_answer(rig: Rig) -> None:
    url = rig.leader.url.replace("https://", "http://")
    async with httpx.AsyncClient() as plain:
        with pytest.raises(httpx.TransportError):
            await plain.get(f"{url}/v1/healthz")

    def raw() -> bytes:
        with socket.create_connection(parse_listen(rig.leader.config.api.listen)) as sock:
            sock.sendall(b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.settimeout(10.0)
            said = b""
            while chunk := sock.recv(4096):
                said += chunk
            return said

    said = await asyncio.to_thread(raw)
    assert b"HTTP/" not in said  # closed unanswered (at most a TLS alert)
    assert all(r.scheme == "https" for r in rig.leader.served.requests)
