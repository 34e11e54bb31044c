"""TLS with a real Open vSwitch (dummy datapath): OVSDB over `ssl:`, OpenFlow to `ssl:` targets.

The private OVS is given the lab's kind of TLS (`PrivateOVS(tls=...)`: its
ovsdb-server listens on `pssl:`, ovs-vswitchd has the files of `set-ssl`),
with a certificate the cluster's CA signed (`tests.pki`, no host name in it,
as `ovs-pki` makes them). The controller's contexts come from `[tls]` as the
daemon makes them.

- The OVSDB monitor follows the server over `ssl:`; a controller whose
  certificate another CA signed gets nothing from it, nor does one that
  checks the server against another CA.
- A bridge pointed at an `ssl:` target connects to the OpenFlow listener and
  is handed over with its datapath id; shown another CA's certificate, the
  listener refuses it at the handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from tests.pki import Certs
from tests.southbound.support import WAIT, Recorder, running
from vportd.southbound.openflow.server import OpenFlowServer
from vportd.southbound.ovsdb.monitor import OvsdbMonitor
from vportd.southbound.ovsdb.snapshot import Snapshot
from vportd_lab.bed.ovs import OvsTls, PrivateOVS
from vportd_lab.bed.ports import free_port

pytestmark = [
    pytest.mark.ovs,
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="Open vSwitch not installed"),
]

MAC = "02:00:00:00:03:01"
DPID = 0x51


@pytest.fixture(scope="module")
def ovs(certs: Certs) -> Iterator[PrivateOVS]:
    """A private OVS with TLS (the switch's certificate), a bridge `br0` with a VM port."""
    rundir = Path(tempfile.mkdtemp(prefix="ovs"))  # short: unix sockets take 108 chars
    pair = certs.switch
    tls = OvsTls(pair.key, pair.cert, certs.ca.cert, free_port())
    switch = PrivateOVS(rundir, dummy=True, tls=tls).start()
    try:
        switch.add_bridge("br0", DPID)
        switch.vsctl(
            "add-port", "br0", "vm1", "--", "set", "Interface", "vm1", "type=dummy",
            "ofport_request=1", f"external_ids:attached-mac={MAC}",
        )  # fmt: skip
        yield switch
    finally:
        switch.stop()
        shutil.rmtree(rundir, ignore_errors=True)


@pytest.fixture(autouse=True)
def _log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vportd.openflow")
    caplog.set_level(logging.DEBUG, logger="vportd.ovsdb")


def remote(ovs: PrivateOVS) -> str:
    assert ovs.tls is not None
    return f"ssl:127.0.0.1:{ovs.tls.ovsdb_port}"


@contextlib.asynccontextmanager
async def monitoring(ovs: PrivateOVS, tls: ssl.SSLContext) -> AsyncIterator[list[Snapshot]]:
    """An OVSDB monitor with `tls` following `ovs` over ssl:; the snapshots it handed on."""
    seen: list[Snapshot] = []
    task = asyncio.create_task(OvsdbMonitor(remote(ovs), seen.append, tls=tls).run())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(check: Callable[[], object]) -> None:
    async with asyncio.timeout(WAIT):
        while not check():
            await asyncio.sleep(0.02)


async def failure(caplog: pytest.LogCaptureFixture, ovs: PrivateOVS) -> str:
    """The first failed attempt the monitor logged (waiting for it)."""
    prefix = f"OVSDB {remote(ovs)}: "
    async with asyncio.timeout(WAIT):
        while True:
            for record in caplog.records:
                if record.getMessage().startswith(prefix):
                    return record.getMessage()
            await asyncio.sleep(0.02)


# -- OVSDB over ssl: -----------------------------------------------------------------------
async def test_the_monitor_follows_the_server_over_ssl(ovs: PrivateOVS, certs: Certs) -> None:
    async with monitoring(ovs, certs.contexts().ovsdb) as seen:
        await until(lambda: seen and "vm1" in seen[-1].ifaces)
        snapshot = seen[-1]
    assert snapshot.bridges == {"br0": DPID}
    assert snapshot.ifaces["vm1"].mac == MAC


async def test_the_server_gives_nothing_to_a_controller_another_ca_certified(
    ovs: PrivateOVS, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    impostor = certs.switch_context(certs.stranger)  # trusts the cluster's CA, is not vouched for
    async with monitoring(ovs, impostor) as seen:
        said = await failure(caplog, ovs)
    assert seen == []
    assert "failed attempt" in said


async def test_the_monitor_refuses_a_server_its_ca_did_not_sign(
    ovs: PrivateOVS, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    """A controller of another cluster (another CA) does not take this server's word."""
    other = certs.switch_context(certs.stranger, ca=certs.stranger_ca.cert)
    async with monitoring(ovs, other) as seen:
        said = await failure(caplog, ovs)
    assert seen == []
    assert "not reachable" in said and "CERTIFICATE_VERIFY_FAILED" in said, said


# -- OpenFlow to ssl: targets ---------------------------------------------------------------
@contextlib.asynccontextmanager
async def listener(certs: Certs) -> AsyncIterator[tuple[Recorder, OpenFlowServer]]:
    recorder = Recorder()
    server = OpenFlowServer(recorder, port=0, tls=certs.contexts().openflow)
    async with running(server):
        yield recorder, server


async def point(ovs: PrivateOVS, server: OpenFlowServer | None) -> None:
    target = [] if server is None else [f"ssl:127.0.0.1:{server.port}"]
    await asyncio.to_thread(ovs.vsctl, "set-controller", "br0", *target)


async def test_a_bridge_with_an_ssl_target_connects(ovs: PrivateOVS, certs: Certs) -> None:
    async with listener(certs) as (recorder, server):
        await point(ovs, server)
        try:
            conn = (await recorder.next("connected")).conn
            assert conn.dpid == DPID and 1 in conn.ports
        finally:
            await point(ovs, None)


async def test_a_bridge_showing_another_cas_certificate_is_refused(
    ovs: PrivateOVS, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    assert ovs.tls is not None
    impostor = certs.stranger
    await asyncio.to_thread(
        ovs.vsctl, "set-ssl", str(impostor.key), str(impostor.cert), str(certs.ca.cert)
    )
    try:
        async with listener(certs) as (recorder, server):
            await point(ovs, server)
            await until(lambda: "refused: TLS handshake failed" in caplog.text)
            assert server.connections == set()
            assert recorder.events.empty()
    finally:
        await point(ovs, None)
        t = ovs.tls
        await asyncio.to_thread(ovs.vsctl, "set-ssl", str(t.key), str(t.cert), str(t.ca))
    assert "certificate refused: unable to get local issuer certificate" in caplog.text
