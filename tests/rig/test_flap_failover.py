"""Flap damping across a leader change: the leader stores each VM's recent moves
(`moves/{mac}`, unix seconds, fenced by its leadership), and whoever leads next
refuses a VM that moved too often before the change, with the right Retry-After,
and lets it move again once the window has passed (and the record is gone).

The rig's controllers each keep a monotonic clock of their own, a day apart, as
hosts do: only unix time carries the moves from one leader to the next.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.rig.cluster import Rig, running
from tests.rig.fabric import VmPort
from tests.rig.http import notify_body
from tests.rig.member import Options

WINDOW = 600.0  # s: far longer than a slow machine takes to move the VM twice and fail over
VM = VmPort("02:00:00:00:07:01", "hv0", 1)
HOPS = [VmPort(VM.mac, "hv1", 11), VmPort(VM.mac, "hv0", 12)]  # flap_moves = 2 moves


async def hop(rig: Rig, here: VmPort, there: VmPort) -> None:
    got = await rig.client(rig.leader.id).post(
        "/v1/migrations", json=notify_body(VM.mac, here.switch, there.switch)
    )
    assert got.status_code == 201, got.text
    await rig.live_migrate(here, there)
    mid = got.json()["id"]
    await rig.until(lambda: rig.leader.core.migration(mid).state == "completed", "completion")


def stored_moves(rig: Rig) -> list[float]:
    held = rig.server.range("moves/") if rig.server is not None else {}
    kv = held.get(f"moves/{VM.mac}")
    if kv is None or kv.value is None:
        return []
    times: list[float] = json.loads(kv.value)["moves"]
    return times


def generation(rig: Rig) -> int:
    """The leadership's generation: its leader key's create revision (0: none)."""
    assert rig.server is not None
    held = rig.server.range("leader").get("leader")
    return 0 if held is None else held.create_revision


def retry_after(got: httpx.Response) -> int:
    value = got.headers["retry-after"]
    assert value.isdigit(), value
    return int(value)


@pytest.mark.parametrize("how", ["killed", "resigned", "lease lost"])
async def test_a_vm_that_moved_too_often_stays_damped_across_a_leader_change(
    tmp_path: Path, how: str
) -> None:
    async with running(tmp_path, Options(flap_moves=2, flap_window=WINDOW)) as rig:
        await rig.boot(VM)
        await hop(rig, VM, HOPS[0])
        await hop(rig, HOPS[0], HOPS[1])
        await rig.until(lambda: len(stored_moves(rig)) == 2, "the moves stored")
        old, was = rig.leader, generation(rig)

        if how == "killed":  # kill -9: the lease ends as etcd expires it
            await rig.crashed(old.id, expire=True)
        elif how == "resigned":  # SIGTERM: the controller stops and gives its lease back
            await rig.crashed(old.id)
        else:  # etcd expired the leader's lease: it steps down, and anyone may lead next
            rig.expire(old.id)
        await rig.until(lambda: generation(rig) > was, "a new leadership")
        await rig.until(lambda: rig.leader.core.leading, "the new leader to lead")
        await rig.settle()

        for member in rig.live():  # the leader, and followers relaying its answer
            got = await rig.client(member.id).post(
                "/v1/migrations", json=notify_body(VM.mac, "hv0", "hv2")
            )
            assert got.status_code == 429, got.text
            assert got.json()["error"] == "migration-suppressed"
            # The first move was moments ago (minutes at most, on a slow machine).
            assert WINDOW / 2 < retry_after(got) <= WINDOW

        rig.clocks.ahead += WINDOW  # every clock: the moves leave the window
        await rig.until(lambda: not stored_moves(rig), "the record of moves deleted")
        got = await rig.client(rig.leader.id).post(
            "/v1/migrations", json=notify_body(VM.mac, "hv0", "hv2")
        )
        assert got.status_code == 201, got.text
