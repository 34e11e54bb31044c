"""The REST API fuzzed with schemathesis on a running three-controller rig (`rest`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import schemathesis
from schemathesis.core.result import Ok

from tests.api.conftest import VM_A, VM_B
from tests.fuzz.budget import budget, report, seed
from tests.fuzz.rest import OPERATIONS, OnLoop, RestFuzzer
from tests.rig.cluster import running
from tests.rig.http import token_files
from tests.rig.member import Options, config, member
from vportd.cluster.memory import MemoryServer

pytestmark = pytest.mark.fuzz


def test_every_route_is_fuzzed(tmp_path: Path) -> None:
    made = config("c0", Options(), "tcp:127.0.0.1:1", token_files(tmp_path))
    schema = member(made, MemoryServer()).app.openapi()
    ops = schemathesis.openapi.from_dict(schema).get_all_operations()
    assert sorted((r.ok().method.upper(), r.ok().path) for r in ops if isinstance(r, Ok)) == sorted(
        OPERATIONS
    )


async def test_no_5xx_and_refusals_change_nothing(tmp_path: Path) -> None:
    total = budget().rest
    async with running(tmp_path) as rig:
        await rig.boot(VM_A, VM_B)
        served = await rig.client(rig.leader.id, auth=False).get("/openapi.json")
        schema = schemathesis.openapi.from_dict(served.json())
        fuzzer = RestFuzzer(rig, schema, OnLoop(asyncio.get_running_loop()), [VM_A, VM_B])
        tally = await asyncio.to_thread(fuzzer.run, total, seed())
        down = [
            m.id for m in rig.members.values()
            if not m.alive or (await rig.client(m.id).get("/healthz")).status_code != 200
        ]  # fmt: skip
    report("rest", {"budget": total, **tally.summary(), "controllers_down": down})
    assert tally.cases >= total
    assert not tally.findings, tally.examples
    assert not down, f"stopped or silent: {down}"
