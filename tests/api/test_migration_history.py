"""`GET /v1/migrations?state=...&limit=...`: the leader's history, oldest first, filtered at
the leader and checked at the edge (a follower refuses a bad value itself); and `vportctl
migrations --state --limit` on the same cluster."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.api.conftest import VM_A, VM_B
from tests.rig.cluster import Rig
from tests.rig.http import TOKEN, notify_body
from vportd.ctl.cli import main

BAD = [
    "state=nope", "state=", "state=READY", "limit=0", "limit=10001", "limit=-1", "limit=ten",
    "limit=1.5", "limit=",
]  # fmt: skip


@pytest.fixture
async def history(rig: Rig) -> list[str]:
    """VM_A's migration aborted, then VM_B's open (ready): their ids, oldest first."""
    leader = rig.client(rig.leader.id)
    aborted = (await leader.post("/v1/migrations", json=notify_body(VM_A.mac, "hv0", "hv1"))).json()
    assert (await leader.delete(f"/v1/migrations/{aborted['id']}")).status_code == 200
    ready = (await leader.post("/v1/migrations", json=notify_body(VM_B.mac, "hv1", "hv2"))).json()
    await rig.settle()
    return [aborted["id"], ready["id"]]


async def listed(client: httpx.AsyncClient, query: str) -> list[str]:
    got = await client.get(f"/v1/migrations?{query}")
    assert got.status_code == 200, got.text
    return [m["id"] for m in got.json()]


async def test_by_state_and_the_newest_few(
    rig: Rig, history: list[str], leader: httpx.AsyncClient, follower: httpx.AsyncClient
) -> None:
    aborted, ready = history
    for client in (leader, follower):
        assert await listed(client, "") == [aborted, ready]  # oldest first
        assert await listed(client, "state=aborted") == [aborted]
        assert await listed(client, "state=ready") == [ready]
        assert await listed(client, "state=completed") == []
        assert await listed(client, "limit=1") == [ready]  # the newest
        assert await listed(client, "limit=10000") == [aborted, ready]
        assert await listed(client, "state=aborted&limit=1") == [aborted]


async def test_bad_values_are_422_everywhere(
    rig: Rig, history: list[str], leader: httpx.AsyncClient, follower: httpx.AsyncClient
) -> None:
    before = rig.state()
    for client in (leader, follower):
        for query in BAD:
            got = await client.get(f"/v1/migrations?{query}")
            assert (got.status_code, got.json()["error"]) == (422, "invalid-request"), query
            assert set(got.json()) == {"error", "detail"}
            assert query.split("=")[0] in got.json()["detail"]
            assert "x-vportd-answered-by" not in got.headers  # refused at the edge
    assert rig.state() == before


async def test_vportctl_migrations_state_and_limit(
    rig: Rig, history: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    token = rig.tmp_path / "vmm.token"
    token.write_text(TOKEN + "\n")
    api = ["--api", rig.followers()[0].url, "--token-file", str(token)]

    async def vportctl(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        try:
            rc = await asyncio.to_thread(main, [*api, *args])
        except SystemExit as exc:  # argparse's usage errors
            rc = int(exc.code or 0)
        return rc, capsys.readouterr().out

    rc, out = await vportctl("--json", "migrations", "--state", "ready", "--limit", "5")
    assert rc == 0
    assert [m["id"] for m in json.loads(out)] == history[1:]
    rc, out = await vportctl("--json", "migrations", "--limit", "1")
    assert (rc, [m["id"] for m in json.loads(out)]) == (0, history[1:])
    for bad in (["--limit", "0"], ["--limit", "10001"], ["--state", "nope"]):
        rc, _ = await vportctl("migrations", *bad)
        assert rc == 2  # a usage error, before any request
