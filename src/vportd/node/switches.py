"""The switches connected to this controller: their names, roles, flow mods and adoption.

A connection is known by its datapath id; OVSDB names it (the bridge), and a
connection whose datapath id OVSDB has not shown yet waits for that. Every
connected switch is told our role (OpenFlow role request, with the
mastership's generation id); one we master is adopted: its ports and flows
are read back, flows vportd did not make are removed, and only the
difference to what the core wants is sent (`Node.reconcile`). Flow mods go to
adopted switches only; a switch that is not adopted (yet) is reconciled when
it is. LLDP's punt flow is ours, kept out of the core's view.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from vportd.core.errors import CoreError
from vportd.core.flow import CLASSIFY_TABLE, Flow, FlowCommand, FlowMod, Match, ToController
from vportd.southbound.openflow.connection import SentMods, SwitchConnection
from vportd.southbound.openflow.errors import FlowModsFailed, OpenFlowError, SwitchClosed
from vportd.southbound.openflow.wire import Role

log = logging.getLogger("vportd.switches")

Confirm = Callable[[], Awaitable[None]]  # waits until queued flow mods are confirmed

# LLDP probes to the controller (802.1AB's nearest-bridge address; never forwarded).
COOKIE_LLDP = 0x05 << 56
PRIO_LLDP = 300
LLDP_PUNT = Flow(
    CLASSIFY_TABLE, PRIO_LLDP, Match(eth_dst="01:80:c2:00:00:0e"), (ToController(),), COOKIE_LLDP
)


class Node(Protocol):
    """What adoption asks of the rest of the controller."""

    def mastered(self, switch: str) -> bool: ...

    def generation(self, switch: str) -> int | None:
        """The current mastership's generation id (None: alone, or nobody's yet)."""

    def reconcile(self, switch: str, flows: list[Flow]) -> list[FlowMod]:
        """What the switch holds, read back: the flow mods that correct it."""

    def believe(self, switch: str, flows: list[Flow]) -> None:
        """What the switch holds after it refused flow mods."""

    def gone(self, switch: str) -> None:
        """An adopted switch's connection is gone."""

    def role_lost(self, switch: str, conn: SwitchConnection) -> None:
        """The switch took us for a slave: claim the role the cluster says is ours again."""


@dataclass
class SwitchStats:
    """What this controller did to its switches: for tests, benchmarks and metrics."""

    flow_mods_sent: int = 0  # every flow mod written to a switch, of any kind
    foreign_flows_deleted: int = 0  # of those: deletes of flows vportd did not make
    reconciles: Counter[str] = field(default_factory=Counter)  # adoptions done, per switch
    flows_confirmed_at: float | None = None  # clock time of the last barrier-confirmed mods


class Switches:
    def __init__(self, node: Node, *, lldp: bool, clock: Callable[[], float]) -> None:
        self.node = node
        self.clock = clock
        self.lldp = lldp
        self.stats = SwitchStats()
        self.connected: dict[str, SwitchConnection] = {}  # every named connection
        self.adopted: dict[str, SwitchConnection] = {}  # those we master, flows read
        self._waiting: dict[int, SwitchConnection] = {}  # by dpid, for OVSDB to name

    # -- connections -------------------------------------------------------
    def arrived(self, conn: SwitchConnection, name: str | None) -> str | None:
        """A connection that finished its handshake; the name, once OVSDB gave one."""
        assert conn.dpid is not None
        if name is None:
            log.info("datapath %016x connected; waiting for OVSDB to name it", conn.dpid)
            self._waiting[conn.dpid] = conn
            return None
        self._name(name, conn)
        return name

    def named(self, name: str, dpid: int) -> SwitchConnection | None:
        """OVSDB named datapath `dpid`: the connection that was waiting for it, if any."""
        conn = self._waiting.pop(dpid, None)
        if conn is None or conn.closed:
            return None
        self._name(name, conn)
        return conn

    def _name(self, name: str, conn: SwitchConnection) -> None:
        old = self.connected.get(name)
        if old is not None and old is not conn:
            old.close("replaced by a new connection from the same switch")
        self.connected[name] = conn

    def left(self, conn: SwitchConnection, reason: str) -> None:
        if conn.dpid is not None and self._waiting.get(conn.dpid) is conn:
            del self._waiting[conn.dpid]  # (else one is kept per datapath id ever seen)
        for name, known in list(self.connected.items()):
            if known is conn:
                del self.connected[name]
                if self.adopted.pop(name, None) is not None:
                    self.node.gone(name)
                log.warning("switch %s disconnected: %s", name, reason)

    def name_of(self, conn: SwitchConnection) -> str | None:
        """The name of an adopted switch's connection."""
        return next((n for n, c in self.adopted.items() if c is conn), None)

    def released(self, name: str) -> SwitchConnection | None:
        """We master `name` no more: its live connection (to be told so), if any."""
        conn = self.adopted.pop(name, None)
        return conn if conn is not None and not conn.closed else None

    # -- roles and adoption ------------------------------------------------
    async def take_role(self, name: str, conn: SwitchConnection, role: Role) -> None:
        """Adopt the switch (MASTER, if we still master it) or tell it we are a SLAVE.

        A switch that fails it is closed, to be adopted again when it reconnects."""
        try:
            if role is Role.SLAVE:
                await self._claim(name, conn, Role.SLAVE)
            elif self.node.mastered(name):
                await self._adopt(name, conn)
        except SwitchClosed as err:
            log.warning("%s closed while being adopted: %s", name, err)
        except (TimeoutError, OpenFlowError) as err:
            conn.close(f"adoption failed: {err!r}")
        except CoreError as err:  # mastership moved on while we read the switch
            log.info("%s: not adopted: %s", name, err.detail)

    async def _adopt(self, name: str, conn: SwitchConnection) -> None:
        """Master the switch: read its flows, correct only the difference.

        The switch is adopted only once its flows are read: until then, flow
        mods for it are left to this reconcile."""
        generation = await self._claim(name, conn, Role.MASTER)
        await conn.read_ports()  # as a slave it heard of no port change (OFPT_SET_ASYNC)
        dump = await conn.dump()
        if not self.node.mastered(name) or self.node.generation(name) != generation:
            # The role granted belongs to a mastership that ended while we waited.
            log.info("%s: the mastership moved on meanwhile; not adopted", name)
            return
        self.adopted[name] = conn
        if dump.foreign:
            log.info("%s: removing %d flows vportd did not make", name, len(dump.foreign))
            self.stats.flow_mods_sent += len(dump.foreign)
            self.stats.foreign_flows_deleted += len(dump.foreign)
            await conn.delete_foreign(dump.foreign)
        held, punting = self._without_lldp_punt(dump.flows)
        mods = self.node.reconcile(name, held)
        if self.lldp and not punting:
            mods.append(FlowMod(name, FlowCommand.ADD, LLDP_PUNT))
        log.info("%s: reconciled, %d flows held, %d to correct", name, len(dump.flows), len(mods))
        await self._send(name, mods)
        self.stats.reconciles[name] += 1

    async def _claim(self, name: str, conn: SwitchConnection, role: Role) -> int | None:
        """Ask for `role` with the current mastership's generation; the generation asked with."""
        generation = self.node.generation(name)
        if generation is None:
            # Alone (the switch's default role, EQUAL, is all we need), or a slave
            # before any master: EQUAL receives no flow mods from us anyway.
            return None
        granted, gen = await conn.role_request(role, generation)
        log.info("%s: role %s (generation %d)", name, granted.name, gen)
        return generation

    def _without_lldp_punt(self, flows: list[Flow]) -> tuple[list[Flow], bool]:
        """The flows for the core, and whether our LLDP punt flow is among them.

        With LLDP off, a punt flow left from an earlier run stays in the
        core's view, which deletes it as a flow it does not want."""
        if not self.lldp or LLDP_PUNT not in flows:
            return flows, False
        return [f for f in flows if f != LLDP_PUNT], True

    # -- flow mods ---------------------------------------------------------------
    async def queue_mods(self, mods: Sequence[FlowMod]) -> Confirm:
        """Queue flow mods on every switch at once, each batch with a barrier behind it;
        what is returned waits for the barriers (one round trip in all)."""
        by_switch: dict[str, list[FlowMod]] = {}
        for mod in mods:
            by_switch.setdefault(mod.switch, []).append(mod)
        queued = await asyncio.gather(*(self._queue(n, batch) for n, batch in by_switch.items()))
        pending = [q for q in queued if q is not None]

        async def confirm() -> None:
            await asyncio.gather(*(self._confirm(*q) for q in pending))

        return confirm

    async def _send(self, name: str, batch: list[FlowMod]) -> None:
        queued = await self._queue(name, batch)
        if queued is not None:
            await self._confirm(*queued)

    async def _queue(
        self, name: str, batch: list[FlowMod]
    ) -> tuple[str, SwitchConnection, SentMods] | None:
        conn = self.adopted.get(name)
        if conn is None or conn.closed or not batch:
            return None  # reconciled when it is adopted (again)
        self.stats.flow_mods_sent += len(batch)
        try:
            return name, conn, await conn.queue_flow_mods(batch)
        except SwitchClosed as err:
            log.warning("%s: flow mods not sent (%s); reconciled when it is back", name, err)
            return None

    async def _confirm(self, name: str, conn: SwitchConnection, sent: SentMods) -> None:
        try:
            await sent.confirmed()
        except TimeoutError:
            # Not confirmed: what it holds is unknown. Reconnecting reconciles it.
            conn.close("flow mods not confirmed by a barrier in time")
        except SwitchClosed as err:
            log.warning("%s: flow mods not confirmed (%s); reconciled when it is back", name, err)
        except FlowModsFailed as err:
            if err.as_slave:
                self._demoted(name, conn, err)
                return
            log.error("%s: %s; reading back what it holds", name, err)
            await self._reread(name, conn)
        else:
            self.stats.flows_confirmed_at = self.clock()

    def _demoted(self, name: str, conn: SwitchConnection, err: FlowModsFailed) -> None:
        """The switch demoted us behind our back (IS_SLAVE): stop sending it flow mods and
        claim our role again, with the mastership's current generation."""
        log.warning("%s: %s; claiming our role again", name, err)
        if self.adopted.get(name) is conn:
            del self.adopted[name]
            self.node.gone(name)
        self.node.role_lost(name, conn)

    async def _reread(self, name: str, conn: SwitchConnection) -> None:
        """After refused flow mods: believe what the switch holds, not what we sent.

        Not a re-send: a flow the switch refuses would be refused again."""
        try:
            dump = await conn.dump()
        except (SwitchClosed, TimeoutError, OpenFlowError) as err:
            conn.close(f"flows not readable after refused flow mods: {err!r}")
            return
        held, _ = self._without_lldp_punt(dump.flows)
        if self.node.mastered(name):
            self.node.believe(name, held)
