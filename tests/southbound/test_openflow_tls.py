"""The OpenFlow listener with TLS (`ssl:` targets): only a switch the CA vouches for gets in.

The listener has the controller's `openflow` context (its certificate; a
client certificate signed by the CA required). A `FakeSwitch` with a
certificate the CA signed connects and is handed to the handler with its
datapath id. One with no certificate, with another CA's, or speaking plain
OpenFlow is refused at the handshake, the reason logged with its address;
the handler never hears of it, whatever datapath id it would have claimed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator

import pytest

from tests.fakes.ofwire import Port
from tests.fakes.switch import FakeSwitch
from tests.pki import Certs
from tests.southbound.support import WAIT, Event, Recorder, running
from vportd.southbound.openflow.server import OpenFlowServer

PORTS = [Port(1, "vm1", "02:00:00:00:00:01")]
DPID = 0xA1


@pytest.fixture(autouse=True)
def _log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vportd.openflow")


@contextlib.asynccontextmanager
async def tls_controller(certs: Certs, recorder: Recorder) -> AsyncIterator[OpenFlowServer]:
    server = OpenFlowServer(recorder, port=0, tls=certs.contexts().openflow)
    async with running(server):
        yield server


async def refusal(caplog: pytest.LogCaptureFixture) -> str:
    """The first refusal the listener logged (waiting for it)."""
    async with asyncio.timeout(WAIT):
        while True:
            for record in caplog.records:
                if "refused: TLS handshake failed" in record.getMessage():
                    return record.getMessage()
            await asyncio.sleep(0.01)


async def test_a_switch_with_a_certificate_the_ca_signed_connects(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    async with (
        tls_controller(certs, recorder) as server,
        FakeSwitch(DPID, PORTS, tls=certs.switch_context()) as switch,
    ):
        switch.connect("127.0.0.1", server.port)
        conn = (await recorder.next("connected")).conn
        await switch.wait_connected()
        assert conn.dpid == DPID and set(conn.ports) >= {1}
        assert any("connected (TLSv1" in r.getMessage() for r in caplog.records)
        assert "refused" not in caplog.text


async def refused(
    certs: Certs, caplog: pytest.LogCaptureFixture, tls: ssl.SSLContext | None
) -> str:
    """Connect a switch with `tls` (None: plain OpenFlow); the logged refusal. The handler
    heard of no switch, and the listener holds no connection."""
    recorder = Recorder()
    async with (
        tls_controller(certs, recorder) as server,
        FakeSwitch(DPID, PORTS, tls=tls) as switch,
    ):
        switch.connect("127.0.0.1", server.port)
        said = await refusal(caplog)
        assert not switch.connected
        assert server.connections == set()
    assert recorder.events.empty()
    return said


async def test_a_switch_without_a_certificate_is_refused(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    said = await refused(certs, caplog, certs.anonymous_context())
    assert "openflow peer 127.0.0.1:" in said
    assert "the switch showed no certificate" in said, said


async def test_a_switch_with_another_cas_certificate_is_refused(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    said = await refused(certs, caplog, certs.switch_context(certs.stranger))
    assert "certificate refused: unable to get local issuer certificate" in said, said


async def test_a_switch_speaking_plain_openflow_is_refused(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    said = await refused(certs, caplog, None)
    assert "openflow peer 127.0.0.1:" in said
    assert "not TLS (is the switch's controller target tcp: instead of ssl:?)" in said, said


async def test_a_listener_without_tls_refuses_a_tls_switch_as_garbage(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    """The other way round: a switch told `ssl:` meets a controller without [tls]."""
    recorder = Recorder()
    async with (
        running(OpenFlowServer(recorder, port=0)) as server,
        FakeSwitch(DPID, PORTS, tls=certs.switch_context()) as switch,
    ):
        switch.connect("127.0.0.1", server.port)
        async with asyncio.timeout(WAIT):
            while "expected HELLO" not in caplog.text:
                await asyncio.sleep(0.01)
        assert not switch.connected
    assert all(e.kind != "connected" for e in _drain(recorder))


def _drain(recorder: Recorder) -> list[Event]:
    events = []
    while not recorder.events.empty():
        events.append(recorder.events.get_nowait())
    return events
