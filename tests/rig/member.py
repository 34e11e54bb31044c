"""One controller of the rig, wired as `vportd.node.daemon` wires one.

Its `Config` (short timeouts, LLDP off, the API on a loopback port picked
before it starts, tokens from files), a `Runtime`, a `ClusterNode` on its own
client of the rig's `MemoryServer` (none with `store = "memory"`), a
`PeerClient` and a `Forwarder` sharing one `PeerHttp`, a `ControllerService`,
and `create_app`'s API, served by `serve` as one of the runtime's tasks. With
`Options(tls=True)` the config has a `[tls]` section (the rig's CA and the
controllers' certificate, `tests.pki`) and the contexts the daemon would make
from it go where the daemon puts them: https API, OpenFlow over TLS, the
peers' client checking the CA. Its clocks are the rig's (`Clocks`): its
monotonic clock apart from the others', as on hosts of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fastapi import FastAPI

from tests.rig.http import Served, free_port
from vportd.api.app import create_app
from vportd.api.server import serve
from vportd.cluster.members import Peer
from vportd.cluster.memory import MemoryServer, MemoryStore
from vportd.cluster.node import ClusterNode
from vportd.cluster.peers import Forwarder, PeerClient
from vportd.cluster.transport import PeerHttp
from vportd.core.controller import Controller
from vportd.node import tls
from vportd.node.config import Config, TLSSection
from vportd.node.runtime import Runtime
from vportd.node.service import ControllerService
from vportd.node.tokens import read_tokens

LEASE_TTL = 2  # the shortest the configuration allows
# No test here waits for a vPort sync to time out; a loaded machine's loop can stall for
# a second or two (a full GC of a big test process: seen in the fast tier), and a
# handshake must outlast that. A test of the timeout itself passes a shorter one.
SYNC_TIMEOUT = 5.0
GRACE = 1.0  # for requests in flight when a controller stops (uvicorn's shortest)
STORE_PATIENCE = 10.0  # how long a store call waits out a partition: EtcdStore's default

StoreKind = Literal["etcd", "memory"]


@dataclass(frozen=True)
class Options:
    """What kind of rig: how many controllers and hypervisors, which store, which tokens."""

    controllers: int = 3
    hypervisors: int = 3
    store: StoreKind = "etcd"
    token: bool = True  # api.token_file set
    peer_token: bool = True  # api.peer_token_file set
    max_body: int = 1024 * 1024
    sync_timeout: float = SYNC_TIMEOUT  # migration.sync_timeout
    flap_moves: int = 5  # migration.flap_moves (the controller's default)
    flap_window: float = 180.0  # migration.flap_window (the controller's default)
    tls: bool = False  # [tls]: the API https only, OpenFlow over TLS
    unreachable_after: float = 30.0  # openflow.unreachable_after (the controller's default)
    ovsdb_per_hypervisor: bool = False  # an OVSDB server per hypervisor (`Fabric`)


@dataclass
class Clocks:
    """The rig's time: each controller's monotonic clock is a host's of its own (`apart`
    seconds from the next one's), and a test may move every clock, unix time too, on by
    `ahead` seconds (past a window, say) without waiting for them."""

    apart: float = 86_400.0
    ahead: float = 0.0

    def monotonic(self, n: int) -> Callable[[], float]:
        return lambda: time.monotonic() + n * self.apart + self.ahead

    def unix(self) -> float:
        return time.time() + self.ahead


@dataclass
class Member:
    """One controller of the rig, and everything it is made of."""

    id: str
    config: Config
    runtime: Runtime
    service: ControllerService
    app: FastAPI
    served: Served  # the app, counting the requests it serves
    client: PeerClient
    forwarder: Forwarder
    store: MemoryStore | None
    node: ClusterNode | None
    contexts: tls.Contexts | None = None  # with [tls]
    task: asyncio.Task[None] | None = None

    @property
    def core(self) -> Controller:
        return self.runtime.core

    @property
    def url(self) -> str:
        return self.config.api.url

    @property
    def peer(self) -> Peer:
        return Peer(self.id, self.url)

    @property
    def alive(self) -> bool:
        return self.task is not None and not self.task.done()

    async def run(self) -> None:
        """What the daemon runs: the store open, the runtime and its API, until cancelled."""
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(self.client.aclose)
            stack.push_async_callback(self.forwarder.aclose)
            if self.store is not None:
                await stack.enter_async_context(self.store)
            listen = self.config.api.listen
            rest = None if self.contexts is None else self.contexts.rest
            await self.runtime.run(lambda: serve(self.served, listen, grace=GRACE, tls=rest))

    async def listening(self) -> None:
        """Until its OpenFlow server listens (AssertionError if it stopped first)."""
        task, ready = self.task, self.runtime.openflow.ready
        assert task is not None
        waiting = asyncio.ensure_future(ready.wait())
        await asyncio.wait([waiting, task], return_when=asyncio.FIRST_COMPLETED)
        if not ready.is_set():
            waiting.cancel()
            cause = None if task.cancelled() else task.exception()
            raise AssertionError(f"controller {self.id} stopped before it listened") from cause


def config(
    me: str,
    options: Options,
    ovsdb: str | list[str],  # the OVSDB remote(s)
    tokens: tuple[Path, Path],
    tls_section: TLSSection | None = None,
) -> Config:
    """Controller `me`'s configuration (module docstring); `[tls]` is `tls_section`."""
    api: dict[str, object] = {"listen": f"127.0.0.1:{free_port()}", "max_body": options.max_body}
    if options.token:
        api["token_file"] = str(tokens[0])
    if options.peer_token:
        api["peer_token_file"] = str(tokens[1])
    extra = {} if tls_section is None else {"tls": tls_section.model_dump()}
    return Config.model_validate({
        **extra,
        "controller": {"id": me},
        "openflow": {"listen": "127.0.0.1:0", "unreachable_after": options.unreachable_after},
        "ovsdb": {"remotes": [ovsdb] if isinstance(ovsdb, str) else ovsdb},
        "api": api,
        "store": {"kind": options.store, "lease_ttl": LEASE_TTL},
        "migration": {
            "sync_timeout": options.sync_timeout,
            "flap_moves": options.flap_moves,
            "flap_window": options.flap_window,
        },
        "topology": {"lldp": False},
    })  # fmt: skip


def member(
    config: Config, server: MemoryServer | None, clocks: Clocks | None = None, n: int = 0
) -> Member:
    """A controller wired as the daemon wires one, its store a client of `server`, its
    clocks the `n`th of `clocks` (the host's own without)."""
    api = config.api
    token, peer_token = read_tokens(api)
    contexts = None if config.tls is None else tls.load(config.tls)
    if clocks is None:
        runtime = Runtime(config, tls=contexts)
    else:
        runtime = Runtime(config, clocks.monotonic(n), wall=clocks.unix, tls=contexts)
    me = Peer(config.controller.id, api.url)
    # one session for the peer messages and the relayed requests
    http = PeerHttp(tls=None if contexts is None else contexts.peers)
    peers = PeerClient(peer_token, timeout=api.peer_timeout, http=http)
    forwarder = Forwarder(http=http)
    store, node = None, None
    if config.store.kind == "etcd":
        assert server is not None, "a cluster needs the rig's store"
        store = server.client(config.store.lease_ttl, patience=STORE_PATIENCE)
        node = ClusterNode(
            store, peers, me, runtime, openflow=config.openflow.listen,
            gather=config.store.write_delay,
        )  # fmt: skip
        runtime.attach(node)
    service = ControllerService(runtime, me, node)
    app = create_app(
        service, token=token, peer_token=peer_token, max_body=api.max_body, forwarder=forwarder
    )
    return Member(
        me.id, config, runtime, service, app, Served(app), peers, forwarder, store, node, contexts
    )
