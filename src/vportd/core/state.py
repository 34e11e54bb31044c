"""A controller's state, and the queries that read it (`ControllerState`).

`Controller` extends it with the inputs; queries read and change nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from itertools import islice

from vportd.core.compiler import FlowCompiler
from vportd.core.coordinator import Coordinator, History, Timeouts
from vportd.core.errors import NotLeader
from vportd.core.flaps import FlapLimit
from vportd.core.flow import Flow
from vportd.core.membership import Membership
from vportd.core.messages import MigrationView
from vportd.core.model import VPortRecord, parse_mac
from vportd.core.segments import SegmentMap
from vportd.core.table import Conflict, VPortTable
from vportd.core.topology import Link, Topology
from vportd.core.tunnels import TunnelEndpoint, Tunnels


@dataclass(frozen=True, slots=True)
class SwitchInfo:
    """A switch as the core knows it: its name, datapath id and master (None: nobody)."""

    name: str
    dpid: int
    master: str | None


class ControllerState:
    """What one controller holds (its table, flows, topology, cluster view, and the
    coordinator while it leads), and the queries on it."""

    def __init__(
        self,
        me: str,
        timeouts: Timeouts | None = None,
        *,
        aware: bool = True,
        history: History | None = None,
        flaps: FlapLimit | None = None,
        segments: SegmentMap | None = None,
    ) -> None:
        self.me = me
        self.segments = segments or SegmentMap()
        self._history = history
        self._flaps = flaps  # None: no flap damping
        self._aware = aware
        self._topology = Topology()
        self._cluster = Membership([me])
        self._timeouts = timeouts or Timeouts()
        self._table = VPortTable(me)
        self._table.aware = aware
        self._tunnels = Tunnels()
        self._flows = FlowCompiler(self._topology, tunnels=self._tunnels, segments=self.segments)
        self._coordinator: Coordinator | None = None
        # Mastered switches whose flows were read back: the compiler knows what they hold.
        self._read: set[str] = set()
        self._links: frozenset[Link] = frozenset()

    def _leading(self) -> Coordinator:
        if self._coordinator is None:
            raise NotLeader(f"controller {self.me} is not the leader: {self._who_leads()}")
        return self._coordinator

    def _who_leads(self) -> str:
        leader = self._cluster.leader
        if leader is None:
            return "the cluster has no leader at the moment"
        if leader == self.me:  # the store still names our previous leadership (a restart)
            return "its previous leadership is ending and a new leader is being elected"
        return f"{leader} leads"

    # == queries ============================================================
    @property
    def leader(self) -> str | None:
        return self._cluster.leader

    @property
    def leading(self) -> bool:
        return self._coordinator is not None

    @property
    def members(self) -> list[str]:
        return list(self._cluster.members)

    def master_of(self, switch: str) -> str | None:
        return self._cluster.masters.get(switch)

    def mastered(self, switch: str) -> bool:
        return self._cluster.masters.get(switch) == self.me

    def switches(self) -> list[SwitchInfo]:
        """Every known switch, by name."""
        topology, masters = self._topology, self._cluster.masters
        return [
            SwitchInfo(name, topology.dpid(name), masters.get(name))
            for name in sorted(topology.switches)
        ]

    def knows_switch(self, name: str) -> bool:
        return name in self._topology

    def switch_of(self, dpid: int) -> str | None:
        """The switch with datapath id `dpid`, if OVSDB has named it."""
        return self._topology.named(dpid)

    def dpid(self, switch: str) -> int:
        return self._topology.dpid(switch)

    def is_link(self, switch: str, port: int) -> bool:
        return self._topology.is_link(switch, port)

    def tunnels(self) -> list[TunnelEndpoint]:
        """The overlay hosts' tunnel endpoints in use."""
        return list(self._tunnels)

    def links(self) -> frozenset[Link]:
        """The inter-switch links in use (of the switches known)."""
        return self._links

    def vports(self) -> list[VPortRecord]:
        """Every present entry, by MAC (claim 1: this controller holds them all)."""
        return sorted(self._table, key=lambda r: r.vm)

    def vport(self, vm: str) -> VPortRecord:
        """The VM's entry; raises InvalidMac or UnknownVM."""
        return self._table.require(parse_mac(vm))

    def entry(self, vm: str) -> VPortRecord | None:
        """The VM's entry, None if it has none (or was removed)."""
        return self._table.get(vm)

    def record(self, vm: str) -> VPortRecord | None:
        """The VM's entry including a removal's tombstone, as the store holds it too."""
        return self._table.record(vm)

    def records(self) -> list[VPortRecord]:
        """Every entry, tombstones included."""
        return list(self._table.all_records())

    def conflicts(self) -> list[Conflict]:
        """MACs up on a port of a switch we master while their entry's port is up too."""
        return self._table.conflicts()

    def vport_count(self) -> int:
        return len(self._table)

    def migrations(self, state: str | None = None, limit: int | None = None) -> list[MigrationView]:
        """The migrations the leader holds, oldest first; raises NotLeader elsewhere.

        Only those in `state`, if given; only the newest `limit` of them, if given.
        """
        held = self._leading().migrations.values()
        if state is None and limit is None:
            return [m.view() for m in held]
        wanted = (m for m in reversed(held) if state is None or m.state == state)
        return [m.view() for m in islice(wanted, limit)][::-1]

    def migration(self, migration_id: str) -> MigrationView:
        return self._leading().get(migration_id).view()

    def migration_counts(self) -> Counter[str]:
        """How many migrations the leader holds, by state (none on a follower)."""
        if self._coordinator is None:
            return Counter()
        return Counter(str(m.state) for m in self._coordinator.migrations.values())

    def open_migrations(self) -> int:
        return 0 if self._coordinator is None else len(self._coordinator.active())

    def installed(self, switch: str) -> list[Flow]:
        """The flows the compiler believes `switch` holds (empty unless we master it)."""
        held = self._flows.installed.get(switch)
        return [] if held is None else list(held.values())
