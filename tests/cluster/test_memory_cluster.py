"""A whole cluster in one process: three controllers (real `Runtime`s and `ClusterNode`s, no
switch, no OVSDB) on one `MemoryServer`, electing a leader, electing another when the
leader's session dies, and carrying records from one controller to every table."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.cluster.support import at, eventually, mac
from vportd.cluster.members import Peer
from vportd.cluster.memory import MemoryServer, MemoryStore
from vportd.cluster.node import ClusterNode
from vportd.cluster.peers import PeerClient
from vportd.core.messages import EventKind, Reason, Write
from vportd.core.model import VPortRecord
from vportd.node.config import Config
from vportd.node.runtime import Runtime

TTL = 2  # seconds: the shortest the configuration allows


@dataclass
class Controller:
    runtime: Runtime
    node: ClusterNode
    store: MemoryStore
    client: PeerClient

    @property
    def id(self) -> str:
        return self.runtime.core.me


def controller(server: MemoryServer, me: str, token: Path) -> Controller:
    """A controller wired as the daemon wires one, on `server` instead of etcd."""
    config = Config.model_validate({
        "controller": {"id": me},
        "api": {"peer_token_file": str(token)},
        "store": {"kind": "etcd", "lease_ttl": TTL},
        "openflow": {"listen": "127.0.0.1:0"},
        "ovsdb": {"remotes": []},
        "topology": {"lldp": False},
    })  # fmt: skip
    runtime = Runtime(config)
    store = server.client(config.store.lease_ttl)
    client = PeerClient(None, timeout=1.0)
    # No API server: no migration runs here, so no vPort sync is sent.
    node = ClusterNode(store, client, Peer(me, "http://127.0.0.1:9"), runtime)
    runtime.attach(node)
    return Controller(runtime, node, store, client)


@asynccontextmanager
async def cluster(
    server: MemoryServer, ids: Sequence[str], tmp_path: Path
) -> AsyncIterator[list[Controller]]:
    """Every controller of `ids` running, each in a session."""
    token = tmp_path / "peer-token"
    token.write_text("t" * 16)
    controllers = [controller(server, me, token) for me in ids]
    async with AsyncExitStack() as stack:
        for c in controllers:
            await stack.enter_async_context(c.store)
            stack.push_async_callback(c.client.aclose)
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(c.runtime.run()) for c in controllers]
            try:
                await eventually(
                    lambda: all(c.node.in_session for c in controllers), "every session"
                )
                yield controllers
            finally:
                for task in tasks:
                    task.cancel()


def agreed_leader(controllers: Sequence[Controller]) -> str | None:
    """The leader every controller sees, if they all see the same one."""
    seen = {c.node.leader_id for c in controllers}
    return seen.pop() if len(seen) == 1 else None


def everywhere(controllers: Sequence[Controller], records: Sequence[VPortRecord]) -> bool:
    return all(c.runtime.core.record(r.vm) == r for c in controllers for r in records)


def writes(records: Sequence[VPortRecord]) -> list[Write]:
    return [Write(rec, EventKind.MODIFY, Reason.PORT) for rec in records]


async def test_three_controllers_elect_a_leader_and_another_when_it_dies(tmp_path: Path) -> None:
    server = MemoryServer()
    async with cluster(server, ["c0", "c1", "c2"], tmp_path) as controllers:
        await eventually(lambda: agreed_leader(controllers) is not None, "one leader")
        first = agreed_leader(controllers)
        assert first in {"c0", "c1", "c2"}

        server.expire_member(first)  # the leader's lease dies, as a dead etcd session would
        await eventually(lambda: agreed_leader(controllers) not in (None, first), "another leader")
        second = agreed_leader(controllers)
        # The old leader starts a new session (a new member key) and follows the new one.
        ids = {"c0", "c1", "c2"}
        await eventually(
            lambda: all(c.node.members.keys() == ids for c in controllers), "every member back"
        )
        assert agreed_leader(controllers) == second


async def test_records_merged_by_one_controller_reach_every_table(tmp_path: Path) -> None:
    server = MemoryServer()
    async with cluster(server, ["c0", "c1", "c2"], tmp_path) as controllers:
        by_c1 = [at(mac(n), 1, 0, "c1", ovs="hv1", port=n) for n in range(1, 21)]
        controllers[1].node.persist(writes(by_c1))
        await eventually(lambda: everywhere(controllers, by_c1), "c1's records in every table")

        # c1's session dies with records on their way; its next session writes them.
        later = [at(mac(n), 2, 0, "c1", ovs="hv1", port=n) for n in range(15, 31)]
        server.expire_member("c1")
        controllers[1].node.persist(writes(later))
        await eventually(lambda: everywhere(controllers, later), "the later ones too")
        stored, _ = server.records()
    assert stored == {r.vm: r for r in by_c1[:14] + later}
