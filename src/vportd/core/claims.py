"""What our own OVS claims of the VMs' MACs, for the vPort table (`table`).

Per MAC, the last event of each port of the switches we master that carries
it, and the MACs that a port of ours claims while their entry places them on
another port, also up (`Conflict`). Not replicated: the master of a switch is
the authority on its ports.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import NamedTuple

from vportd.core.messages import EventKind, PortEvent
from vportd.core.model import Location, MigrationMark, Phase, VPortRecord


class Conflict(NamedTuple):
    """A MAC up on a port of our OVS while its entry places it on another port, also up.

    Outside a migration that is two VMs with one MAC (a cloned or mistyped
    `attached-mac`), not a move: the entry keeps its owner until one of the two
    ports goes down or away.
    """

    vm: str
    owner: Location
    claimant: PortEvent


def failed_destination(rec: VPortRecord, ovs: str) -> bool:
    """Whether `ovs` is the destination of the VM's aborted or failed migration."""
    mig = rec.mig
    return (
        mig is not None and mig.phase in (Phase.ABORTED, Phase.FAILED) and (mig.destination == ovs)
    )


class PortClaims:
    """The ports our own OVS reported, per MAC, and the MACs two ports up contest.

    `records` is the table's own (read only here): a contested MAC is checked
    again against its entry. The table asks who takes a contested MAC over;
    writing the move is the table's.
    """

    def __init__(self, records: Mapping[str, VPortRecord]) -> None:
        self._records = records
        # Per MAC, the last event of each port (one port, nearly always: then the
        # event itself, with no container), and the switches they are on.
        self.ports: dict[str, PortEvent | tuple[PortEvent, ...]] = {}
        self.own: set[str] = set()
        # MACs with a port of ours up that the entry does not place them on, while
        # the entry's port is up too (see Conflict): checked again on every change.
        self.contested: set[str] = set()

    # -- the ports -------------------------------------------------------
    def facts(self, vm: str) -> tuple[PortEvent, ...]:
        """The last event of each port of our OVS that carries `vm`'s MAC."""
        held = self.ports.get(vm)
        if held is None:
            return ()
        return held if isinstance(held, tuple) else (held,)

    def fact(self, vm: str, ovs: str | None, port: int | None) -> PortEvent | None:
        held = self.ports.get(vm)
        if held is None:
            return None
        if isinstance(held, PortEvent):
            return held if held.ovs == ovs and held.port == port else None
        return next((f for f in held if f.ovs == ovs and f.port == port), None)

    def _store(self, vm: str, facts: tuple[PortEvent, ...]) -> None:
        if not facts:
            self.ports.pop(vm, None)
        else:
            self.ports[vm] = facts[0] if len(facts) == 1 else facts

    def saw(self, ev: PortEvent) -> None:
        """Remember the ports our own OVS reports, with their last link state."""
        self.own.add(ev.ovs)
        held = self.ports.get(ev.mac)
        # Hot: no port known yet, or just this one.
        if held is None or (
            isinstance(held, PortEvent) and held.ovs == ev.ovs and held.port == ev.port
        ):
            if ev.kind is EventKind.DELETE:
                self.ports.pop(ev.mac, None)
            elif held is None or ev.kind is EventKind.MODIFY:
                self.ports[ev.mac] = ev
            return
        facts = self.facts(ev.mac)
        others = tuple(f for f in facts if f.ovs != ev.ovs or f.port != ev.port)
        if ev.kind is EventKind.DELETE:
            self._store(ev.mac, others)
        elif ev.kind is EventKind.MODIFY or len(others) == len(facts):
            self._store(ev.mac, (*others, ev))
        # else: an add of a port we know: its last link state stands

    def release(self, ovs: str) -> None:
        """Another controller masters `ovs` now: forget its ports."""
        self.own.discard(ovs)
        for vm in list(self.ports):
            facts = self.facts(vm)
            self._store(vm, tuple(f for f in facts if f.ovs != ovs))
        for vm in list(self.contested):
            self.recheck(vm)

    def down(self, ovs: str) -> Iterator[str]:
        """Mark the ports of `ovs` down, yielding each MAC with one that was up, once
        its ports are marked (the caller reconciles it then)."""
        for vm in list(self.ports):
            facts = self.facts(vm)
            if not any(f.ovs == ovs and f.link_up for f in facts):
                continue
            down = tuple(
                replace(f, kind=EventKind.MODIFY, link_up=False) if f.ovs == ovs else f
                for f in facts
            )
            self._store(vm, down)
            yield vm

    def on(self, ovs: str) -> list[PortEvent]:
        """The last event of each port of our switch `ovs` that carries a VM's MAC."""
        return [f for vm in self.ports for f in self.facts(vm) if f.ovs == ovs]

    # -- contested MACs --------------------------------------------------
    def conflicts(self) -> list[Conflict]:
        """The MACs claimed by a port of our OVS while their owner's port is up."""
        out = []
        for vm in sorted(self.contested):
            rec = self._records.get(vm)
            if rec is None or not rec.present:
                continue
            claimant = self.claimant(rec)
            if claimant is not None and self.owner_up(rec):
                out.append(Conflict(vm, rec.loc, claimant))
        return out

    def recheck(self, vm: str) -> None:
        """Forget a conflict whose claimant went down or away."""
        rec = self._records.get(vm)
        if rec is None or not rec.present or self.claimant(rec) is None:
            self.contested.discard(vm)

    def contest(self, rec: VPortRecord) -> bool:
        """A port of ours claims the MAC: contested (True) if its owner's port is up."""
        if not self.owner_up(rec):
            return False
        self.contested.add(rec.vm)
        return True

    def owner_up(self, rec: VPortRecord) -> bool:
        """Whether the entry's port is up: as our OVS says if it is ours, else as written."""
        loc = rec.loc
        if loc.ovs not in self.own:
            return loc.link_up
        seen = self.fact(rec.vm, loc.ovs, loc.port)
        return seen is not None and seen.link_up

    def claimant(self, rec: VPortRecord) -> PortEvent | None:
        """A port of ours up with the VM's MAC, other than the entry's (lowest first)."""
        loc = rec.loc
        ups = [
            f
            for f in self.facts(rec.vm)
            if f.link_up
            and (f.ovs, f.port) != (loc.ovs, loc.port)
            and not failed_destination(rec, f.ovs)
        ]
        return min(ups, key=lambda f: (f.ovs, f.port), default=None)

    def handed_on(self, rec: VPortRecord) -> PortEvent | None:
        """The owner's port goes down or away: the port that takes a contested MAC over."""
        if rec.vm not in self.contested:
            return None
        self.contested.discard(rec.vm)
        return self.claimant(rec)

    def settle(self, rec: VPortRecord, mig: MigrationMark | None) -> PortEvent | None:
        """A contested MAC's entry changed: the claimant that moves in if the owner is gone."""
        if not rec.present or mig is not None or self.claimant(rec) is None:
            self.contested.discard(rec.vm)  # (removed: reconcile places it on ours)
            return None
        if self.owner_up(rec):
            return None
        return self.handed_on(rec)
