"""The API tests' rig: three real controllers on a fake fabric (`tests.rig`), two VMs booted.

VM_A is on hv0 port 1 and VM_B on hv1 port 2; `leader` and `follower` are
clients of the leader's and of a follower's API, with the VMM's token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.rig.cluster import Rig, running
from tests.rig.fabric import VmPort

VM_A = VmPort("02:00:00:00:00:0a", "hv0", 1)
VM_B = VmPort("02:00:00:00:00:0b", "hv1", 2)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with running(tmp_path) as r:
        await r.boot(VM_A, VM_B)
        yield r


@pytest.fixture
def leader(rig: Rig) -> httpx.AsyncClient:
    return rig.client(rig.leader.id)


@pytest.fixture
def follower(rig: Rig) -> httpx.AsyncClient:
    return rig.client(rig.followers()[0].id)
