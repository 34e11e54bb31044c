"""F-d on real controllers: a duplicate MAC keeps the vPort where it was, and says so.

The second port's master logs the conflict naming both ports, counts it in
`vportd_mac_conflicts` and posts it; every controller's vPort view shows it.
It ends when one of the two ports goes.
"""

from __future__ import annotations

import logging

import pytest

from tests.rig.cluster import Rig
from tests.rig.fabric import VmPort

A = VmPort("02:00:00:00:01:0a", "hv0", 1)
B = VmPort("02:00:00:00:01:0b", "hv1", 2)
CLONE = VmPort(A.mac, "hv2", 5)  # another VM given A's MAC


async def conflicts_shown(rig: Rig) -> list[list[object]]:
    """Each controller's vPort view of A: its conflicts' ports."""
    shown = []
    for member in rig.live():
        got = await rig.client(member.id).get(f"/v1/vports/{A.mac}")
        assert got.status_code == 200
        assert (got.json()["ovs"], got.json()["port"]) == (A.switch, A.port)
        shown.append([c["port"] for c in got.json()["conflicts"]])
    return shown


async def until_shown(rig: Rig, want: list[object]) -> None:
    for _ in range(100):
        if all(seen == want for seen in await conflicts_shown(rig)):
            return
        await rig.settle()
    raise AssertionError(f"conflicts shown {await conflicts_shown(rig)}, not {want}")


async def test_a_duplicate_mac_keeps_the_vport_and_is_shown_until_one_port_goes(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    await rig.boot(A, B)
    with caplog.at_level(logging.INFO, logger="vportd.conflicts"):
        rig.fabric.boot(CLONE)
        clone = {"ovs": "hv2", "port": 5, "port_name": CLONE.name}
        await until_shown(rig, [clone])

        assert rig.fabric.deliveries(A.mac, B.switch, B.port) == {(A.switch, A.port)}
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any(f"hv2 port 5 ({CLONE.name})" in e and "hv0 port 1" in e for e in errors)
        seer = rig.master("hv2").id
        metrics = (await rig.client(seer).get("/metrics")).text
        assert f'vportd_mac_conflicts{{controller="{seer}"}} 1.0' in metrics

        rig.fabric.leave(CLONE)
        await until_shown(rig, [])
    assert any("resolved" in r.getMessage() for r in caplog.records)
    assert rig.fabric.deliveries(A.mac, B.switch, B.port) == {(A.switch, A.port)}
