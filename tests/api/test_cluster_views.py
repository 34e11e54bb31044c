"""The operator's views of the cluster on real controllers: `GET /v1/switches` with each
controller's role, `vportctl switches` and `vportctl status`, and a view its controller
can no longer vouch for (cut off from the store) saying so."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from tests.rig.cluster import Rig
from tests.rig.member import Member
from vportd.ctl import client as api
from vportd.ctl.cli import main

Capsys = pytest.CaptureFixture[str]


async def vportctl(rig: Rig, member: Member, capsys: Capsys, *args: str) -> tuple[int, str, str]:
    """`vportctl --api URL --token-file ... ARGS` against `member`: exit code, stdout, stderr."""
    token = rig.tmp_path / "tokens" / "api-token"
    argv = ["--api", member.url, "--token-file", str(token), *args]
    capsys.readouterr()
    rc = await asyncio.to_thread(main, argv)
    out, err = capsys.readouterr()
    return rc, out, err


async def test_switches_name_each_controllers_role(rig: Rig) -> None:
    for m in rig.live():
        switches = (await rig.client(m.id).get("/v1/switches")).json()
        roles = {s["name"]: s["role"] for s in switches}
        assert roles == {
            name: "master" if rig.master(name) is m else "slave" for name in rig.fabric.names
        }


async def test_vportctl_switches_table_and_json(rig: Rig, capsys: Capsys) -> None:
    follower = rig.followers()[0]
    rc, out, err = await vportctl(rig, follower, capsys, "switches")
    assert rc == api.EXIT_OK, err
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "DPID", "MASTER", "ROLE", "GENERATION"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == set(rig.fabric.names)
    for n, name in enumerate(rig.fabric.names):
        master = rig.master(name)
        role = "master" if master is follower else "slave"
        assert rows[name][:4] == [name, f"{n + 1:016x}", master.id, role]
    rc, out, _ = await vportctl(rig, follower, capsys, "switches", "--json")
    assert rc == api.EXIT_OK
    doc = json.loads(out)
    assert [s["name"] for s in doc] == rig.fabric.names
    assert {s["name"]: s["master"] for s in doc} == {
        name: rig.master(name).id for name in rig.fabric.names
    }


async def test_vportctl_status_names_the_switches_each_member_masters(
    rig: Rig, capsys: Capsys
) -> None:
    rc, out, err = await vportctl(rig, rig.leader, capsys, "status")
    assert rc == api.EXIT_OK, err
    for name in rig.fabric.names:
        master = rig.master(name)
        row = next(line for line in out.splitlines() if line.startswith(f"{master.id} "))
        assert f"{name} (" in row, row
    assert "STALE" not in out


async def test_a_controller_cut_off_from_the_store_says_its_view_is_stale(
    rig: Rig, capsys: Capsys
) -> None:
    cut = rig.followers()[0]
    client = rig.client(cut.id)
    before = (await client.get("/v1/cluster")).json()
    assert (before["session"], before["stale_since"]) == (True, None)
    cut_at = datetime.now(UTC)
    rig.partition(cut.id)
    try:
        node = cut.node
        assert node is not None
        await rig.until(lambda: not node.in_session, f"{cut.id} to lose its session")
        view = (await client.get("/v1/cluster")).json()
        assert view["session"] is False
        assert datetime.fromisoformat(view["stale_since"]) >= cut_at
        rc, out, err = await vportctl(rig, cut, capsys, "status")
        assert rc == api.EXIT_UNAVAILABLE
        assert out.startswith("STALE: the answering controller has had no etcd session since")
        assert "(as last seen)" in out
        assert "no etcd session" in err
        rows = [line.split() for line in out.splitlines() if line.startswith("c")]
        assert rows and all(row[2] == "unknown" for row in rows)
        rc, out, _ = await vportctl(rig, cut, capsys, "--json", "status")
        assert rc == api.EXIT_UNAVAILABLE
        assert json.loads(out)["cluster"]["session"] is False
    finally:
        rig.heal(cut.id)
    await rig.until(lambda: node.in_session, f"{cut.id} to join again")
    after = (await client.get("/v1/cluster")).json()
    assert (after["session"], after["stale_since"]) == (True, None)
