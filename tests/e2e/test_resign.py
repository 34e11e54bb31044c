"""Controllers coming and going around etcd, as processes: a stopping leader resigns (on
SIGTERM its lease is revoked, and another controller leads at once, not a lease TTL
later: rolling restarts), and a controller started before etcd joins once etcd is up.

`vportd` processes on a private etcd and no switches (leadership needs none).
The lease TTL is long (10 s): a new leader elected before the old leader's
lease would have expired can only come from the resignation.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from vportd_lab.bed.cluster import PEER_TOKEN, TOKEN, Cluster, Node, NodeSettings, cluster, until
from vportd_lab.bed.etcd import PrivateEtcd, temporary_etcd
from vportd_lab.bed.ovs import PrivateOVS

pytestmark = [
    pytest.mark.etcd,
    pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd not installed"),
]

TTL = 10  # s: far longer than a resignation takes


@dataclass
class NoFabric:
    """No switches and no OVSDB server: a cluster of controllers alone."""

    names: list[str] = field(default_factory=list)
    remotes: list[str] = field(default_factory=list)

    def ovs_of(self, bridge: str) -> PrivateOVS:
        raise LookupError(bridge)


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[PrivateEtcd]:
    with temporary_etcd(tmp_path) as member:
        yield member


@pytest.fixture
async def c3(tmp_path: Path, etcd: PrivateEtcd) -> AsyncIterator[Cluster[NoFabric]]:
    async with cluster(tmp_path, NoFabric(), etcd, settings=NodeSettings(lease_ttl=TTL)) as c:
        yield c


def leader_lease(etcd: PrivateEtcd) -> tuple[str, int]:
    """Who holds the leader key, and on which lease."""
    kv = etcd.get("/vportd/leader")
    assert kv is not None, "no leader key"
    return str(json.loads(base64.b64decode(kv["value"]))["id"]), int(kv["lease"])


async def sees(node: Node, leader: str, members: int) -> bool:
    """`node` names `leader` as the leader, and `members` live members."""
    view = await node.get("/v1/cluster")
    return bool(view["leader"] == leader) and sum(m["healthy"] for m in view["members"]) == members


async def answers(node: Node) -> bool:
    """The API answers at all (its health may be bad)."""
    try:
        async with node.client() as client:
            await client.get("/healthz")
    except httpx.HTTPError:
        return False
    return True


async def test_a_leader_stopped_by_sigterm_resigns_and_another_leads_within_its_ttl(
    c3: Cluster[NoFabric], etcd: PrivateEtcd
) -> None:
    old_id, lease = leader_lease(etcd)
    left = etcd.time_to_live(lease)
    assert left is not None and left > 0
    expires = asyncio.get_running_loop().time() + left  # unless renewed
    old = next(n for n in c3.nodes if n.id == old_id)
    assert old.proc is not None
    old.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(old.proc.wait, 14) == 0  # (70: the stop hung)
    assert etcd.time_to_live(lease) is None, "the old leader's lease was not revoked"

    def new_leader() -> bool:
        held = etcd.get("/vportd/leader")
        return held is not None and leader_lease(etcd)[0] != old_id

    # Elected before the old lease could have expired: only the resignation explains it.
    before_expiry = expires - asyncio.get_running_loop().time()
    assert before_expiry > 0, "the old leader took longer to stop than its lease had left"
    await c3.until(new_leader, "another controller to lead", timeout=before_expiry)
    new_id, _ = leader_lease(etcd)
    for node in c3.live():
        await c3.until(lambda n=node: sees(n, new_id, 2), f"{node.id} to see {new_id} lead")


async def test_a_controller_started_before_etcd_joins_once_etcd_is_up(tmp_path: Path) -> None:
    """Boot order: a controller waits for etcd (not healthy meanwhile), then joins unaided."""
    etcd = PrivateEtcd(tmp_path / "etcd")  # its ports are picked, nothing listens yet
    for name, token in (("token", TOKEN), ("peer-token", PEER_TOKEN)):
        (tmp_path / name).write_text(token + "\n")
        (tmp_path / name).chmod(0o600)  # (vportd refuses a token others can read)
    node = Node("c0", tmp_path, [], etcd.endpoint)
    node.start()
    try:
        await until(lambda: answers(node), "the controller's API to answer")
        assert not await node.healthy()  # no etcd session, and it says so
        assert node.alive
        await asyncio.to_thread(etcd.start)
        try:
            await until(node.healthy, "the controller to join once etcd is up")
            await until(lambda: sees(node, "c0", 1), "the controller to lead")
        finally:
            node.kill(signal.SIGTERM)
    finally:
        node.kill(signal.SIGKILL)
        etcd.stop()
