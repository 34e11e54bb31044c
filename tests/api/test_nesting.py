"""Bodies nested absurdly deep: a clear 4xx in the API's error shape, never a 5xx or a traceback.

`{"vm": [[[...]]]}` and `[[[...]]]`, 1,000 and 100,000 deep (under the body
limit), to the VMM's notify (on the leader and on a follower, which must
not relay them) and to the leader's vPort sync; nothing changes anywhere.
"""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.api.conftest import VM_A
from tests.rig.cluster import Rig
from tests.rig.http import JSON, PEER_AUTH, nested, nested_field, sync_path

BODIES = {
    f"{shape} {depth} deep": body
    for depth in [1_000, 100_000]
    for shape, body in [("{'vm': [[...]]}", nested_field("vm", depth)), ("[[...]]", nested(depth))]
}


def _refused(got: httpx.Response, caplog: pytest.LogCaptureFixture) -> None:
    assert 400 <= got.status_code < 500, got.text[:300]
    assert set(got.json()) == {"error", "detail"}
    assert "Traceback" not in got.text and len(got.content) < 1000  # (no echo of the body)
    logged = [r for r in caplog.records if r.exc_info is not None or r.levelno >= logging.ERROR]
    assert logged == [], [r.getMessage() for r in logged]


async def test_a_deep_notify_is_refused(
    rig: Rig, caplog: pytest.LogCaptureFixture, subtests: pytest.Subtests
) -> None:
    for target in (rig.leader, rig.followers()[0]):
        for name, body in BODIES.items():
            with subtests.test(f"{name} to {target.id}"):
                assert len(body) < rig.options.max_body  # the parser sees it, not the limit
                before, served = rig.state(), len(rig.leader.served.requests)
                client = rig.client(target.id)
                _refused(await client.post("/v1/migrations", content=body, headers=JSON), caplog)
                # The leader served the request sent to it, if any: a follower relays nothing.
                assert len(rig.leader.served.requests) == served + (target is rig.leader)
                await rig.settle()
                assert rig.state() == before


async def test_a_deep_sync_is_refused(
    rig: Rig, caplog: pytest.LogCaptureFixture, subtests: pytest.Subtests
) -> None:
    client = rig.client(rig.master("hv1").id, auth=False)
    for name, body in BODIES.items():
        with subtests.test(name):
            before = rig.state()
            got = await client.put(sync_path(VM_A.mac), content=body, headers={**PEER_AUTH, **JSON})
            _refused(got, caplog)
            await rig.settle()
            assert rig.state() == before
