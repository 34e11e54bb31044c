"""The flows of the tagged segments on the switches a flow compiler masters.

The `FlowCompiler` hands every entry of a segment other than 0, every entry
on an overlay host (there the default segment is one of these, VID 0), and
every entry that was one of them, to a `SegmentCompiler`, which keeps, cluster-wide,
where each segment has VMs (its *sites*: the VMs' switches, and the
destinations of their open migrations), and, on the switches we master, the
flows `segflows` makes:

* a VM's forwarding flow on its own switch, and on a switch that lies on a
  path from one of its segment's sites to it where that path leaves by
  another port than the switch's default (the other switches' default route
  reaches it); its hand-over flows on the path of its migration; its arrival
  flow at the destination of one;
* per switch and segment: a classification flow per local VM port, and the
  flood flow (to the local VM ports and the tree links towards the
  segment's other sites, when those are two or more ports), with a gate for
  each port a flood flow holds.

A switch that is no site of a segment and lies on no path between two of its
sites holds no flow of it. Flows are kept per VM and per (switch, segment)
as installed; each change re-makes only what it touches, and a segment whose
sites change re-makes its VMs and floods. What `installed` holds is the
truth: a flow still desired is added again if it is not there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Container, Iterable

from vportd.core import segflows
from vportd.core.floods import install, uninstall
from vportd.core.flow import ADD, Flow, FlowKey, FlowMod
from vportd.core.installed import SwitchFlows
from vportd.core.model import Phase, VPortRecord
from vportd.core.pipeline import handing_over, handover_outs
from vportd.core.segments import SegmentMap
from vportd.core.topology import Topology
from vportd.core.tunnels import Tunnels

Flows = dict[str, dict[FlowKey, Flow]]  # per switch, by key
Outs = dict[str, tuple[segflows.Target, ...]]  # per switch, where a VM's flow there outputs


def segment_of(rec: VPortRecord, overlay: Container[str]) -> int | None:
    """The segment whose flows the entry needs from this compiler: a tagged one's, or the
    default segment's on an overlay host (on links, the default segment is the pipeline's
    tables 1 and 2); None: none."""
    if not rec.present:
        return None
    seg = rec.loc.segment
    return seg if seg or rec.loc.ovs in overlay else None


def sites_of(rec: VPortRecord) -> frozenset[str]:
    """Where the VM makes its segment present: its switch, and its migration's destination."""
    here = {rec.loc.ovs} if rec.loc.ovs is not None else set()
    mig = rec.mig
    if mig is not None and mig.phase < Phase.ACTIVATED:
        here.add(mig.destination)
    return frozenset(here)


class SegmentCompiler:
    """The tagged segments' flows, as diffs (module doc); `installed` and `switches`
    are the flow compiler's own, shared."""

    def __init__(
        self,
        topology: Topology,
        installed: dict[str, SwitchFlows],
        switches: set[str],
        tunnels: Tunnels,
        segments: SegmentMap,
    ) -> None:
        self.topology = topology
        self.installed = installed
        self.switches = switches
        self.tunnels = tunnels
        self.segment_map = segments
        self.vms: dict[str, VPortRecord] = {}  # the entries with a segment, by VM
        self._members: dict[int, set[str]] = {}  # per segment, its VMs
        self._sites: dict[int, Counter[str]] = {}  # per segment, its sites (with how many VMs)
        self._vm_sites: dict[str, tuple[int, frozenset[str]]] = {}
        self._local: dict[tuple[str, int], dict[str, int]] = {}  # (switch, segment): VM -> port
        self._held_vm: dict[str, Flows] = {}  # per VM, its flows on our switches
        self._held_seg: dict[tuple[str, int], dict[FlowKey, Flow]] = {}
        # Per switch and segment, the flood members held; per segment, the switches flooding it.
        self._floods: dict[str, dict[int, tuple[segflows.Target, ...]]] = {}
        self._flooding: dict[int, set[str]] = {}
        # Per segment and switch, `_reach_of`; made again when the paths may have changed.
        self._reach: dict[int, dict[str, Outs]] = {}
        self._reach_seen = (-1, -1)
        self._gates: dict[str, frozenset[int]] = {}  # per switch, the gates held

    # -- what the table says ------------------------------------------------
    def note(self, rec: VPortRecord) -> dict[int, set[str]]:
        """Take the VM's entry; the segments whose sites changed, with the switches that
        became or stopped being one."""
        vm, seg = rec.vm, segment_of(rec, self.tunnels.hosts)
        old, was = self.vms.get(vm), self.segment(vm)
        if seg is not None:
            self.vms[vm] = rec
            self._members.setdefault(seg, set()).add(vm)
        else:
            self.vms.pop(vm, None)
        if was is not None and was != seg:
            self._members[was].discard(vm)
        if old is not None and old.loc.ovs is not None and was is not None:
            self._local.get((old.loc.ovs, was), {}).pop(vm, None)
        if seg is not None and rec.loc.ovs is not None and rec.loc.port is not None:
            self._local.setdefault((rec.loc.ovs, seg), {})[vm] = rec.loc.port
        return self._resite(vm, None if seg is None else (seg, sites_of(rec)))

    def segment(self, vm: str) -> int | None:
        """The segment whose flows the VM has here (None: not one of ours)."""
        sites = self._vm_sites.get(vm)
        return None if sites is None else sites[0]

    def _resite(self, vm: str, now: tuple[int, frozenset[str]] | None) -> dict[int, set[str]]:
        before = self._vm_sites.get(vm)
        if before == now:
            return {}
        changed: dict[int, set[str]] = {}
        if before is not None:
            count = self._sites[before[0]]
            for switch in before[1]:
                count[switch] -= 1
                if not count[switch]:
                    del count[switch]
                    changed.setdefault(before[0], set()).add(switch)
            del self._vm_sites[vm]
        if now is not None:
            count = self._sites.setdefault(now[0], Counter())
            for switch in now[1]:
                count[switch] += 1
                if count[switch] == 1:
                    changed.setdefault(now[0], set()).add(switch)
            self._vm_sites[vm] = now
        return changed

    # -- inputs -------------------------------------------------------------
    def update(self, rec: VPortRecord) -> list[FlowMod]:
        """The flow mods that bring our switches in line with the VM's entry."""
        seen = (self.topology.version, self.tunnels.version)  # (mastership: `mastered`, `release`)
        if seen != self._reach_seen:
            self._reach_seen = seen
            self._reach.clear()
        old, was = self.vms.get(rec.vm), self.segment(rec.vm)
        resited = self.note(rec)
        others: list[FlowMod] = []
        touched: set[tuple[str, int]] = set()
        for seg, switches in resited.items():
            dirty = self._rereach(seg, switches)
            for vm in sorted(self._members.get(seg, ())):
                other = self.vms[vm]
                if vm == rec.vm:
                    continue
                if other.migrating:
                    others += self._sync_vm(vm)  # (a migration's flows follow the sites too)
                elif other.loc.ovs in dirty:
                    others += self._sync_vm(vm, dirty[other.loc.ovs])
            touched |= {(s, seg) for s in self._floods_around(seg, switches)}
        for r, in_seg in ((old, was), (rec, self.segment(rec.vm))):
            if r is not None and in_seg is not None and r.loc.ovs in self.switches:
                touched.add((r.loc.ovs, in_seg))
        mods = self._sync_vm(rec.vm) + others  # (after `_rereach`: its reach is the new one)
        for key in sorted(touched):
            mods += self._sync_segment(*key)
        for switch in sorted({s for s, _ in touched}):
            mods += self._sync_gates(switch)
        return mods

    def _floods_around(self, seg: int, changed: set[str]) -> set[str]:
        """Our switches whose floods of `seg` may change as `changed` join or leave its
        sites: its sites, those that flood it now, and the flood tree's path from each
        changed switch to the root (where the tree meets the segment's)."""
        around = {*changed, *self._sites.get(seg, ()), *self._flooding.get(seg, ())}
        for switch in changed:
            around.update(self.topology.towards_root(switch))
        return around & self.switches

    def held_for(self, vm: str) -> list[FlowMod]:
        """The VM's flows on our switches, as adds (`FlowCompiler.held_for`), and on the
        destination of its migration, if ours, its segment's flows there: what the VM needs
        on arrival, which "sync complete" promises."""
        held = self._held_vm.get(vm, {})
        mods = [FlowMod(s, ADD, f) for s, flows in held.items() for f in flows.values()]
        rec = self.vms.get(vm)
        mig = None if rec is None else rec.mig
        if rec is None or mig is None or mig.destination not in self.switches:
            return mods
        dest, seg = mig.destination, rec.loc.segment
        for flow in self._held_seg.get((dest, seg), {}).values():
            mods.append(FlowMod(dest, ADD, flow))
        for other in sorted(self._members.get(seg, ())):
            if other != vm:
                for flow in self._held_vm.get(other, {}).get(dest, {}).values():
                    mods.append(FlowMod(dest, ADD, flow))
        mods += [FlowMod(dest, ADD, segflows.gate(p)) for p in sorted(self._gates.get(dest, ()))]
        return mods

    def mastered(self) -> None:
        """The switches we master changed: the paths kept name the old ones."""
        self._reach.clear()

    def release(self, switch: str) -> None:
        """Forget what we held on a switch we no longer master."""
        self._reach.clear()  # (its paths lead through it)
        for flows in self._held_vm.values():
            flows.pop(switch, None)
        for key in [k for k in self._held_seg if k[0] == switch]:
            del self._held_seg[key]
        for seg in self._floods.pop(switch, {}):
            self._flooding.get(seg, set()).discard(switch)
        self._gates.pop(switch, None)

    def sync_switch(self, switch: str) -> dict[FlowKey, Flow]:
        """Every segment flow `switch` needs, from scratch (the compiler installs them)."""
        self.release(switch)
        desired: dict[FlowKey, Flow] = {}
        for rec in self.vms.values():
            flows = self._vm_flows(rec).get(switch)
            if flows:
                self._held_vm.setdefault(rec.vm, {})[switch] = flows
                desired.update(flows)
        for seg in sorted(self._members):
            flows = self._segment_flows(switch, seg)
            if flows:
                self._held_seg[switch, seg] = flows
                desired.update(flows)
        gates = self._gate_ports(switch)
        self._gates[switch] = gates
        desired.update({segflows.gate(p).key: segflows.gate(p) for p in gates})
        port = self.tunnels.port(switch)
        if port is not None:
            miss = segflows.tunnel_miss(port)
            desired[miss.key] = miss
        return desired

    def _tunnel(self, switch: str, seg: int) -> segflows.Tunnel | None:
        """`switch`'s tunnel port and the segment's VNI, on an overlay host."""
        port = self.tunnels.port(switch)
        return None if port is None else (port, self.segment_map.vni(seg))

    def _remote(self, host: str) -> segflows.Remote:
        end = self.tunnels.get(host)
        assert end is not None
        return segflows.Remote(end.ip)

    # -- a VM's flows ---------------------------------------------------------
    def _vm_flows(self, rec: VPortRecord, only: set[str] | None = None) -> Flows:
        """Per switch of ours (of `only`, if given), the VM's flows (module doc)."""
        seg, loc = self.segment(rec.vm), rec.loc
        here = loc.ovs
        if seg is None or here is None:
            return {}
        topology, switches = self.topology, self.switches
        outs = dict(self._reach_of(seg, here))
        if here in switches and loc.port is not None:
            outs[here] = (loc.port,)
        if handing_over(rec):
            outs.update(handover_outs(topology, rec, switches))
            outs.update(self._handover_tunnels(rec))
        if only is not None:
            outs = {s: t for s, t in outs.items() if s in only}
        flows: Flows = {}
        made: dict[object, Flow] = {}  # (the overlay's hosts share one flow per VM)
        for switch, targets in outs.items():
            tunnel = self._tunnel(switch, seg)
            links = topology.link_ports(switch)
            shared = None if links else (targets, tunnel)
            flow = made.get(shared) if shared is not None else None
            if flow is None:
                flow = segflows.vm_flow(rec.vm, seg, targets, links, tunnel)
                if shared is not None:
                    made[shared] = flow
            flows[switch] = {flow.key: flow}
        mig = rec.mig
        if (
            mig is not None
            and mig.phase < Phase.ACTIVATED
            and mig.destination in switches
            and (only is None or mig.destination in only)
        ):
            flow = segflows.arrival_flow(rec.vm, seg)
            flows.setdefault(mig.destination, {})[flow.key] = flow
        return flows

    def _reach_of(self, seg: int, here: str) -> Outs:
        """Where, on our switches but `here`, a VM of `seg` on `here` needs its forwarding
        flow, and its targets there (kept per segment and switch: its VMs share it)."""
        reach = self._reach.setdefault(seg, {})
        outs = reach.get(here)
        if outs is None:
            outs = reach[here] = self._reach_from(here, self._sites.get(seg, ()))
        return outs

    def _reach_from(self, here: str, sites: Iterable[str]) -> Outs:
        """`_reach_of` for the paths from `sites` only."""
        topology, switches, tunnels = self.topology, self.switches, self.tunnels
        outs: Outs = {}
        exceptions = topology.exceptions(here)
        for site in sites:
            if site in switches and tunnels.joined(site, here):
                outs[site] = (self._remote(here),)  # through the tunnel, with the VNI
                continue
            for switch, _, _ in topology.path(site, here):
                if switch != here and switch in switches and switch in exceptions:
                    outs[switch] = (exceptions[switch],)
        return outs

    def _rereach(self, seg: int, changed: set[str]) -> dict[str, set[str] | None]:
        """Bring the segment's reach in line with its sites; per site whose VMs' flows it
        changed, the switches where (None: all of them, its reach was not kept). Sites
        that joined add their paths; one that left: all again."""
        reach = self._reach.setdefault(seg, {})
        sites: Counter[str] = self._sites.get(seg, Counter())
        for gone in [here for here in reach if here not in sites]:
            del reach[gone]
        joined = all(s in sites for s in changed)
        dirty: dict[str, set[str] | None] = {}
        for here in sites:
            old = reach.get(here)
            if old is None:  # (dropped with the paths, or never made: its VMs' flows may be stale)
                dirty[here] = None
                continue
            new = {**old, **self._reach_from(here, changed)} if joined else None
            if new is None:
                new = self._reach_from(here, sites)
            if new != old:
                reach[here] = new
                dirty[here] = {s for s in old.keys() | new.keys() if old.get(s) != new.get(s)}
        return dirty

    def _handover_tunnels(self, rec: VPortRecord) -> dict[str, tuple[segflows.Target, ...]]:
        """Hand-over across the overlay: the source sends the VM's frames to its port and
        through the tunnel to the destination, the destination to its new port and back to
        the source, every other host of the segment to both (a frame from the tunnel is
        never sent back into it: split horizon)."""
        mig, loc = rec.mig, rec.loc
        assert mig is not None and mig.dest_port is not None and loc.port is not None
        src, dst, tunnels = mig.source, mig.destination, self.tunnels
        if not (tunnels.joined(src, dst) and tunnels.joined(dst, src)):
            return {}
        outs: dict[str, tuple[segflows.Target, ...]] = {}
        if src in self.switches:
            outs[src] = (loc.port, self._remote(dst))
        if dst in self.switches:
            outs[dst] = (mig.dest_port, self._remote(src))
        for site in self._sites.get(loc.segment, ()):
            if site in self.switches and site not in (src, dst) and tunnels.joined(site, src):
                outs[site] = (self._remote(src), self._remote(dst))
        return outs

    def _sync_vm(self, vm: str, only: set[str] | None = None) -> list[FlowMod]:
        """Bring the VM's flows in line (on `only` those switches, if given)."""
        rec = self.vms.get(vm)
        desired = {} if rec is None else self._vm_flows(rec, only)
        if only is None:
            held = self._held_vm.pop(vm, {})
            mods = _diff(self.installed, held, desired)
            if desired:
                self._held_vm[vm] = desired
            return mods
        every = self._held_vm.pop(vm, {})
        held = {s: every.pop(s) for s in only if s in every}
        mods = _diff(self.installed, held, desired)
        every.update(desired)
        if every:
            self._held_vm[vm] = every
        return mods

    # -- a segment's flows on a switch -------------------------------------------
    def _flood_members(self, switch: str, seg: int) -> tuple[segflows.Target, ...]:
        """Local VM ports, tree links towards the segment's other sites, and those sites
        that are overlay hosts (one copy each through the tunnel); none if fewer than two."""
        topology, tunnels = self.topology, self.tunnels
        local = self._local.get((switch, seg), {})
        others = {s for s in self._sites.get(seg, ()) if s != switch}
        links = {p for p in topology.tree_ports(switch) if topology.tree_beyond(switch, p) & others}
        remote = []  # (a host that is no site of the segment never has its frames)
        if switch in self._sites.get(seg, ()):
            remote = [self._remote(s) for s in sorted(others) if tunnels.joined(switch, s)]
        members: tuple[segflows.Target, ...] = (*sorted({*local.values(), *links}), *remote)
        return members if len(members) > 1 else ()

    def _segment_flows(self, switch: str, seg: int) -> dict[FlowKey, Flow]:
        flows = [segflows.port_flow(p, seg) for p in self._local.get((switch, seg), {}).values()]
        tunnel = self._tunnel(switch, seg)
        if tunnel is not None and switch in self._sites.get(seg, ()):
            flows.append(segflows.tunnel_flow(tunnel, seg))  # a site: takes the VNI in
        members = self._flood_members(switch, seg)
        self._floods.setdefault(switch, {})[seg] = members
        flooding = self._flooding.setdefault(seg, set())
        if members:
            flooding.add(switch)
        else:
            flooding.discard(switch)
        if members:
            links = self.topology.link_ports(switch)
            flows.append(segflows.flood_flow(seg, members, links, tunnel))
        return {f.key: f for f in flows}

    def _sync_segment(self, switch: str, seg: int) -> list[FlowMod]:
        desired = self._segment_flows(switch, seg)
        held = self._held_seg.pop((switch, seg), {})
        if desired:
            self._held_seg[switch, seg] = desired
        return _diff(self.installed, {switch: held}, {switch: desired})

    def _gate_ports(self, switch: str) -> frozenset[int]:
        """The ports floods may enter by: the members (the tunnel port for overlay hosts)."""
        tunnel = self.tunnels.port(switch)
        gates: set[int] = set()
        for members in self._floods.get(switch, {}).values():
            for p in members:
                if isinstance(p, int):
                    gates.add(p)
                elif tunnel is not None:
                    gates.add(tunnel)
        return frozenset(gates)

    def _sync_gates(self, switch: str) -> list[FlowMod]:
        gates = self._gate_ports(switch)
        held = self._gates.get(switch, frozenset())
        self._gates[switch] = gates
        mods: list[FlowMod] = []
        for port in sorted(held - gates):
            mods += uninstall(self.installed, switch, segflows.gate(port).key)
        for port in sorted(gates):
            flow = segflows.gate(port)
            mods += install(self.installed, switch, flow.key, flow)
        return mods


def _diff(installed: dict[str, SwitchFlows], held: Flows, desired: Flows) -> list[FlowMod]:
    """Delete the `held` flows not `desired`, add the `desired` ones `installed` lacks.

    A held flow whose key now holds another flow stays: a port that changed
    segment has its new segment's flow under the same key (table 0, its port)."""
    mods: list[FlowMod] = []
    for switch, flows in held.items():
        want = desired.get(switch, {})
        if switch in installed:
            table = installed[switch]
            for key, flow in flows.items():
                if key not in want and table.other(key) == flow:
                    mods += uninstall(installed, switch, key)
    for switch, flows in desired.items():
        for key, flow in flows.items():
            mods += install(installed, switch, key, flow)
    return mods
