"""Flap damping at the edge: a VM that moved too often gets 429 with Retry-After, on the leader
and through a follower, logged and counted, and the cluster's state stays as it was."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import VM_A, VM_B
from tests.rig.cluster import Rig, running
from tests.rig.fabric import VmPort
from tests.rig.http import notify_body
from tests.rig.member import Options

THERE = VmPort(VM_A.mac, "hv1", 4)
WINDOW = 180  # s, the controller's default flap_window


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """A VM may move once per window; VM_A has moved hv0 -> hv1 already."""
    async with running(tmp_path, Options(flap_moves=1)) as r:
        await r.boot(VM_A, VM_B)
        got = await r.client(r.leader.id).post(
            "/v1/migrations", json=notify_body(VM_A.mac, "hv0", "hv1")
        )
        assert got.status_code == 201
        await r.live_migrate(VM_A, THERE)
        mid = got.json()["id"]
        await r.until(lambda: r.leader.core.migration(mid).state == "completed", "completion")
        await r.settle()
        yield r


def retry_after(got: httpx.Response) -> int:
    value = got.headers["retry-after"]
    assert value.isdigit(), value  # delay-seconds, RFC 9110 §10.2.3
    return int(value)


async def test_a_vm_that_moved_too_often_is_refused_with_retry_after(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    before = rig.state()
    caplog.set_level(logging.WARNING, "vportd.service")

    for member in (rig.leader, rig.followers()[0]):  # a follower relays the leader's answer
        got = await rig.client(member.id).post(
            "/v1/migrations", json=notify_body(VM_A.mac, "hv1", "hv0")
        )
        assert got.status_code == 429
        assert got.json()["error"] == "migration-suppressed"
        assert set(got.json()) == {"error", "detail"}
        assert 1 <= retry_after(got) <= WINDOW

    await rig.settle()
    assert rig.state() == before
    warnings = [r.getMessage() for r in caplog.records if r.name == "vportd.service"]
    assert len(warnings) == 2
    assert all(VM_A.mac in w and "moved 1 time(s)" in w and "move again at" in w for w in warnings)
    metrics = await rig.client(rig.leader.id, auth=False).get("/metrics")
    families = {f.name: f for f in text_string_to_metric_families(metrics.text)}
    (sample,) = [
        s for s in families["vportd_migrations_suppressed"].samples if s.name.endswith("_total")
    ]
    assert (sample.labels, sample.value) == ({"controller": rig.leader.id}, 2.0)


async def test_the_same_notify_again_is_not_refused(rig: Rig) -> None:
    first = rig.leader.core.migrations()[0]
    again = await rig.client(rig.followers()[0].id).post(
        "/v1/migrations", json=notify_body(VM_A.mac, "hv0", "hv1")
    )
    assert (again.status_code, again.json()["id"]) == (200, first.id)


async def test_other_vms_move_as_they_please(rig: Rig) -> None:
    got = await rig.client(rig.leader.id).post(
        "/v1/migrations", json=notify_body(VM_B.mac, "hv1", "hv2")
    )
    assert got.status_code == 201
