"""What the fuzzers found, each reduced to the input that showed it (regression tests)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp

from tests.fakes import ofwire
from tests.southbound.support import WAIT, Recorder, hello, parse_stream, running
from vportd.southbound.openflow.server import OpenFlowServer

pytestmark = pytest.mark.fuzz


async def _features_request_xid(reader: asyncio.StreamReader) -> int:
    received = bytearray()
    async with asyncio.timeout(WAIT):
        while True:
            received += await reader.read(4096)
            for header, _ in parse_stream(received):
                if header.msg_type == ofp.OFPT_FEATURES_REQUEST:
                    return header.xid


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (
            lambda xid: ofwire.error(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_IS_SLAVE, b"", xid),
            "handshake refused: switch refused the request: BAD_REQUEST/IS_SLAVE",
        ),
        (
            lambda xid: ofwire.role_reply(ofp.OFPCR_ROLE_MASTER, 1, xid),
            "handshake refused: expected FeaturesReply, got RoleReply",
        ),
    ],
    ids=["an error", "another reply"],
)
async def test_a_handshake_request_answered_wrongly_closes_with_a_reason_no_traceback(
    answer: object, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by the OpenFlow fuzzer: an ERROR (or a reply of another type) with the xid of
    the FEATURES_REQUEST was logged as "connect failed" with a traceback."""
    caplog.set_level(logging.INFO, logger="vportd.openflow")
    server = OpenFlowServer(Recorder(), port=0)
    async with running(server):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        host, port = writer.get_extra_info("sockname")[:2]
        writer.write(hello())
        writer.write(answer(await _features_request_xid(reader)))  # type: ignore[operator]
        async with asyncio.timeout(WAIT):
            while await reader.read(4096):
                pass
        writer.close()
    assert f"openflow peer {host}:{port}: closing: {reason}" in caplog.text
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
