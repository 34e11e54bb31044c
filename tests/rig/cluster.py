"""The rig: N real controllers in the test's event loop, on a fake fabric and an in-process store.

Each controller (`member.Member`) is wired as the daemon wires one, its store
a client of one `MemoryServer` (etcd's semantics); with `store="memory"`
there is one controller and no store, as a daemon with `store.kind =
"memory"` runs. Every switch of the `Fabric` connects to every controller's
OpenFlow port.

`running(tmp_path)` starts it and returns once it has settled (`settled`
says what that means and, while it is not, what is missing). A test waits
by polling (`settle`, `until`), never by sleeping a fixed time.

One task (`_supervise`) owns everything in one TaskGroup, so that the rig
can be started and stopped from different tasks (a fixture's setup and
teardown). `crash` cancels one controller's task (a kill -9: its lease stays
until it expires, unless `expire`d); `partition` / `heal` cut a controller
off from the store and back; `clocks.ahead` moves every controller's time
on. With `Options(tls=True)` the rig makes its CA and certificates
(`tests.pki`) first: the API is https (`client` checks it against the CA)
and the switches connect over TLS with a certificate the CA signed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.pki import Certs
from tests.rig import settled
from tests.rig.fabric import Fabric, VmPort
from tests.rig.http import AUTH, client, token_files
from tests.rig.member import Clocks, Member, Options, config, member
from vportd.cluster.memory import MemoryServer
from vportd.core.controller import Controller
from vportd.core.messages import MigrationView
from vportd.core.model import VPortRecord

PATIENCE = 20.0  # generous: a slow machine must not fail a test, only slow it down
POLL = 0.01


@dataclass
class Rig:
    """The controllers (`members`, by id), their fabric and their store (module docstring)."""

    tmp_path: Path
    options: Options = field(default_factory=Options)
    server: MemoryServer | None = field(init=False, default=None)
    certs: Certs | None = field(init=False, default=None)  # with Options(tls=True)
    fabric: Fabric = field(init=False)
    members: dict[str, Member] = field(init=False, default_factory=dict)
    clocks: Clocks = field(init=False, default_factory=Clocks)
    _clients: list[httpx.AsyncClient] = field(init=False, default_factory=list)
    _stop: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _started: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _supervisor: asyncio.Task[None] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        switch_tls = None
        if self.options.tls:
            self.certs = Certs.make(self.tmp_path / "pki")
            switch_tls = self.certs.switch_context()
        self.fabric = Fabric(
            self.options.hypervisors, tls=switch_tls,
            per_hypervisor=self.options.ovsdb_per_hypervisor,
        )  # fmt: skip
        if self.options.store == "etcd":
            self.server = MemoryServer()
        elif self.options.controllers != 1:
            raise ValueError('store = "memory" runs one controller')

    # -- life --------------------------------------------------------------------------
    async def _supervise(self) -> None:
        async with self.fabric, asyncio.TaskGroup() as tg:
            tokens = token_files(self.tmp_path / "tokens")
            section = None if self.certs is None else self.certs.section()
            for n in range(self.options.controllers):
                made = config(f"c{n}", self.options, self.fabric.remotes, tokens, section)
                self.members[made.controller.id] = m = member(made, self.server, self.clocks, n)
                m.task = tg.create_task(m.run(), name=f"controller {m.id}")
            for m in self.members.values():
                await m.listening()
                self.fabric.connect("127.0.0.1", m.runtime.openflow.port)
            self._started.set()
            await self._stop.wait()
            for m in self.members.values():
                if m.task is not None:
                    m.task.cancel()

    async def start(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise(), name="rig")
        await self.until(self._started.is_set, "the controllers to listen")
        await self.settle()

    async def stop(self) -> None:
        for made in self._clients:
            await made.aclose()
        self._stop.set()
        if self._supervisor is not None:
            await self._supervisor

    def crash(self, cid: str, *, expire: bool = False) -> None:
        """Stop controller `cid` at once; `expire`: its session's lease too (else it lapses)."""
        task = self.members[cid].task
        assert task is not None
        task.cancel()
        if expire:
            self.expire(cid)

    async def crashed(self, cid: str, *, expire: bool = False) -> None:
        """`crash`, and wait until the controller has stopped."""
        self.crash(cid, expire=expire)
        task = self.members[cid].task
        assert task is not None
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def expire(self, cid: str) -> None:
        """Expire `cid`'s session lease now (if it holds one), as etcd does after its TTL."""
        with contextlib.suppress(LookupError):
            self._server.expire_member(cid)

    def partition(self, cid: str) -> None:
        """Cut `cid` off from the store: its calls wait (then fail, as EtcdStore's give up),
        its lease lapses, its watch pauses."""
        store = self.members[cid].store
        assert store is not None
        self._server.partition(store)

    def heal(self, cid: str) -> None:
        store = self.members[cid].store
        assert store is not None
        self._server.heal(store)

    @property
    def _server(self) -> MemoryServer:
        assert self.server is not None, 'a rig with store = "memory" has no store'
        return self.server

    # -- who is who ----------------------------------------------------------------------
    def live(self) -> list[Member]:
        return [m for m in self.members.values() if m.alive]

    def __getitem__(self, cid: str) -> Member:
        return self.members[cid]

    @property
    def leader(self) -> Member:
        """The controller the store names as leader (alone: the only one)."""
        if self.server is None:
            return next(iter(self.members.values()))
        held = self.server.range("leader").get("leader")
        assert held is not None and held.value is not None, "the cluster has no leader"
        return self.members[str(json.loads(held.value)["id"])]

    def followers(self) -> list[Member]:
        leader = self.leader
        return [m for m in self.live() if m is not leader]

    def master(self, switch: str) -> Member:
        """The controller that masters `switch`, as the live controllers agree."""
        held = {m.core.master_of(switch) for m in self.live()}
        assert len(held) == 1, f"no agreed master of {switch}: {held}"
        return self.members[str(held.pop())]

    # -- the API ----------------------------------------------------------------------------
    def client(self, cid: str, *, auth: bool = True) -> httpx.AsyncClient:
        """An httpx client of `cid`'s API, with the VMM's token unless `auth` is False;
        closed when the rig stops."""
        made = client(self.members[cid].url, AUTH if auth else None, verify=self.verify)
        self._clients.append(made)
        return made

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What a client checks the API with: the rig's CA with TLS, else httpx's default."""
        if self.certs is None:
            return True
        return ssl.create_default_context(cafile=str(self.certs.ca.cert))

    # -- state -------------------------------------------------------------------------------
    def stored(self) -> dict[str, VPortRecord]:
        """The records the store holds, by VM."""
        return self._server.records()[0]

    def state(self) -> dict[str, object]:
        """What a request could change: each live controller's table and migrations, the store."""
        seen: dict[str, object] = {
            m.id: (m.core.vports(), m.core.records(), _migrations(m.core)) for m in self.live()
        }
        if self.server is not None:
            seen["store"] = self.stored()
        return seen

    # -- waiting -------------------------------------------------------------------------
    async def until(self, done: Callable[[], bool], what: str, timeout: float = PATIENCE) -> None:
        """Poll `done` until it holds; fail naming `what` after `timeout` s."""
        await self.until_none(lambda: None if done() else what, timeout)

    async def until_none(
        self, problem: Callable[[], str | None], timeout: float = PATIENCE
    ) -> None:
        """Poll `problem` until it says None; fail with what it said last."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (said := problem()) is not None:
            self._check_supervisor()
            if loop.time() >= deadline:
                raise AssertionError(f"not within {timeout:g} s: {said}")
            await asyncio.sleep(POLL)

    def _check_supervisor(self) -> None:
        task = self._supervisor
        if task is not None and task.done():
            cause = None if task.cancelled() else task.exception()
            raise AssertionError("the rig stopped") from cause

    def unsettled(self) -> str | None:
        return settled.unsettled(self.live(), self.server, self.fabric)

    def settled(self) -> bool:
        return self.unsettled() is None

    async def settle(self, timeout: float = PATIENCE) -> None:
        await self.until_none(self.unsettled, timeout)

    # -- VMs -----------------------------------------------------------------------------------
    async def boot(self, *vms: VmPort) -> None:
        """Boot VMs (one OVSDB transaction); wait until every table shows them up, settled."""
        self.fabric.boot(*vms)
        await self.until_none(lambda: self._not_shown(vms))
        await self.settle()

    async def arrive(self, vm: VmPort) -> None:
        """A live migration's destination port comes up; until every table shows the VM there."""
        self.fabric.arrive(vm)
        await self.until_none(lambda: self._not_shown((vm,)))

    async def live_migrate(self, vm: VmPort, to: VmPort) -> None:
        """A VMM's live migration as the switches see it (`Fabric.migrate`); until every
        table shows the VM at `to`, settled."""
        self.fabric.migrate(vm, to)
        await self.until_none(lambda: self._not_shown((to,)))
        await self.settle()

    def _not_shown(self, vms: tuple[VmPort, ...]) -> str | None:
        for m in self.live():
            for vm in vms:
                rec = m.core.entry(vm.mac)
                where = None if rec is None else (rec.loc.ovs, rec.loc.port, rec.loc.link_up)
                if where != (vm.switch, vm.port, True):
                    return f"{m.id} shows {vm.mac} at {where}, not up on {vm.switch}/{vm.port}"
        return None


def _migrations(core: Controller) -> list[MigrationView]:
    return core.migrations() if core.leading else []


@contextlib.asynccontextmanager
async def running(tmp_path: Path, options: Options | None = None) -> AsyncIterator[Rig]:
    """A rig (module docstring), settled; stopped on the way out."""
    rig = Rig(tmp_path, options or Options())
    try:
        await rig.start()
        yield rig
    finally:
        await rig.stop()
