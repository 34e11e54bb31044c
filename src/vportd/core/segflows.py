"""The flows of the tagged segments: tables 0, 3 and 4 (see `pipeline`'s docstring).

Inside a switch, and on the links between switches, a frame of segment S != 0
carries an 802.1Q header with VID S: pushed as it enters from a VM port of
S, popped as it leaves to one. Tables 3 and 4 are tables 1 and 2 for tagged
frames, every flow matching the tag: no frame of one segment reaches a flow
of another.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass
from functools import lru_cache

from vportd.core.flow import (
    CLASSIFY_TABLE,
    COOKIE_ARRIVAL,
    COOKIE_BASE,
    COOKIE_FLOOD,
    COOKIE_HANDOVER,
    COOKIE_SEGMENT,
    COOKIE_VM,
    FORWARD_TABLE,
    MULTICAST_BIT,
    PRIO_ARRIVAL,
    PRIO_CLASSIFY,
    PRIO_DEFAULT,
    PRIO_FLOOD,
    PRIO_MISS,
    PRIO_TAGGED,
    PRIO_TUNNEL,
    PRIO_UNTAGGED,
    PRIO_VM,
    SEGMENT_FLOOD_TABLE,
    SEGMENT_TABLE,
    VID_NONE,
    VID_PRESENT,
    Action,
    Flow,
    GotoTable,
    Match,
    Output,
    PopVlan,
    PushVlan,
    SetField,
    ToController,
)
from vportd.core.model import mac_to_int
from vportd.core.topology import Topology

_TAGGED = Match(vlan_vid=VID_PRESENT, vlan_vid_mask=VID_PRESENT)
_UNTAGGED = Match(vlan_vid=VID_NONE)
_UNICAST = Match(eth_dst="00:00:00:00:00:00", eth_dst_mask=MULTICAST_BIT)
_TO_SEGMENT: tuple[Action, ...] = (GotoTable(SEGMENT_TABLE),)


def vid(tag: int) -> int:
    """The `vlan_vid` of a frame of segment `tag`."""
    return VID_PRESENT | tag


MISS = Flow(CLASSIFY_TABLE, PRIO_MISS, Match(), (), COOKIE_BASE)


UNTAGGED = Flow(CLASSIFY_TABLE, PRIO_UNTAGGED, _UNTAGGED, (GotoTable(FORWARD_TABLE),), COOKIE_BASE)

# Every switch holds these (the same few on most): one object each, shared.


@lru_cache(maxsize=4096)
def tagged_from(port: int) -> Flow:
    """Tagged frames from link `port` go to table 3."""
    match = Match(in_port=port, vlan_vid=VID_PRESENT, vlan_vid_mask=VID_PRESENT)
    return Flow(CLASSIFY_TABLE, PRIO_TAGGED, match, _TO_SEGMENT, COOKIE_BASE)


@lru_cache(maxsize=4096)
def default_route(port: int) -> Flow:
    """Table 3's default route: tagged unicast for a MAC with no flow here, towards the root."""
    return Flow(SEGMENT_TABLE, PRIO_DEFAULT, _UNICAST, (Output(port),), COOKIE_BASE)


def classification_flows(topology: Topology, switch: str) -> list[Flow]:
    """Table 0 without the VMs (but `MISS`): untagged frames to table 1, tagged frames
    from links to table 3; anything else (a VM's own tag on an untagged port) is dropped."""
    return [UNTAGGED, *map(tagged_from, sorted(topology.link_ports(switch)))]


def segment_default(topology: Topology, switch: str) -> list[Flow]:
    default = topology.default_port(switch)
    return [] if default is None else [default_route(default)]


@lru_cache(maxsize=4096)
def port_flow(port: int, tag: int) -> Flow:
    """A VM port of segment `tag`: its frames tagged, on to table 3."""
    actions = (PushVlan(), SetField("vlan_vid", vid(tag)), GotoTable(SEGMENT_TABLE))
    return Flow(CLASSIFY_TABLE, PRIO_CLASSIFY, Match(in_port=port), actions, COOKIE_SEGMENT | tag)


def arrival_flow(mac: str, tag: int) -> Flow:
    """The destination's copy of the VM's frames to the controller, then into its segment."""
    actions = (ToController(), PushVlan(), SetField("vlan_vid", vid(tag)), _TO_SEGMENT[0])
    match = Match(eth_src=mac, vlan_vid=VID_NONE)
    return Flow(CLASSIFY_TABLE, PRIO_ARRIVAL, match, actions, COOKIE_ARRIVAL | mac_to_int(mac))


@dataclass(frozen=True, slots=True)
class Remote:
    """An overlay host a frame goes to through the tunnel port: its tunnel endpoint."""

    ip: str


Target = int | Remote  # a port of the switch, or another overlay host
Tunnel = tuple[int, int]  # this switch's tunnel port, and the segment's VNI


def outputs(
    targets: Iterable[Target], links: Container[int], tunnel: Tunnel | None = None
) -> tuple[Action, ...]:
    """To `targets`: tagged to links; then, the tag popped, to VM ports, and one copy per
    overlay host through the tunnel with the segment's VNI (`tunnel`)."""
    targets = list(targets)
    ports = [t for t in targets if isinstance(t, int)]
    tagged: list[Action] = [Output(p) for p in ports if p in links]
    local: list[Action] = [Output(p) for p in ports if p not in links]
    remote = [t.ip for t in targets if isinstance(t, Remote)]
    if not local and not remote:
        return tuple(tagged)
    actions = [*tagged, PopVlan(), *local]
    if remote:
        assert tunnel is not None, "a remote target needs the tunnel"
        port, vni = tunnel
        actions.append(SetField("tunnel_id", vni))
        for ip in remote:
            actions += [SetField("tun_ipv4_dst", ip), Output(port)]
    return tuple(actions)


def vm_flow(
    mac: str,
    tag: int,
    targets: tuple[Target, ...],
    links: Container[int],
    tunnel: Tunnel | None = None,
) -> Flow:
    """A VM's forwarding flow (its hand-over flow with two targets, back and on)."""
    kind = COOKIE_VM if len(targets) == 1 else COOKIE_HANDOVER
    match = Match(eth_dst=mac, vlan_vid=vid(tag))
    actions = outputs(targets, links, tunnel)
    return Flow(SEGMENT_TABLE, PRIO_VM, match, actions, kind | mac_to_int(mac))


def tunnel_flow(tunnel: Tunnel, tag: int) -> Flow:
    """Frames from the tunnel with the segment's VNI: tagged, on to table 3."""
    port, vni = tunnel
    actions = (PushVlan(), SetField("vlan_vid", vid(tag)), GotoTable(SEGMENT_TABLE))
    match = Match(in_port=port, tunnel_id=vni)
    return Flow(CLASSIFY_TABLE, PRIO_CLASSIFY, match, actions, COOKIE_SEGMENT | tag)


def tunnel_miss(port: int) -> Flow:
    """Frames from the tunnel of no segment held here are dropped (not the default segment's)."""
    return Flow(CLASSIFY_TABLE, PRIO_TUNNEL, Match(in_port=port), (), COOKIE_BASE)


@lru_cache(maxsize=4096)
def gate(port: int) -> Flow:
    """Tagged broadcast and multicast from a flood member go on to table 4."""
    match = Match(in_port=port, eth_dst=MULTICAST_BIT, eth_dst_mask=MULTICAST_BIT)
    actions = (GotoTable(SEGMENT_FLOOD_TABLE),)
    return Flow(SEGMENT_TABLE, PRIO_FLOOD, match, actions, COOKIE_FLOOD | port)


def flood_flow(
    tag: int, members: tuple[Target, ...], links: Container[int], tunnel: Tunnel | None = None
) -> Flow:
    """Segment `tag`'s floods on a switch: to every member (but the input port), one copy
    per overlay host of the segment (head-end replication)."""
    match = Match(eth_dst=MULTICAST_BIT, eth_dst_mask=MULTICAST_BIT, vlan_vid=vid(tag))
    actions = outputs(members, links, tunnel)
    return Flow(SEGMENT_FLOOD_TABLE, PRIO_FLOOD, match, actions, COOKIE_SEGMENT | tag)
