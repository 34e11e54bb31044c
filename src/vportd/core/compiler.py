"""The flow compiler: the flow mods that bring mastered switches in line with the table.

It remembers what it has installed on each switch it masters and returns only
the difference as `FlowMod`s (see `pipeline` for which flows are desired).
"""

from __future__ import annotations

from collections.abc import Iterable

from vportd.core.floods import Floods, install, uninstall
from vportd.core.flow import (
    ADD,
    CLASSIFY_TABLE,
    COOKIE_HANDOVER,
    COOKIE_KIND_MASK,
    DELETE,
    FORWARD_TABLE,
    PRIO_VM,
    Flow,
    FlowCommand,
    FlowKey,
    FlowMod,
    Match,
    unchanged,
)
from vportd.core.installed import SwitchFlows
from vportd.core.model import Location, VPortRecord
from vportd.core.pipeline import (
    Out,
    arrival_at,
    arrival_flow,
    arrival_key,
    base_flows,
    base_key,
    flood_flows,
    flood_members,
    forwarding_changed,
    forwarding_flow,
    handing_over,
    handover_outs,
    to_port,
    to_ports,
    vm_cookie,
    vm_flows,
    vm_match,
)
from vportd.core.segcompiler import SegmentCompiler
from vportd.core.segments import SegmentMap
from vportd.core.topology import Topology
from vportd.core.tunnels import Tunnels

_NOWHERE = Location(None, None, None, False, 0, 0, "")  # where a VM with no untagged flows is


class _VmFlows:
    """Where one VM's flows are, on the switches a compiler masters.

    `rec` is the entry they were compiled from (then the latest entry with the
    same place) and `epoch` the compiler's epoch then: while neither the VM's
    place nor the epoch changed, the flows are still the desired ones and need
    no recompiling. `switches` are where its forwarding flows are (its
    hand-over flows among them), `arrival` where its arrival flow is.
    """

    __slots__ = ("arrival", "epoch", "rec", "switches")

    def __init__(
        self,
        rec: VPortRecord,
        epoch: int,
        switches: tuple[str, ...] = (),
        arrival: str | None = None,
    ) -> None:
        self.rec = rec
        self.epoch = epoch
        self.switches = switches
        self.arrival = arrival

    @property
    def empty(self) -> bool:
        return not self.switches and self.arrival is None


class FlowCompiler:
    """Desired flows for the switches one controller masters, as diffs.

    `installed` is what this compiler believes each switch holds; the OpenFlow
    adapter replaces it with what the switch reports on (re)connect, and the
    next `sync_switch` corrects only the difference.

    Compiling is incremental: while a VM's place (switch, port, pending
    arrival) and the compiler's epoch stay the same, its flows are in place
    (only its own updates touch its keys; whatever else changes `installed`
    bumps the epoch); a VM with no flows here is skipped at once.
    """

    def __init__(
        self,
        topology: Topology,
        switches: Iterable[str] = (),
        *,
        tunnels: Tunnels | None = None,
        segments: SegmentMap | None = None,
    ) -> None:
        self.topology = topology
        self.switches: set[str] = set(switches)
        self.installed: dict[str, SwitchFlows] = {s: SwitchFlows() for s in self.switches}
        # Per VM with flows here: where they are, for exact deletes and to skip
        # recompiling an entry whose place did not change.
        self._vm_flows: dict[str, _VmFlows] = {}
        self._floods = Floods(topology, self.installed, self.switches)
        # The tagged segments' VMs (all of their flows), and the VMs that were in one.
        self._segments = SegmentCompiler(
            topology, self.installed, self.switches, tunnels or Tunnels(), segments or SegmentMap()
        )
        self._segment_vms = self._segments.vms  # (the same dict: every update asks it)
        self._overlay = self._segments.tunnels.hosts  # (the same mapping, kept current)
        # Bumped whatever changes which flows an unchanged entry needs here, or
        # changes `installed` behind the VMs' backs. (Of direct changes to
        # `switches`, only those that change its size are seen: use master and release.)
        self._epoch = 0
        self._seen = (topology, topology.version, len(self.switches))
        # Per switch a VM may be on: the (switch, port) of its forwarding flows on
        # the switches we master other than its own, for this epoch.
        self._reach: dict[str, tuple[tuple[str, int], ...]] = {}
        # One tuple object for each set of switches VMs have their flows on (few).
        self._tuples: dict[tuple[str, ...], tuple[str, ...]] = {}

    # -- switches --------------------------------------------------------
    def master(self, switch: str) -> None:
        self.switches.add(switch)
        self.installed.setdefault(switch, SwitchFlows())
        self._floods.master(switch)
        self._segments.mastered()
        self._bump()

    def release(self, switch: str) -> None:
        """Stop managing a switch (another controller became its master)."""
        self.switches.discard(switch)
        self.installed.pop(switch, None)
        self._floods.release(switch)
        self._segments.release(switch)
        self._without(switch)
        self._bump()

    def _without(self, switch: str) -> None:
        """Forget every VM's flows on `switch`."""
        for entry in self._vm_flows.values():
            if switch in entry.switches:
                entry.switches = self._interned(tuple(s for s in entry.switches if s != switch))
            if entry.arrival == switch:
                entry.arrival = None

    def set_installed(self, switch: str, flows: Iterable[Flow]) -> None:
        """What the switch really holds, as read back from it."""
        self.installed[switch] = SwitchFlows(flows)
        self._floods.members.pop(switch, None)
        self._bump()  # the VMs' flows there may be gone: recompile them

    # -- compiling -------------------------------------------------------
    def _interned(self, switches: tuple[str, ...]) -> tuple[str, ...]:
        return self._tuples.setdefault(switches, switches)

    def _bump(self) -> None:
        self._epoch += 1
        self._reach.clear()

    def update_vm(self, rec: VPortRecord) -> list[FlowMod]:
        """The flow mods that bring every mastered switch in line with `rec`."""
        if rec.loc.segment or rec.vm in self._segment_vms or rec.loc.ovs in self._overlay:
            return self._update_segmented(rec)
        topology = self.topology
        seen = self._seen
        if topology is not seen[0] or topology.version != seen[1] or len(self.switches) != seen[2]:
            self._seen = (topology, topology.version, len(self.switches))
            self._bump()
        entry = self._vm_flows.get(rec.vm)
        if entry is None:
            mods = self._compile(rec, None) if self._wants_flows(rec) else []
        else:
            was = entry.rec
            # `vm_flows` depends on the VM's place, its hand-over and its arrival flow here only.
            if entry.epoch != self._epoch or (was is not rec and forwarding_changed(was, rec)):
                mods = self._compile(rec, entry)
            else:
                entry.rec = rec  # hold the table's entry, not an old one
                if was.mig is rec.mig or self._no_extras(entry, rec):
                    mods = []
                else:
                    mods = self._compile_arrival(rec, entry, entry)
        # The flood members: only a VM placed on, or leaving, a switch of ours counts.
        loc = rec.loc
        before = self._floods.placed.get(rec.vm)
        if before is not loc and (before is not None or loc.ovs in self.switches):
            local = self._floods.move(rec, before)
            if local:
                mods += local
        return mods

    def _update_segmented(self, rec: VPortRecord) -> list[FlowMod]:
        """A VM in a tagged segment or on an overlay host (`segcompiler`), or that was."""
        self._refresh_seen()
        mods = self._segments.update(rec)
        if rec.vm not in self._segment_vms:
            return mods + self.update_vm(rec)  # (it is no longer among the segments' VMs)
        vm = rec.vm
        gone = VPortRecord(vm, _NOWHERE)  # its untagged flows, if it had any, go
        entry = self._vm_flows.get(vm)
        if entry is not None:
            mods += self._compile(gone, entry)
        before = self._floods.placed.get(vm)
        if before is not None:
            mods += self._floods.move(gone, before)
        return mods

    def _refresh_seen(self) -> None:
        topology, seen = self.topology, self._seen
        if topology is not seen[0] or topology.version != seen[1] or len(self.switches) != seen[2]:
            self._seen = (topology, topology.version, len(self.switches))
            self._bump()

    def held_for(self, vm: str) -> list[FlowMod]:
        """The VM's flows as the switches we master should hold them now, as adds.

        Sending them again is harmless, and what follows their barrier has them
        whatever was queued before (the readiness barrier of a vPort sync whose
        entry came through the store first)."""
        if vm in self._segments.vms:
            return self._segments.held_for(vm)
        entry = self._vm_flows.get(vm)
        if entry is None:
            return []
        mods = []
        for switch in entry.switches:
            out = self.installed[switch]._vm.get(vm)
            if out is not None:
                mods.append(FlowMod(switch, ADD, forwarding_flow(vm, out)))
        if entry.arrival is not None:
            mods.append(FlowMod(entry.arrival, ADD, arrival_flow(vm)))
        return mods

    def _exceptions_here(self, here: str) -> tuple[tuple[str, int], ...]:
        """Where, of our switches, a VM on `here` needs a forwarding flow other than on `here`."""
        reach = self._reach.get(here)
        if reach is None:
            switches = self.switches
            reach = tuple(
                (s, p) for s, p in self.topology.exceptions(here).items() if s in switches
            )
            self._reach[here] = reach
        return reach

    def _wants_flows(self, rec: VPortRecord) -> bool:
        """Whether `rec` needs any flow here (without making them)."""
        loc = rec.loc
        here = loc.ovs
        if here is None:
            return False
        if (loc.port is not None and here in self.switches) or self._exceptions_here(here):
            return True
        arrival = arrival_at(rec)
        return (arrival is not None and arrival in self.switches) or self._handover_here(rec)

    def _no_extras(self, entry: _VmFlows, rec: VPortRecord) -> bool:
        """No arrival flow here, before or now."""
        if entry.arrival is not None:
            return False
        mig = rec.mig
        return mig is None or mig.destination not in self.switches

    def _handover_here(self, rec: VPortRecord) -> bool:
        if not handing_over(rec):
            return False  # (the common case, without a path's cost)
        mig = rec.mig
        assert mig is not None
        switches = self.switches
        return any(h[0] in switches for h in self.topology.path(mig.source, mig.destination))

    def _compile(self, rec: VPortRecord, entry: _VmFlows | None) -> list[FlowMod]:
        """Bring the VM's flows in line with `rec`; forget the VM if it needs none."""
        vm = rec.vm
        handover = handing_over(rec)
        desired = self._desired_ports(rec, handover)
        mods = self._place_vm(vm, () if entry is None else entry.switches, desired)
        switches = tuple(desired)
        if not handover:
            # One object per set of switches; not a hand-over's (a path: many, and brief).
            switches = self._interned(switches)
        if entry is None:
            placed = _VmFlows(rec, self._epoch, switches)
        else:  # updated in place: one allocation less on a hot path
            placed = entry
            placed.rec, placed.epoch, placed.switches = rec, self._epoch, switches
            if self._no_extras(entry, rec):
                if not switches:
                    del self._vm_flows[vm]
                return mods
        arrival = self._compile_arrival(rec, placed, entry)
        return mods + arrival if arrival else mods

    def _compile_arrival(
        self, rec: VPortRecord, placed: _VmFlows, entry: _VmFlows | None = None
    ) -> list[FlowMod]:
        """Bring the VM's arrival flow in line with `rec`; keep `placed` as the VM's
        entry (in place of `entry`), or forget the VM if it needs no flow here."""
        vm = rec.vm
        arrival = arrival_at(rec)
        if arrival not in self.switches:
            arrival = None
        mods: list[FlowMod] = []
        if placed.arrival != arrival:
            if placed.arrival is not None:
                mods += uninstall(self.installed, placed.arrival, arrival_key(vm))
            placed.arrival = arrival
            if arrival is not None:
                flow = arrival_flow(vm)
                mods += install(self.installed, arrival, flow.key, flow)
        if not placed.empty:
            if placed is not entry:
                self._vm_flows[vm] = placed
        elif vm in self._vm_flows:
            del self._vm_flows[vm]
        return mods

    def _desired_ports(self, rec: VPortRecord, handover: bool) -> dict[str, Out]:
        """Per mastered switch that needs the VM's forwarding flow, where it outputs
        (`handover`: `handing_over(rec)`)."""
        loc = rec.loc
        here = loc.ovs
        if here is None:
            return {}
        desired: dict[str, Out] = dict(self._exceptions_here(here))
        if loc.port is not None and here in self.switches:
            desired[here] = loc.port
        if handover:  # in place of the forwarding flow, on our switches of the path
            desired.update(handover_outs(self.topology, rec, self.switches))
        return desired

    def _place_vm(self, vm: str, held: tuple[str, ...], desired: dict[str, Out]) -> list[FlowMod]:
        """Delete the VM's forwarding flows on `held` switches that are not `desired`,
        add those `desired` the switches do not hold as they are. Hot (every move)."""
        mods: list[FlowMod] = []
        installed = self.installed
        match: Match | None = None  # shared by the flows of the mods, made on first need
        cookie = 0
        for switch in held:
            if switch not in desired:
                table = installed[switch]
                out = table._vm.pop(vm, None)  # (`pop_vm` without the call)
                if out is None:
                    gone = table.pop_vm(vm)  # one a switch reported otherwise, if any
                    if gone is not None:
                        mods.append(FlowMod(switch, FlowCommand.DELETE, gone))
                    continue
                if match is None:
                    match, cookie = vm_match(vm), vm_cookie(vm)
                flow = self._forwarding(match, cookie, out)
                mods.append(FlowMod(switch, DELETE, flow))
        for switch, out in desired.items():
            table = installed[switch]
            if table._vm.get(vm) != out:  # (what the switch holds for the VM; hot)
                if match is None:
                    match, cookie = vm_match(vm), vm_cookie(vm)
                if table._odd:  # (`set_vm` without the call)
                    table._drop_odd(vm)
                table._vm[vm] = out
                if out.__class__ is int:  # (`_forwarding` without the call: nearly every flow)
                    flow = Flow(FORWARD_TABLE, PRIO_VM, match, to_port(out), cookie)
                else:
                    flow = self._forwarding(match, cookie, out)
                mods.append(FlowMod(switch, ADD, flow))
        return mods

    @staticmethod
    def _forwarding(match: Match, cookie: int, out: Out) -> Flow:
        """`forwarding_flow(mac, out)` from the VM's match and `vm_cookie`, made once per call."""
        if out.__class__ is int:
            return Flow(FORWARD_TABLE, PRIO_VM, match, to_port(out), cookie)
        cookie = cookie & ~COOKIE_KIND_MASK | COOKIE_HANDOVER
        return Flow(FORWARD_TABLE, PRIO_VM, match, to_ports(out), cookie)

    def sync_switch(self, switch: str, records: Iterable[VPortRecord]) -> list[FlowMod]:
        """Bring one switch fully in line: used on (re)connect and topology change."""
        if switch not in self.switches:
            return []
        only = {switch}
        desired: dict[FlowKey, Flow] = {base_key(f): f for f in base_flows(self.topology, switch)}
        local: dict[str, int] = {}
        placed: dict[str, Location] = {}
        self._bump()
        self._without(switch)
        segments = self._segments
        for rec in records:
            if rec.loc.segment or rec.vm in segments.vms or rec.loc.ovs in self._overlay:
                segments.note(rec)
                if rec.vm in segments.vms:
                    continue
            for _, flow in vm_flows(self.topology, rec, only):
                desired[flow.key] = flow
                self._held_here(rec, switch, flow)
            loc = rec.loc
            if loc.ovs == switch and loc.port is not None:
                local[rec.vm] = loc.port
                placed[rec.vm] = loc
        members = flood_members(self.topology, switch, local.values())
        for flow in flood_flows(self.topology, switch, local.values()):
            desired[flow.key] = flow
        self._floods.synced(switch, local, placed, members)
        desired.update(segments.sync_switch(switch))
        return self._replace(switch, desired)

    def _held_here(self, rec: VPortRecord, switch: str, flow: Flow) -> None:
        """Note that `flow`, one of the VM's flows, is (to be) on `switch`."""
        entry = self._vm_flows.get(rec.vm)
        if entry is None:  # stale (-1): flows it may need on other switches are not here
            entry = self._vm_flows[rec.vm] = _VmFlows(rec, -1)
        if flow.table == CLASSIFY_TABLE:
            entry.arrival = switch
        else:
            entry.switches = self._interned((*entry.switches, switch))

    def _replace(self, switch: str, desired: dict[FlowKey, Flow]) -> list[FlowMod]:
        table = self.installed[switch]
        mods = [
            FlowMod(switch, FlowCommand.DELETE, table.pop(key))
            for key in list(table)
            if key not in desired
        ]
        for key, flow in desired.items():
            held = table.get(key)
            if not unchanged(held, flow):
                table[key] = flow
                mods.append(FlowMod(switch, FlowCommand.ADD, flow))
        return mods
