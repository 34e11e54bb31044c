"""One controller of the cluster, sans I/O: the sealed core the adapters drive.

Every state change enters through a method of `Controller` (port events from
its own OVS, records from the store of record, the leader's vPort syncs and
their answers, the VMM's notify and abort, mastership and membership, the
switches' flows read back, links, ticks), with the time as an argument, and
returns one `Output` (`messages`). Queries (`state.ControllerState`, which
it extends) read and change nothing. Input is checked here, before anything
is written: a refused input raises a `CoreError` and leaves the state as it
was.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from vportd.core.coordinator import (
    Coordinator,
    Decision,
    Started,
    decided,
)
from vportd.core.errors import MigrationConflict, UnknownSwitch
from vportd.core.flaps import MoveTimes
from vportd.core.flow import Flow
from vportd.core.messages import (
    DowntimeReport,
    EventKind,
    MigrationView,
    Notified,
    NotifyRequest,
    Output,
    PortEvent,
    Send,
    SyncAnswer,
    SyncComplete,
    SyncRefused,
    VPortSync,
    Write,
)
from vportd.core.model import Phase, VPortRecord, parse_mac
from vportd.core.state import ControllerState
from vportd.core.topology import Link
from vportd.core.tunnels import TunnelEndpoint


class Controller(ControllerState):
    """One controller: its inputs change its state (`ControllerState`), each
    returning one `Output`."""

    # == inputs =============================================================
    # -- topology ----------------------------------------------------------
    def switch_seen(self, name: str, dpid: int) -> bool:
        """A switch named by its OVSDB bridge; whether it is new (or renumbered)."""
        if name in self._topology and self._topology.dpid(name) == dpid:
            return False
        self._topology.add_switch(name, dpid)
        return True

    def links_are(self, links: Iterable[Link]) -> Output[None]:
        """The inter-switch links known now (declared, discovered, configured)."""
        wanted = frozenset(x for x in links if x.a in self._topology and x.b in self._topology)
        if wanted == self._links:
            return Output()
        for link in self._links - wanted:
            self._topology.remove_link(link.a, link.a_port)
        for link in wanted - self._links:
            self._topology.add_link(link.a, link.a_port, link.b, link.b_port)
        self._links = wanted
        out: Output[None] = Output()
        for switch in sorted(self._read):
            out.flow_mods += self._flows.sync_switch(switch, self._table.all_records())
        return out

    def tunnels_are(self, ends: Iterable[TunnelEndpoint]) -> Output[None]:
        """The overlay hosts' tunnel endpoints known now (`core.tunnels`)."""
        known = [e for e in ends if e.host in self._topology]
        if not self._tunnels.set(known):
            return Output()
        out: Output[None] = Output()
        for switch in sorted(self._read):
            out.flow_mods += self._flows.sync_switch(switch, self._table.all_records())
        return out

    # -- membership, leadership, mastership ---------------------------------
    def members_are(self, members: Iterable[str]) -> None:
        self._cluster.members = sorted({*members, self.me})

    def leader_is(self, leader: str | None) -> None:
        """Who leads now; a controller that no longer does stops coordinating."""
        self._cluster.leader = leader
        if leader != self.me:
            self._coordinator = None

    def lead(self, now: float, moves: Iterable[MoveTimes] = ()) -> None:
        """Become the leader; take over the migrations the table shows as open, and
        the VMs' recent moves (`moves`, from the store: flap damping goes on)."""
        if self._coordinator is None:
            self._coordinator = Coordinator(self.me, self._timeouts, self._history, self._flaps)
            self._coordinator.adopt(self._table, now)
            self._coordinator.restore_moves(moves)
        self._cluster.leader = self.me

    def step_down(self) -> None:
        self._coordinator = None
        if self._cluster.leader == self.me:
            self._cluster.leader = None

    def gain_switch(self, switch: str, ports: Sequence[PortEvent], now: float) -> Output[None]:
        """We master `switch` now; `ports` are its VM ports as its OVSDB shows them.

        Entries that place a VM on it while its OVS shows no such port (removed
        while nobody mastered it) are corrected, as the master of a switch does;
        a migration whose source port went meanwhile is completed.
        """
        self._topology.require(switch)
        self._cluster.masters[switch] = self.me
        self._table.own(switch)
        self._flows.master(switch)
        out: Output[None] = Output()
        for ev in ports:
            out.absorb(self.port_event(ev, now))
        for rec in [r for r in self._table if r.loc.ovs == switch]:
            change = self._table.reconcile(rec.vm)
            if change is not None:
                out.absorb(self._publish(change, now))
        for change in self._table.sources_gone(switch):
            out.absorb(self._publish(change, now))
        return out

    def switch_down(self, switch: str, now: float) -> Output[None]:
        """A switch we master has been unreachable (no OpenFlow channel) for long:
        its VM ports count as down until it is back (`switch_back`)."""
        self._require_mastered(switch)
        out: Output[None] = Output()
        for change in self._table.switch_down(switch):
            out.absorb(self._publish(change, now))
        return out

    def switch_back(self, switch: str, ports: Sequence[PortEvent], now: float) -> Output[None]:
        """An unreachable switch we master is back: `ports` as its OVSDB shows them now."""
        there = {(ev.port, ev.mac) for ev in ports}
        gone = [
            replace(f, kind=EventKind.DELETE)
            for f in self._table.ports_on(switch)
            if (f.port, f.mac) not in there
        ]
        out: Output[None] = Output()
        for ev in [*gone, *ports]:
            out.absorb(self.port_event(ev, now))
        return out

    def master_is(self, switch: str, master: str | None) -> None:
        """Another controller (or none, for now) masters `switch`: we do not manage it."""
        if self._cluster.masters.get(switch) == self.me and master != self.me:
            self._table.release(switch)
            self._flows.release(switch)
            self._read.discard(switch)
        if master is None:
            self._cluster.masters.pop(switch, None)
        else:
            self._cluster.masters[switch] = master

    # -- a switch's flows ----------------------------------------------------
    def flows_read(self, switch: str, flows: Iterable[Flow]) -> Output[None]:
        """What a switch we master holds, read back: the flow mods that correct it."""
        self._require_mastered(switch)
        self._flows.set_installed(switch, flows)
        self._read.add(switch)
        return Output(flow_mods=self._flows.sync_switch(switch, self._table.all_records()))

    def flows_held(self, switch: str, flows: Iterable[Flow]) -> None:
        """Believe what the switch holds after it refused flow mods (nothing is re-sent:
        a refused flow would be refused again; the next change of those flows retries)."""
        self._require_mastered(switch)
        self._flows.set_installed(switch, flows)

    def switch_gone(self, switch: str) -> None:
        """The switch's connection is gone: what it holds is read again when it is back."""
        self._read.discard(switch)

    # -- port state ----------------------------------------------------------
    def port_event(self, ev: PortEvent, now: float) -> Output[None]:
        """An event of our own OVS (claims 2, 4, 5); ignored unless we master the switch."""
        if self._cluster.masters.get(ev.ovs) != self.me:
            return Output()
        ev = self._checked(ev)
        change = self._table.port_event(ev)
        return Output() if change is None else self._publish(change, now)

    def vm_announced(self, ovs: str, port: int, mac: str, now: float) -> Output[None]:
        """A RARP or gratuitous ARP from `mac` arrived on `ovs` port `port`.

        A frame that entered by an inter-switch link was relayed from another
        switch: the VM, still running at its source, broadcasts (an ARP for a
        peer) and the flood crosses the destination, whose arrival flow copies
        it here. It says nothing of where the VM runs.
        """
        self._topology.require(ovs)
        if self._topology.is_link(ovs, port):
            return Output()
        change = self._table.vm_announced(ovs, port, parse_mac(mac))
        return Output() if change is None else self._publish(change, now)

    def stored(self, rec: VPortRecord, now: float) -> Output[None]:
        """A record from the store of record (claims 1, 3 and 5): merged into the table."""
        return self._merged(rec, now)

    def restored(self, rec: VPortRecord, now: float) -> Output[None]:
        """The store's entry of a VM for which our leader record was never written.

        We applied that record to our table when we decided it (`_decide`); the
        store never held it and no peer saw it (persist before send), so the
        store's entry replaces ours, and our own OVS corrects it where it must.
        """
        restored = self._table.restore(rec)
        return Output() if restored is None else self._settled(restored, now)

    # -- the handshake ---------------------------------------------------------
    def vport_sync(self, msg: VPortSync, now: float) -> Output[SyncAnswer]:
        """Claims 1 and 6: apply the leader's entry; the reply is sync complete (or why not).

        The reply's promise covers the output's flow mods (the destination's
        pre-installed arrival flow among them): adapters barrier them first.
        They hold the VM's flows on our switches even when the entry came from
        the store first: the promise does not lean on earlier outputs.
        """
        out: Output[SyncAnswer] = Output()
        out.absorb(self._merged(msg.record, now))
        made = {(m.switch, m.flow.key) for m in out.flow_mods}
        out.flow_mods += [
            m for m in self._flows.held_for(msg.record.vm) if (m.switch, m.flow.key) not in made
        ]
        conflict = self._sync_conflict(msg.record)
        vm = msg.record.vm
        out.reply = (
            SyncComplete(msg.migration_id, vm, self.me)
            if conflict is None
            else SyncRefused(msg.migration_id, vm, self.me, conflict)
        )
        return out

    def sync_answered(self, answer: SyncAnswer, now: float) -> Output[None]:
        """A controller's answer to our vPort sync (ignored if we no longer lead)."""
        coordinator = self._coordinator
        if coordinator is None:
            return Output()
        if isinstance(answer, SyncComplete):
            return self._decide(coordinator.sync_complete(answer, now), now)
        return self._decide(coordinator.sync_refused(answer, self._table, now), now)

    def notify(self, request: NotifyRequest, now: float) -> Output[Notified]:
        """Claim 6: the VMM's migration notify; `Notified` says whether it is new."""
        coordinator = self._leading()
        if not self._aware:
            raise MigrationConflict(
                "migration awareness is switched off (migration.aware = false): "
                "this cluster takes no migration notify"
            )
        mac = parse_mac(request.vm)
        src = self._topology.resolve(request.source)
        dst = self._topology.resolve(request.destination)
        checked = NotifyRequest(mac, src, dst)
        view, started = coordinator.notify(self._table, self._cluster, checked, now)
        out: Output[Notified] = Output(reply=Notified(view, started is not None))
        if started is not None:
            out.absorb(self._start(started, now))
        return out

    def _start(self, started: Started, now: float) -> Output[None]:
        """The migration's record to the store, its syncs to the other controllers
        awaited, and our own sync applied here (we may be one of them)."""
        sync = VPortSync(started.record, started.migration_id, self.me)
        out = self._decide(Decision(writes=[decided(started.record)]), now)
        out.messages += [Send(c, sync) for c in sorted(started.awaiting) if c != self.me]
        if self.me in started.awaiting:
            answer = self._sync_conflict(sync.record)
            reply: SyncAnswer = (
                SyncComplete(sync.migration_id, sync.record.vm, self.me)
                if answer is None
                else SyncRefused(sync.migration_id, sync.record.vm, self.me, answer)
            )
            out.absorb(self.sync_answered(reply, now))
        return out

    def abort(self, migration_id: str, now: float) -> Output[MigrationView]:
        coordinator = self._leading()
        decision = coordinator.abort(migration_id, self._table, now)
        out: Output[MigrationView] = Output()
        out.absorb(self._decide(decision, now))
        out.reply = coordinator.get(migration_id).view()
        return out

    def downtime_reported(self, migration_id: str, report: DowntimeReport) -> Output[MigrationView]:
        """What a VMM or the lab measured of a migration's traffic, kept with it (leader only)."""
        migration = self._leading().downtime(migration_id, report)
        return Output(reply=migration.view())

    def tick(self, now: float) -> Output[None]:
        if self._coordinator is None:
            return Output()
        return self._decide(self._coordinator.tick(self._table, now), now)

    # -- how inputs change the table -------------------------------------------
    def _checked(self, ev: PortEvent) -> PortEvent:
        self._topology.require(ev.ovs)
        mac = parse_mac(ev.mac)
        return ev if mac == ev.mac else replace(ev, mac=mac)

    def _publish(self, change: Write, now: float) -> Output[None]:
        """Claim 5 (and 2): apply to our switches and write it to the store of record."""
        out = self._applied(change.record, now)
        out.writes.insert(0, change)
        return out

    def _applied(self, rec: VPortRecord, now: float) -> Output[None]:
        out: Output[None] = Output(flow_mods=self._flows.update_vm(rec))
        if self._coordinator is not None and rec.mig is not None:  # (observe needs a mark)
            decision = self._coordinator.observe(rec, self._table, now)
            if decision is not None:
                out.absorb(self._decide(decision, now))
        return out

    def _merged(self, rec: VPortRecord, now: float) -> Output[None]:
        """Apply a copy of an entry, then correct it where our own OVS says otherwise."""
        merged = self._table.apply_copy(rec)
        if not merged:  # None: nothing new; False: a late copy, what we hold is newer
            return Output()
        return self._settled(merged, now)

    def _settled(self, rec: VPortRecord, now: float) -> Output[None]:
        """The flows of a new entry, corrected where our own OVS says otherwise."""
        out = self._applied(rec, now)
        correction = self._table.reconcile(rec.vm)
        if correction is not None:
            out.absorb(self._publish(correction, now))
        return out

    def _decide(self, decision: Decision, now: float) -> Output[None]:
        """The leader's decision: its records written and applied here first."""
        out: Output[None] = Output(
            writes=list(decision.writes), answers=list(decision.answers), moves=decision.moves
        )
        for write in decision.writes:
            out.absorb(self._merged(write.record, now))
        return out

    def _sync_conflict(self, sync: VPortRecord) -> str | None:
        """Why the migration the leader syncs cannot go on, as our entry shows it.

        Not "our entry is newer than the sync": a duplicate sync, or one that
        arrives after the VM's port appeared at the destination, is applied
        already. What stops a migration is a newer migration of the VM, or the
        VM having moved since the leader looked: its activation would not
        outrank where the VM is now.
        """
        mark, held = sync.mig, self._table.record(sync.vm)
        if mark is None or held is None or held.mig is None:
            return None
        if held.mig.id != mark.id:
            return f"VM {sync.vm} is in a newer migration, {held.mig.id}"
        if held.mig.phase >= Phase.ACTIVATED:
            return None
        if held.loc.seq >= mark.seq:
            return f"VM {sync.vm} moved since (seq {held.loc.seq}, the migration has {mark.seq})"
        return None

    def _require_mastered(self, switch: str) -> None:
        if self._cluster.masters.get(switch) != self.me:
            raise UnknownSwitch(f"OVS {switch!r} is not mastered by {self.me}")
