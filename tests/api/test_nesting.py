"""Bodies nested absurdly deep: a clear 4xx in the API's error shape, never a 5xx or a traceback.

`{"vm": [[[...]]]}` and `[[[...]]]`, 1,000 and 100,000 deep (under the body
limit), to the VMM's notify (on the leader and on a follower, which must
not relay them) and to the leader's vPort sync; nothing changes anywhere.
"""

from __future__ import annotations

import logging

import pytest

from tests.api.conftest import VM_A
from tests.rig.cluster import Rig
from tests.rig.http import JSON, PEER_AUTH, nested, nested_field, sync_path

DEPTHS = [1_000, 100_000]
SHAPES = {"field": lambda depth: nested_field("vm", depth), "array": nested}


def _body(shape: str, depth: int) -> bytes:
    return SHAPES[shape](depth)


def _no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    logged = [r for r in caplog.records if r.exc_info is not None or r.levelno >= logging.ERROR]
    assert logged == [], [r.getMessage() for r in logged]


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("who", ["leader", "follower"])
async def test_a_deep_notify_is_refused(
    rig: Rig, caplog: pytest.LogCaptureFixture, shape: str, depth: int, who: str
) -> None:
    target = rig.leader if who == "leader" else rig.followers()[0]
    body = _body(shape, depth)
    assert len(body) < rig.options.max_body  # the parser sees it, not the size limit
    before, relayed = rig.state(), len(rig.leader.served.requests)
    got = await rig.client(target.id).post("/v1/migrations", content=body, headers=JSON)
    assert 400 <= got.status_code < 500, got.text[:300]
    assert set(got.json()) == {"error", "detail"}
    assert "Traceback" not in got.text and len(got.content) < 1000  # (no echo of the body)
    if who == "follower":
        assert len(rig.leader.served.requests) == relayed
    _no_traceback(caplog)
    await rig.settle()
    assert rig.state() == before


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("depth", DEPTHS)
async def test_a_deep_sync_is_refused(
    rig: Rig, caplog: pytest.LogCaptureFixture, shape: str, depth: int
) -> None:
    target = rig.master("hv1")
    before = rig.state()
    got = await rig.client(target.id, auth=False).put(
        sync_path(VM_A.mac), content=_body(shape, depth), headers={**PEER_AUTH, **JSON}
    )
    assert 400 <= got.status_code < 500, got.text[:300]
    assert set(got.json()) == {"error", "detail"}
    assert "Traceback" not in got.text and len(got.content) < 1000  # (no echo of the body)
    _no_traceback(caplog)
    await rig.settle()
    assert rig.state() == before
