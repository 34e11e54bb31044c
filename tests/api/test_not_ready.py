"""A controller that has not loaded the vPort table from the store answers 503 `not-ready`
for the table (F-c: a restarted controller answered 200 `[]` for a moment)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.rig.http import AUTH, token_files
from tests.rig.member import Options, config, member
from vportd.cluster.memory import MemoryServer


async def test_the_table_is_not_ready_until_it_is_loaded(tmp_path: Path) -> None:
    # A member of a cluster whose store session has not loaded anything yet (not running).
    cfg = config("c0", Options(), "tcp:127.0.0.1:9", token_files(tmp_path))
    c0 = member(cfg, MemoryServer())
    transport = httpx.ASGITransport(app=c0.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://c0", headers=AUTH) as api:
        for path in ("/v1/vports", "/v1/vports/02:00:00:00:00:01"):
            got = await api.get(path)
            assert got.status_code == 503, path
            assert got.json()["error"] == "not-ready"
        health = await api.get("/healthz")
        assert health.status_code == 503
