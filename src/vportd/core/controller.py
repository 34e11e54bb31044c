"""One controller of the cluster, sans I/O: table + flow compiler (+ coordinator when leading).

Inputs are port events from the OVS it masters, messages from its peers, the
VMM's requests (when it leads) and the time; outputs are effects: flow mods for
its switches, messages for its peers, answers for the VMM. Adapters validate
nothing twice: the checks here are the core's edge.
"""

from __future__ import annotations

from dataclasses import replace

from vportd.core.compiler import FlowCompiler
from vportd.core.coordinator import Coordinator, Migration, Timeouts
from vportd.core.errors import MigrationConflict, NotLeader, UnknownSwitch
from vportd.core.flow import FlowMod
from vportd.core.membership import Membership
from vportd.core.messages import (
    Effect,
    MigrationView,
    PeerMessage,
    PortEvent,
    PortEventSync,
    Send,
    SyncComplete,
    SyncRefused,
    VPortSync,
)
from vportd.core.model import Phase, VPortRecord, parse_mac
from vportd.core.table import Change, VPortTable
from vportd.core.topology import Topology
from vportd.core.wire import NotifyRequest


class Controller:
    def __init__(
        self,
        me: str,
        topology: Topology,
        cluster: Membership,
        timeouts: Timeouts | None = None,
        *,
        aware: bool = True,
    ) -> None:
        self.me = me
        self.aware = aware
        self.topology = topology
        self.cluster = cluster
        self.timeouts = timeouts or Timeouts()
        self.table = VPortTable(me)
        self.table.aware = aware
        self.flows = FlowCompiler(topology, cluster.switches_of(me))
        self.coordinator: Coordinator | None = None

    # -- events from this controller's OVS -------------------------------
    def port_event(self, ev: PortEvent, now: float) -> list[Effect]:
        ev = self._checked(ev)
        change = self.table.port_event(ev)
        return [] if change is None else self._publish(change, now)

    def vm_announced(self, ovs: str, port: int, mac: str, now: float) -> list[Effect]:
        """A RARP or gratuitous ARP from `mac` arrived on `ovs` port `port`.

        A frame that entered by an inter-switch link was relayed from another
        switch: the VM, still running at its source, broadcasts (an ARP for a
        peer) and the flood crosses the destination, whose arrival flow copies
        it here. It says nothing of where the VM runs.
        """
        self.topology.require(ovs)
        if self.topology.is_link(ovs, port):
            return []
        change = self.table.vm_announced(ovs, port, parse_mac(mac))
        return [] if change is None else self._publish(change, now)

    def _checked(self, ev: PortEvent) -> PortEvent:
        self.topology.require(ev.ovs)
        mac = parse_mac(ev.mac)
        return ev if mac == ev.mac else replace(ev, mac=mac)

    def _publish(self, change: Change, now: float) -> list[Effect]:
        """Claim 5 (and 2): apply to our switches, then sync to every other controller.

        The change is the message (a `PortEventSync` from us), shared by its receivers.
        """
        effects = self._applied(change.record, now)
        me = self.me
        effects += [Send(peer, change) for peer in self.cluster.members if peer != me]
        return effects

    def _applied(self, rec: VPortRecord, now: float) -> list[Effect]:
        # (`update_vm` returns a list of its own: extended, not copied.)
        effects: list[Effect] = self.flows.update_vm(rec)  # type: ignore[assignment]
        if self.coordinator is not None and rec.mig is not None:  # (observe needs a mark)
            effects += self.coordinator.observe(rec, self.cluster, self.table, now)
        return effects

    # -- messages from peers ---------------------------------------------
    def receive(self, msg: PeerMessage, now: float) -> list[Effect]:
        if isinstance(msg, VPortSync):
            return self._vport_sync(msg, now)
        if isinstance(msg, PortEventSync):
            return self._merge(msg.record, now)  # claims 3 and 5
        coordinator = self.coordinator
        if coordinator is None:
            return []  # an answer for a leader we no longer are
        if isinstance(msg, SyncComplete):
            return coordinator.sync_complete(msg, now)
        return coordinator.sync_refused(msg, self.cluster, self.table, now)

    def _merge(self, rec: VPortRecord, now: float) -> list[Effect]:
        merged = self.table.apply_copy(rec)
        # None: nothing new; False: a late copy, what we hold is newer.
        return self._applied_merge(merged, now) if merged else []

    def _applied_merge(self, rec: VPortRecord, now: float) -> list[Effect]:
        """Apply a peer's entry, then correct it where our own OVS says otherwise."""
        effects = self._applied(rec, now)
        correction = self.table.reconcile(rec.vm)
        if correction is not None:
            effects += self._publish(correction, now)
        return effects

    def _vport_sync(self, msg: VPortSync, now: float) -> list[Effect]:
        """Claims 1 and 6: apply the leader's entry, then answer sync complete.

        The answer comes after the flow mods (the destination's pre-installed
        arrival flow among them): adapters barrier them before sending it.
        """
        vm = msg.record.vm
        # Falsy: we hold it already (a duplicate), or something newer.
        merged = self.table.apply_copy(msg.record)
        effects = self._applied_merge(merged, now) if merged else []
        if msg.answer:
            conflict = self._sync_conflict(msg.record)
            answer: SyncComplete | SyncRefused = (
                SyncComplete(msg.migration_id, vm, self.me)
                if conflict is None
                else SyncRefused(msg.migration_id, vm, self.me, conflict)
            )
            effects.append(Send(msg.leader, answer))
        return effects

    def _sync_conflict(self, sync: VPortRecord) -> str | None:
        """Why the migration the leader syncs cannot go on, as our entry shows it.

        Not "our entry is newer than the sync": a duplicate sync, or one that
        arrives after the VM's port appeared at the destination, is applied
        already. What stops a migration is a newer migration of the VM, or the
        VM having moved since the leader looked: its activation would not
        outrank where the VM is now.
        """
        mark, held = sync.mig, self.table.record(sync.vm)
        if mark is None or held is None or held.mig is None:
            return None
        if held.mig.id != mark.id:
            return f"VM {sync.vm} is in a newer migration, {held.mig.id}"
        if held.mig.phase >= Phase.ACTIVATED:
            return None
        if held.loc.seq >= mark.seq:
            return f"VM {sync.vm} moved since (seq {held.loc.seq}, the migration has {mark.seq})"
        return None

    # -- the VMM's requests (leader only) --------------------------------
    def _leading(self) -> Coordinator:
        if self.coordinator is None:
            raise NotLeader(f"controller {self.me} is not the leader ({self.cluster.leader})")
        return self.coordinator

    def notify(
        self, vm: str, source: str, destination: str, now: float
    ) -> tuple[MigrationView, bool, list[Effect]]:
        """Claim 6: the VMM's migration notify. The view is `preparing` until answered."""
        coordinator = self._leading()
        if not self.aware:
            raise MigrationConflict(
                "migration awareness is switched off (migration.aware = false): "
                "this cluster takes no migration notify"
            )
        mac = parse_mac(vm)
        src = self.topology.resolve(source)
        dst = self.topology.resolve(destination)
        return coordinator.notify(self.table, self.cluster, NotifyRequest(mac, src, dst), now)

    def abort(self, migration_id: str, now: float) -> tuple[MigrationView, list[Effect]]:
        return self._leading().abort(migration_id, self.cluster, self.table, now)

    def migration(self, migration_id: str) -> Migration:
        return self._leading().get(migration_id)

    def tick(self, now: float) -> list[Effect]:
        if self.coordinator is None:
            return []
        return self.coordinator.tick(self.cluster, self.table, now)

    def lead(self, now: float) -> None:
        """Become the leader; take over the migrations the table shows as open."""
        if self.coordinator is None:
            self.coordinator = Coordinator(self.me, self.timeouts)
            self.coordinator.adopt(self.table, now)
        self.cluster.leader = self.me

    def step_down(self) -> None:
        self.coordinator = None

    # -- switches --------------------------------------------------------
    def master_switch(self, switch: str, now: float) -> list[Effect]:
        """We master `switch` now; its ports must have been fed as port events first.

        Entries that place a VM on it while its OVS shows no such port (removed
        while nobody mastered it) are corrected, as the master of a switch does.
        """
        if switch not in self.topology:
            raise UnknownSwitch(f"unknown OVS {switch!r}")
        self.cluster.masters[switch] = self.me
        self.table.own(switch)
        self.flows.master(switch)
        effects: list[Effect] = []
        for rec in [r for r in self.table if r.loc.ovs == switch]:
            change = self.table.reconcile(rec.vm)
            if change is not None:
                effects += self._publish(change, now)
        return effects

    def release_switch(self, switch: str, master: str | None) -> None:
        """Another controller (or none, for now) masters `switch`: stop managing it."""
        if master is None:
            self.cluster.masters.pop(switch, None)
        else:
            self.cluster.masters[switch] = master
        self.table.release(switch)
        self.flows.release(switch)

    def switch_connected(self, switch: str) -> list[FlowMod]:
        """Full reconcile of one switch against what the compiler knows is installed."""
        if switch not in self.topology:
            raise UnknownSwitch(f"unknown OVS {switch!r}")
        self.flows.master(switch)
        return self.flows.sync_switch(switch, self.table.all_records())
