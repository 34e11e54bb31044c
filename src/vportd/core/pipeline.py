"""The pipeline: which OpenFlow 1.3 flows each VM and switch needs, from the table and topology.

Pipeline on every switch (proactive L2, no learning, no NORMAL):

* table 0, classifier. Priority 200 on the destination switch of a migration
  that has not activated yet: untagged frames *from* the VM's MAC are copied
  to the controller (its RARP/GARP is the activation signal) and go on to
  table 1 (table 3, tagged, for a VM of a tagged segment). Priority 100: a
  VM port of a tagged segment S (`segflows`): its frames get S's 802.1Q tag,
  on to table 3. Priority 2: untagged frames, the default segment, go to
  table 1. Priority 1: tagged frames from an inter-switch link go to table
  3. Priority 0: dropped (a tag a VM sends on a port of no segment).
* Segments (tenants). A VM port's segment is its OVS port's VLAN `tag`; 0,
  untagged, is the default segment, forwarded on links by tables 1 and 2
  below and held by every switch. A frame of segment S != 0 carries the
  802.1Q tag S inside a switch and on the links between switches: pushed
  where it enters from a VM port, popped where it leaves to one. Tables 3
  (forwarding) and 4 (flooding) are tables 1 and 2 for tagged frames, each
  flow matching the tag (a VM's MAC and its tag, a flood and its tag), so no
  frame of one segment reaches a port of another; table 3's default route
  (priority 10) carries unknown tagged unicast towards the root, where it
  meets no flow of another segment and is dropped. A switch holds a
  segment's flows only while the segment has a VM there, or a migration
  towards it, or it lies on a path (or the flood tree) between two such
  switches, or on a hand-over path; a segment's floods go to its local VM
  ports and to the tree links towards its other switches only
  (`segcompiler`).
* The overlay (`tunnels`): hypervisors joined only by one flow-based tunnel
  port each. A tagged segment's frame for a VM on another host leaves with
  the tag popped, `tun_id` = the segment's VNI and `tun_dst` = that host's
  endpoint; one from the tunnel is taken into segment S only by a host of S
  (table 0, priority 100: `in_port` = the tunnel, `tun_id` = S's VNI;
  priority 3 drops the rest), and is never output to the tunnel again
  (OpenFlow skips the input port: split horizon). A broadcast goes to the
  local ports of S and once to each other host of S (head-end replication).
  On an overlay host the default segment is one of these too: its VMs'
  frames carry VID 0 inside the switch and its VNI (0 unless configured) on
  the wire, and a host without a VM of it holds none of its flows; tables 1
  and 2 serve the default segment on links only.
* table 1, forwarding by destination MAC. Priority 100: a local VM's MAC to its
  port; a remote VM's MAC to the link towards its switch, only where that link
  is not the switch's default port (see topology). Priority 50, one flow per
  flood member (local VM port or spanning-tree link): broadcast and multicast
  from that port go to table 2. Priority 10: other unicast goes to the default
  port. No match: dropped, so a frame that enters on a non-tree link or on a
  port without a VM is never flooded (no loop, no flood from a stray port).
* table 1, hand-over (make-before-break in the data plane). While a migrating
  VM's destination port exists (phase ARRIVED) and the VM still runs at the
  source, every switch of one shortest path from the source to the
  destination sends frames for the VM both ways along that path: they end at
  the VM's port at the source *and* at its new port. The VM is thus reached
  wherever it runs, the instant it runs there, with no controller in the
  path; the flows go once the VM activates there (or the migration rolls
  back). The copies cost inter-switch bandwidth during the pre-copy only, and
  the new port is down until the switchover. A hand-over flow takes the place
  of the VM's forwarding flow on that switch (priority 100, same match, its
  own cookie): one flow mod makes it, and the flow mod that re-points or
  deletes the forwarding flow on activation (or restores it on rollback)
  ends it, where a flow of its own would cost an add and a delete more.
* table 2, flooding. Priority 50: broadcast and multicast to every member. The
  input port is among them, and OpenFlow never outputs a frame to its input
  port (OFPP_IN_PORT would be needed), so this is "every member but the
  input" in one flow per switch: a VM coming or going changes its own table-1
  gate and this one flow, not a flow per member.

The compiler remembers what it has installed on each switch it masters and
returns only the difference as `FlowMod`s (add replaces a flow with the same
table, priority and match). Cookies tell the flows of each VM apart, so that
reconciliation and "delete this VM's flows" (claims 2 and 3) are exact.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator
from functools import lru_cache

from vportd.core import segflows
from vportd.core.flow import (
    CLASSIFY_TABLE,
    COOKIE_ARRIVAL,
    COOKIE_BASE,
    COOKIE_FLOOD,
    COOKIE_HANDOVER,
    COOKIE_VM,
    FLOOD_TABLE,
    FORWARD_TABLE,
    MULTICAST_BIT,
    PRIO_ARRIVAL,
    PRIO_DEFAULT,
    PRIO_FLOOD,
    PRIO_VM,
    VID_NONE,
    Action,
    Flow,
    FlowKey,
    GotoTable,
    Match,
    Output,
    ToController,
)
from vportd.core.model import Phase, VPortRecord, mac_to_int
from vportd.core.topology import Topology

_ACTIVATED = Phase.ACTIVATED  # (an enum member looked up by name costs more than the comparison)
_ARRIVED = Phase.ARRIVED


# Interned building blocks: a switch holds many flows that share them.
@lru_cache(maxsize=65536)
def output_to(port: int) -> Output:
    return Output(port)


@lru_cache(maxsize=65536)
def to_port(port: int) -> tuple[Action, ...]:
    return (output_to(port),)


@lru_cache(maxsize=65536)
def flood_match(in_port: int) -> Match:
    return Match(in_port=in_port, eth_dst=MULTICAST_BIT, eth_dst_mask=MULTICAST_BIT)


_TO_FLOOD: tuple[Action, ...] = (GotoTable(FLOOD_TABLE),)
_ARRIVAL_ACTIONS: tuple[Action, ...] = (ToController(), GotoTable(FORWARD_TABLE))
_FLOOD_MATCH = Match(eth_dst=MULTICAST_BIT, eth_dst_mask=MULTICAST_BIT)
FLOOD_KEY: FlowKey = (FLOOD_TABLE, PRIO_FLOOD, _FLOOD_MATCH)


@lru_cache(maxsize=65536)
def gate(in_port: int) -> Flow:
    """Broadcast and multicast from a flood member go on to the flood table.

    The same for every switch: one object, shared by all of them.
    """
    return Flow(FORWARD_TABLE, PRIO_FLOOD, flood_match(in_port), _TO_FLOOD, COOKIE_FLOOD | in_port)


@lru_cache(maxsize=65536)
def gate_key(in_port: int) -> FlowKey:
    return gate(in_port).key


def flood_flow(members: tuple[int, ...]) -> Flow:
    """To every member; OpenFlow drops the copy for the input port itself."""
    return flood_flow_of(tuple(map(output_to, members)))  # (no generator: C speed)


def flood_flow_of(outputs: tuple[Action, ...]) -> Flow:
    """The flood flow with these outputs, one per member in the members' order."""
    return Flow(FLOOD_TABLE, PRIO_FLOOD, _FLOOD_MATCH, outputs, COOKIE_FLOOD)


# A VM's flows are made and deleted in bursts (a move, a migration's phases):
# the VMs of the last few thousand updates suffice.
@lru_cache(maxsize=4096)
def vm_cookie(mac: str) -> int:
    return COOKIE_VM | mac_to_int(mac)


@lru_cache(maxsize=4096)
def vm_match(mac: str) -> Match:
    """The match of a VM's forwarding flow (`eth_dst` = its MAC), as `vm_cookie`."""
    return Match(eth_dst=mac)


def arrival_cookie(mac: str) -> int:
    return COOKIE_ARRIVAL | mac_to_int(mac)


def handover_cookie(mac: str) -> int:
    return COOKIE_HANDOVER | mac_to_int(mac)


# What a VM's forwarding flow on one switch outputs to: the one port towards
# the VM (held as a bare int: nearly every flow), or, during a hand-over, the
# two ways along the path, (back, on).
Out = int | tuple[int, int]


@lru_cache(maxsize=65536)
def to_ports(out: tuple[int, int]) -> tuple[Action, ...]:
    return (output_to(out[0]), output_to(out[1]))


def _actions(out: Out) -> tuple[Action, ...]:
    return to_port(out) if out.__class__ is int else to_ports(out)


def _cookie(mac: str, out: Out) -> int:
    return vm_cookie(mac) if out.__class__ is int else handover_cookie(mac)


def handing_over(rec: VPortRecord) -> bool:
    """Whether `rec` needs hand-over flows: its new port exists, it runs at the source."""
    mig, loc = rec.mig, rec.loc
    return (
        mig is not None
        and mig.phase == _ARRIVED
        and mig.dest_port is not None
        and loc.ovs == mig.source
        and loc.port is not None
        and not mig.segment_differs(loc.segment)
    )


def _handover_target(rec: VPortRecord) -> tuple[str, int] | None:
    """What the VM's hand-over flows depend on beyond its place: where they lead."""
    if not handing_over(rec):
        return None
    mig = rec.mig
    assert mig is not None and mig.dest_port is not None
    return (mig.destination, mig.dest_port)


def handover_outs(
    topology: Topology, rec: VPortRecord, switches: Container[str] | None = None
) -> list[tuple[str, tuple[int, int]]]:
    """Where a migrating VM's hand-over flows output, per switch (module doc, table 1).

    One path from source to destination; each switch on it sends the VM's
    frames both ways along it: back by the port the path enters it by (at the
    source: the VM's port), on by the port it leaves by (at the destination:
    the VM's new port). OpenFlow never outputs a frame to its input port, so a
    frame travelling along the path keeps its direction and ends at one of the
    VM's ports; one that joins the path is split both ways. No loop.
    """
    if not handing_over(rec):
        return []
    mig, loc = rec.mig, rec.loc
    assert mig is not None and mig.dest_port is not None and loc.port is not None
    path = topology.path(mig.source, mig.destination)
    if len(path) < 2:  # noqa: PLR2004 (no path, or source = destination)
        return []
    return [
        (switch, (entered or loc.port, leaves or mig.dest_port))
        for switch, entered, leaves in path
        if switches is None or switch in switches
    ]


def forwarding_flow(mac: str, out: Out, match: Match | None = None) -> Flow:
    """The VM's forwarding flow that outputs to `out` (`match`: its `eth_dst` match, if made)."""
    if match is None:
        match = Match(eth_dst=mac)
    return Flow(FORWARD_TABLE, PRIO_VM, match, _actions(out), _cookie(mac, out))


def vm_flow(mac: str, port: int) -> Flow:
    """The VM's forwarding flow to its port (`forwarding_flow` of a port)."""
    return forwarding_flow(mac, port)


def arrival_flow(mac: str) -> Flow:
    match = Match(eth_src=mac, vlan_vid=VID_NONE)
    return Flow(CLASSIFY_TABLE, PRIO_ARRIVAL, match, _ARRIVAL_ACTIONS, arrival_cookie(mac))


def arrival_key(mac: str) -> FlowKey:
    return (CLASSIFY_TABLE, PRIO_ARRIVAL, Match(eth_src=mac, vlan_vid=VID_NONE))


def base_flows(topology: Topology, switch: str) -> list[Flow]:
    """Flows that depend on the topology only: table miss, default routes, classification."""
    flows = [segflows.MISS]
    default = topology.default_port(switch)
    if default is not None:
        flows.append(default_route(default))
    flows += segflows.classification_flows(topology, switch)
    flows += segflows.segment_default(topology, switch)
    return flows


@lru_cache(maxsize=4096)
def default_route(port: int) -> Flow:
    """Unicast for a MAC with no flow here goes to the default port (one object per port)."""
    unicast = Match(eth_dst="00:00:00:00:00:00", eth_dst_mask=MULTICAST_BIT)
    return Flow(FORWARD_TABLE, PRIO_DEFAULT, unicast, to_port(port), COOKIE_BASE)


@lru_cache(maxsize=4096)
def base_key(flow: Flow) -> FlowKey:
    """A base flow's key, one object per flow: every switch holds its base flows' keys."""
    return flow.key


def flood_members(topology: Topology, switch: str, local_ports: Iterable[int]) -> tuple[int, ...]:
    """The ports a broadcast may enter by and leaves through: local VMs and tree links."""
    return tuple(sorted(set(local_ports) | topology.tree_ports(switch)))


def flood_flows(topology: Topology, switch: str, local_ports: Iterable[int]) -> list[Flow]:
    """One gate per member (table 1), then the switch's one flood flow (table 2)."""
    members = flood_members(topology, switch, local_ports)
    if not members:
        return []
    return [*(gate(p) for p in members), flood_flow(members)]


def forwarding_outs(
    topology: Topology, rec: VPortRecord, switches: Container[str]
) -> dict[str, Out]:
    """Per switch of `switches` that needs the VM's forwarding flow, where it outputs."""
    loc = rec.loc
    here = loc.ovs
    if here is None:  # not present
        return {}
    outs: dict[str, Out] = {s: p for s, p in topology.exceptions(here).items() if s in switches}
    if here in switches and loc.port is not None:
        outs[here] = loc.port
    outs.update(handover_outs(topology, rec, switches))  # (in place of the forwarding flow)
    return outs


def vm_flows(
    topology: Topology, rec: VPortRecord, switches: Container[str]
) -> Iterator[tuple[str, Flow]]:
    """Every flow `rec` needs, as (switch, flow), on those of `switches` that need one."""
    outs = forwarding_outs(topology, rec, switches)
    if outs:
        match = Match(eth_dst=rec.vm)  # shared by the VM's flows
        for switch, out in outs.items():
            yield switch, forwarding_flow(rec.vm, out, match)
    mig = rec.mig
    if mig is not None and mig.phase < _ACTIVATED and mig.destination in switches:
        yield mig.destination, arrival_flow(rec.vm)


def forwarding_changed(was: VPortRecord, rec: VPortRecord) -> bool:
    """Whether two entries of a VM need different forwarding (or hand-over) flows."""
    a, b = was.loc, rec.loc
    if a.ovs != b.ovs or a.port != b.port:
        return True
    return was.mig is not rec.mig and _handover_target(was) != _handover_target(rec)


def arrival_at(rec: VPortRecord) -> str | None:
    mig = rec.mig
    return mig.destination if mig is not None and mig.phase < _ACTIVATED else None
