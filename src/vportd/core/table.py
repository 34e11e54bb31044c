"""The vPort table every controller holds, and the rules of DESIGN §1.

Own-OVS port events (claims 2, 4, 5 and what we add) become new versions of an
entry; copies from the store and the leader (claims 1, 3, 5) are merged. Each
rule returns the `Change` to write to the store of record, from which every
other controller applies it, or None when the event changes nothing.
Every check runs before the table is written, so a refused event leaves the
table as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from vportd.core.claims import Conflict, PortClaims, failed_destination
from vportd.core.errors import UnknownVM
from vportd.core.messages import EventKind, PortEvent, Reason, Write
from vportd.core.model import Location, MigrationMark, Phase, VPortRecord

__all__ = ["Change", "Conflict", "VPortTable"]

_ACTIVATED = Phase.ACTIVATED  # (an enum member looked up by name costs more than the comparison)


def _live(rec: VPortRecord) -> MigrationMark | None:
    """The VM's migration, if it runs and the VM has not moved past it.

    A mark stays open on a controller until the leader's word closes it;
    meanwhile the VM may have been removed and started again, or rolled
    back, with a `seq` at or above the migration's own. Such a mark is
    stale: the migration's rules, whose writes carry the migration's `seq`,
    would write an entry older than the one held.
    """
    mig = rec.mig
    if mig is None or not rec.migrating:
        return None
    seq = rec.loc.seq
    if seq < mig.seq or (seq == mig.seq and mig.phase >= _ACTIVATED):
        return mig
    return None


# What an own-OVS rule changed: the record to write to the store of record, as
# it is (one object per own port event, not a change and then its write).
Change = Write


class VPortTable:
    """One controller's copy of the cluster-wide vPort list (claim 1)."""

    def __init__(self, me: str) -> None:
        self.me = me
        self._records: dict[str, VPortRecord] = {}
        self._present = 0  # how many of them are present (not tombstones): `len`, often asked
        # What our own OVS says: its ports per MAC, and the MACs contested.
        self._claims = PortClaims(self._records)
        # (Bound once: the rules ask for a MAC's ports all the time.)
        self._facts = self._claims.facts
        self._fact = self._claims.fact
        # Tombstone locations by version: a tombstone holds nothing but its version,
        # so removed VMs with the same (seq, rev, writer) share one object.
        self._gone: dict[tuple[int, int, str], Location] = {}
        # False: the naive baseline of the benchmark (no migration awareness).
        self.aware = True

    # -- reading ---------------------------------------------------------
    def get(self, vm: str) -> VPortRecord | None:
        """The VM's entry, or None if it has none (or was removed)."""
        rec = self._records.get(vm)
        return rec if rec is not None and rec.present else None

    def record(self, vm: str) -> VPortRecord | None:
        """The VM's entry including a removal tombstone."""
        return self._records.get(vm)

    def require(self, vm: str) -> VPortRecord:
        rec = self.get(vm)
        if rec is None:
            raise UnknownVM(f"no vPort for VM {vm}")
        return rec

    def __iter__(self) -> Iterator[VPortRecord]:
        return (r for r in self._records.values() if r.present)

    def __len__(self) -> int:
        return self._present

    def _put(self, rec: VPortRecord, held: VPortRecord | None) -> None:
        """Hold `rec` as the VM's entry in place of `held` (what was held), counting it."""
        self._present += rec.present - (held is not None and held.present)
        self._records[rec.vm] = rec

    def all_records(self) -> Iterator[VPortRecord]:
        return iter(self._records.values())

    def conflicts(self) -> list[Conflict]:
        """The MACs claimed by a port of our OVS while their owner's port is up."""
        return self._claims.conflicts()

    # -- peer updates (claims 1, 3, 5) -----------------------------------
    def apply_copy(self, rec: VPortRecord) -> VPortRecord | Literal[False] | None:
        """Join a copy from the store or the leader into ours; the new entry if anything
        changed, None for a duplicate, False for a copy older than ours (late copies
        are common in a busy cluster, and change nothing)."""
        mine = self._records.get(rec.vm)
        if mine is None:
            merged = rec
        else:
            merged = mine.merge(rec)
            if merged is mine:
                return False if rec != mine else None
        if merged.loc.ovs is None:
            merged = self._shared_tombstone(merged)
        self._put(merged, mine)
        return merged

    def restore(self, rec: VPortRecord) -> VPortRecord | None:
        """Take the store's entry as ours, whatever we hold: ours holds a leader's record
        that was never written (no one else saw it). The entry, if it changed."""
        held = self._records.get(rec.vm)
        if held == rec:
            return None
        self._put(rec, held)
        return rec

    def _tombstone(self, loc: Location) -> Location:
        """`loc.gone(self.me)`, one object per version."""
        key = (loc.seq, loc.rev + 1, self.me)
        gone = self._gone.get(key)
        if gone is None:
            gone = self._gone[key] = loc.gone(self.me)
        return gone

    def _shared_tombstone(self, rec: VPortRecord) -> VPortRecord:
        """A peer's tombstone, with our object for its location when we have one."""
        loc = rec.loc
        key = (loc.seq, loc.rev, loc.writer)
        held = self._gone.get(key)
        if held is None:
            # Shared from now on if it is bare (a peer's may keep the VM's ids).
            if loc == Location(None, None, None, False, *key):
                self._gone[key] = loc
            return rec
        if held is loc or held != loc:
            return rec
        return VPortRecord(rec.vm, held, rec.mig)

    # -- own OVS events (claims 2, 4, 5) ---------------------------------
    def port_event(self, ev: PortEvent) -> Change | None:
        if ev.kind is not EventKind.ADD and self.get(ev.mac) is None:
            if self._fact(ev.mac, ev.ovs, ev.port) is None:
                self._require_any(ev)  # a port we never heard of: refused
            # A port our OVS reported, while a peer's copy says the VM is gone:
            # what our OVS says now decides (see reconcile).
            self._claims.saw(ev)
            return self.reconcile(ev.mac)
        self._claims.saw(ev)
        if ev.kind is EventKind.ADD:
            change = self._port_added(ev)
        elif ev.kind is EventKind.MODIFY:
            change = self._port_modified(ev)
        else:
            change = self._port_deleted(ev)
        if ev.mac in self._claims.contested:
            self._claims.recheck(ev.mac)
        return change

    def _claimed(self, rec: VPortRecord, ev: PortEvent) -> Change | None:
        """The MAC came up on a port of ours the entry does not place it on.

        Moved, if its owner's port is down or gone (a move without a notify, as
        EVPN sees one); else a conflict: the owner keeps the entry.
        """
        if failed_destination(rec, ev.ovs):
            return None
        if self.aware and self._claims.contest(rec):
            return None
        return self._moved(rec, ev)

    def _handed_on(self, rec: VPortRecord) -> Change | None:
        """The owner's port goes down or away: a contested MAC's claimant takes it over."""
        claimant = self._claims.handed_on(rec)
        return None if claimant is None else self._moved(rec, claimant)

    def _port_added(self, ev: PortEvent) -> Change | None:
        rec = self._records.get(ev.mac)
        if rec is None or not rec.present:
            return self._create(ev, rec)
        if _live(rec) is not None:
            return self._arrive(rec, ev, activate=False)  # claim 4: stays up
        if rec.loc.ovs == ev.ovs and rec.loc.port in (None, ev.port):
            return self._refresh(rec, ev, rec.loc.link_up, EventKind.ADD)
        return None  # a second port with the VM's MAC: it counts once it is up

    def _create(self, ev: PortEvent, old: VPortRecord | None) -> Change:
        # Claim 5: a new entry is {not-migrating, down}; a tombstone's seq goes on.
        seq = 0 if old is None else old.loc.seq + 1
        loc = self._location(ev, link_up=False, seq=seq, rev=0)
        mig = None if old is None else old.mig
        return self._write(VPortRecord(ev.mac, loc, mig), EventKind.ADD, Reason.PORT)

    def _port_modified(self, ev: PortEvent) -> Change | None:
        rec = self._require_any(ev)
        if _live(rec) is not None:
            return self._arrive(rec, ev, activate=ev.link_up)  # claim 4: stays up
        if rec.loc.ovs == ev.ovs and rec.loc.port in (None, ev.port):
            if not ev.link_up:
                handed = self._handed_on(rec)
                if handed is not None:
                    return handed
            return self._refresh(rec, ev, ev.link_up, EventKind.MODIFY)  # claim 5
        return self._claimed(rec, ev) if ev.link_up else None

    def _port_deleted(self, ev: PortEvent) -> Change | None:
        rec = self._require_any(ev)
        mig = _live(rec)
        if mig is not None:
            if ev.ovs != mig.source:
                return None  # the destination tap went away: abort/timeout rolls back
            if mig.phase < _ACTIVATED and rec.loc.port not in (None, ev.port):
                return None  # another port on the source that carried the MAC
            return self._complete(rec, mig)
        if self.aware and (rec.loc.ovs != ev.ovs or rec.loc.port not in (None, ev.port)):
            return None  # not where the VM is: a stale or failed-destination port
        # (Unaware, a port delete is the VM leaving, wherever the entry places it.)
        handed = self._handed_on(rec)
        if handed is not None:
            return handed
        gone = VPortRecord(rec.vm, self._tombstone(rec.loc), rec.mig)
        return self._write(gone, EventKind.DELETE, Reason.VM_GONE)

    def sources_gone(self, ovs: str) -> list[Change]:
        """The source deletes we missed on `ovs`, a switch whose ports we have just read.

        While nobody mastered it, a migrating VM's source port may have gone: a
        migration that got as far as its destination port (or further), whose
        source shows no port with the VM's MAC, is completed now (claim 2).
        """
        changes = []
        for rec in list(self._records.values()):
            mig = rec.mig
            if mig is not None and mig.source == ovs:
                change = self._source_left(rec)
                if change is not None:
                    changes.append(change)
        return changes

    def _source_left(self, rec: VPortRecord) -> Change | None:
        """Complete a migration from a switch of ours that got as far as its destination
        port (or further) and whose source shows no port with the VM's MAC (claim 2)."""
        mig = _live(rec) if rec.present else None
        if mig is None or mig.source not in self._claims.own or mig.phase < Phase.ARRIVED:
            return None
        if any(f.ovs == mig.source for f in self._facts(rec.vm)):
            return None
        return self._complete(rec, mig)

    def vm_announced(self, ovs: str, port: int, mac: str) -> Change | None:
        """A RARP/GARP from the VM seen on `ovs` port `port`: it is active there.

        Only from the VM's port at the destination, once one is known (our OVS
        reported it, or the migration's mark names it): a frame from the VM's
        MAC that enters the destination by any other port is not the VM
        resuming there (a relayed broadcast from the source, a stray port).
        Before any is known, the announcement may beat the port's report.
        """
        rec = self.get(mac)
        if rec is None:
            return None
        mig = _live(rec)
        if mig is None:
            return None
        if ovs == mig.destination:
            known = {f.port for f in self._facts(mac) if f.ovs == ovs}
            if mig.dest_port is not None:
                known.add(mig.dest_port)
            if known and port not in known:
                return None
        ev = PortEvent(
            EventKind.MODIFY, ovs, port, mac, link_up=True, segment=self._segment_of(rec, ovs, port)
        )
        return self._arrive(rec, ev, activate=True)

    def _segment_of(self, rec: VPortRecord, ovs: str, port: int) -> int:
        """The segment of port `port` of `ovs`, as our OVS or the mark says, else the VM's."""
        for fact in self._facts(rec.vm):
            if fact.ovs == ovs and fact.port == port:
                return fact.segment
        mig = rec.mig
        if mig is not None and mig.dest_port == port and mig.dest_segment is not None:
            return mig.dest_segment
        return rec.loc.segment

    def switch_down(self, ovs: str) -> list[Change]:
        """Our switch `ovs` is unreachable: its ports count as down until it is back.

        The entries on it say so (a migrating VM's port stays up, claim 4), and a
        MAC contested by a port elsewhere goes to that port: a VM restarted on
        another hypervisor after its own died takes its address over.
        """
        changes = []
        for vm in self._claims.down(ovs):
            change = self.reconcile(vm)
            if change is not None:
                changes.append(change)
        return changes

    def ports_on(self, ovs: str) -> list[PortEvent]:
        """The last event of each port of our switch `ovs` that carries a VM's MAC."""
        return self._claims.on(ovs)

    # -- what our own OVS says -------------------------------------------
    def own(self, ovs: str) -> None:
        """We master `ovs` now: its ports are ours to vouch for (see reconcile)."""
        self._claims.own.add(ovs)

    def release(self, ovs: str) -> None:
        """Another controller masters `ovs` now: its ports are no longer ours to vouch for."""
        self._claims.release(ovs)

    def reconcile(self, vm: str) -> Change | None:
        """Correct an entry that contradicts what our own OVS reported.

        Copies from peers can be older than the facts of our OVS: a rollback
        the leader wrote while our port delete or link change was on its way,
        or the removal of the VM elsewhere while it was booting on our OVS. The
        master of a switch is the authority on its ports, so we write what our
        OVS says, as the next revision of what we hold (never a new `seq`,
        which would outrank a migration in progress).
        """
        rec = self._records.get(vm)
        if rec is None:
            return None
        loc = rec.loc
        claims = self._claims
        if vm not in claims.ports and (loc.ovs is None or loc.ovs not in claims.own):
            # Hot (after every merge): no port of ours carries the MAC, and the
            # entry places it nowhere or on a switch we do not master; unless it
            # migrates from a switch of ours whose port went unseen (a mastership gap).
            return None if rec.mig is None else self._source_left(rec)
        mig = _live(rec)
        if vm in claims.contested:
            claimant = claims.settle(rec, mig)
            if claimant is not None:
                return self._moved(rec, claimant)
        facts = candidates = self._facts(vm)
        migrating = mig is not None
        if mig is not None:
            if mig.phase >= _ACTIVATED:
                return None  # the migration's own rules place the VM
            # It runs where it was: not on the destination's tap, not active yet.
            candidates = tuple(f for f in facts if f.ovs != mig.destination)
        if loc.ovs is not None:
            if loc.ovs not in claims.own:
                return None  # elsewhere: its master answers for it
            seen = None if loc.port is None else self._fact(vm, loc.ovs, loc.port)
            if seen is not None:
                if migrating or seen.link_up == loc.link_up:
                    return None  # (a migrating VM's port is up whatever its link says)
                new = loc.relinked(self.me, seen.link_up)
                return self._write(VPortRecord(vm, new, rec.mig), EventKind.MODIFY, Reason.PORT)
        if candidates:
            # Removed, or placed on a port of ours that is gone, while another
            # port of ours carries its MAC: the VM is there.
            ev = min(candidates, key=lambda e: (not e.link_up, e.ovs, e.port))
            here = self._location(ev, link_up=ev.link_up, seq=loc.seq, rev=loc.rev + 1)
            return self._write(VPortRecord(vm, here, rec.mig), EventKind.ADD, Reason.PORT)
        if loc.ovs is None:
            return None
        if migrating:
            # Its port here went while nobody mastered the switch, and the destination
            # has not been heard: it may yet report the VM, or the migration times out.
            return self._source_left(rec)
        gone = VPortRecord(vm, self._tombstone(loc), rec.mig)
        return self._write(gone, EventKind.DELETE, Reason.VM_GONE)

    # -- the rules' building blocks --------------------------------------
    def _require_any(self, ev: PortEvent) -> VPortRecord:
        rec = self._records.get(ev.mac)
        if rec is None or not rec.present:
            raise UnknownVM(f"port {ev.kind} on {ev.ovs} port {ev.port}: no vPort for {ev.mac}")
        return rec

    def _location(self, ev: PortEvent, *, link_up: bool, seq: int, rev: int) -> Location:
        return Location(
            ev.ovs, ev.port, ev.port_name, link_up, seq, rev, self.me,
            ev.ips, ev.iface_id, ev.vm_id, ev.segment,
        )  # fmt: skip

    def _refresh(
        self, rec: VPortRecord, ev: PortEvent, link_up: bool, kind: EventKind
    ) -> Change | None:
        loc = rec.loc
        port_name = ev.port_name or loc.port_name
        ips = ev.ips or loc.ips
        same = (loc.port, loc.port_name, loc.link_up, loc.ips, loc.segment) == (
            ev.port,
            port_name,
            link_up,
            ips,
            ev.segment,
        )
        if same:
            return None
        new = Location(
            loc.ovs, ev.port, port_name, link_up, loc.seq, loc.rev + 1, self.me,
            ips, loc.iface_id, loc.vm_id, ev.segment,
        )  # fmt: skip
        return self._write(VPortRecord(rec.vm, new, rec.mig), kind, Reason.PORT)

    def _moved(self, rec: VPortRecord, ev: PortEvent) -> Change:
        """The MAC came up somewhere else without a notify: a move, as EVPN sees one."""
        self._claims.contested.discard(rec.vm)
        loc = self._location(ev, link_up=True, seq=rec.loc.seq + 1, rev=0)
        return self._write(VPortRecord(rec.vm, loc, rec.mig), EventKind.MODIFY, Reason.VM_MOVED)

    def _arrive(self, rec: VPortRecord, ev: PortEvent, *, activate: bool) -> Change | None:
        """A port event for a migrating VM: only the destination's ports count."""
        mig = rec.mig
        assert mig is not None
        if ev.ovs != mig.destination or mig.phase >= _ACTIVATED:
            return None
        if ev.segment != rec.loc.segment:
            activate = False  # another segment's port: the leader fails the migration
        if activate:
            return self._activate(rec, mig, ev)
        if mig.phase == Phase.ARRIVED and (mig.dest_port, mig.dest_segment) == (
            ev.port,
            ev.segment,
        ):
            return None
        arrived = mig.at_port(Phase.ARRIVED, self.me, ev.port, ev.port_name, ev.segment)
        return self._write(VPortRecord(rec.vm, rec.loc, arrived), EventKind.ADD, Reason.PORT)

    def _activate(self, rec: VPortRecord, mig: MigrationMark, ev: PortEvent) -> Change:
        """Make-before-break: the VM is live at the destination, point traffic there."""
        name = ev.port_name or mig.dest_port_name
        done = mig.at_port(Phase.ACTIVATED, self.me, ev.port, name, ev.segment)
        # rev 1: the destination's own report outranks the source's guess (rev 0).
        old = rec.loc
        loc = Location(
            ev.ovs, ev.port, name, True, mig.seq, 1, self.me,
            ev.ips or old.ips, old.iface_id, old.vm_id, ev.segment,
        )  # fmt: skip
        return self._write(VPortRecord(rec.vm, loc, done), EventKind.MODIFY, Reason.VM_ACTIVATED)

    def _complete(self, rec: VPortRecord, mig: MigrationMark) -> Change:
        """Claim 2: the source port is gone; the VM stays up, the migration ends."""
        loc = rec.loc
        if mig.phase < _ACTIVATED:
            segment = loc.segment if mig.dest_segment is None else mig.dest_segment
            loc = Location(
                mig.destination, mig.dest_port, mig.dest_port_name, True, mig.seq, 0, self.me,
                loc.ips, loc.iface_id, loc.vm_id, segment,
            )  # fmt: skip
        done = mig.advance(Phase.COMPLETED, self.me)
        return self._write(VPortRecord(rec.vm, loc, done), EventKind.DELETE, Reason.VM_MIGRATION)

    def _write(self, rec: VPortRecord, kind: EventKind, reason: Reason) -> Change:
        self._put(rec, self._records.get(rec.vm))
        return Write(rec, kind, reason)
