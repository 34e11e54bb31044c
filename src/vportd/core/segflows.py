"""The flows of the tagged segments: tables 0, 3 and 4 (see `pipeline`'s docstring).

Inside a switch, and on the links between switches, a frame of segment S != 0
carries an 802.1Q header with VID S: pushed as it enters from a VM port of
S, popped as it leaves to one. Tables 3 and 4 are tables 1 and 2 for tagged
frames, every flow matching the tag: no frame of one segment reaches a flow
of another.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
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


def classification_flows(topology: Topology, switch: str) -> list[Flow]:
    """Table 0 without the VMs (but `MISS`): untagged frames to table 1, tagged frames
    from links to table 3; anything else (a VM's own tag on an untagged port) is dropped."""
    flows = [
        Flow(CLASSIFY_TABLE, PRIO_UNTAGGED, _UNTAGGED, (GotoTable(FORWARD_TABLE),), COOKIE_BASE),
    ]
    for port in sorted(topology.link_ports(switch)):
        match = Match(in_port=port, vlan_vid=VID_PRESENT, vlan_vid_mask=VID_PRESENT)
        flows.append(Flow(CLASSIFY_TABLE, PRIO_TAGGED, match, _TO_SEGMENT, COOKIE_BASE))
    return flows


def segment_default(topology: Topology, switch: str) -> list[Flow]:
    """Table 3's default route: tagged unicast for a MAC with no flow here, towards the root."""
    default = topology.default_port(switch)
    if default is None:
        return []
    return [Flow(SEGMENT_TABLE, PRIO_DEFAULT, _UNICAST, (Output(default),), COOKIE_BASE)]


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


def outputs(ports: Iterable[int], links: Container[int]) -> tuple[Action, ...]:
    """To `ports`: tagged to links, then the tag popped, untagged to VM ports."""
    ports = list(ports)
    tagged = [Output(p) for p in ports if p in links]
    local = [Output(p) for p in ports if p not in links]
    return (*tagged, PopVlan(), *local) if local else tuple(tagged)


def vm_flow(mac: str, tag: int, ports: tuple[int, ...], links: Container[int]) -> Flow:
    """A VM's forwarding flow (its hand-over flow with two ports, back and on)."""
    kind = COOKIE_VM if len(ports) == 1 else COOKIE_HANDOVER
    match = Match(eth_dst=mac, vlan_vid=vid(tag))
    return Flow(SEGMENT_TABLE, PRIO_VM, match, outputs(ports, links), kind | mac_to_int(mac))


@lru_cache(maxsize=4096)
def gate(port: int) -> Flow:
    """Tagged broadcast and multicast from a flood member go on to table 4."""
    match = Match(in_port=port, eth_dst=MULTICAST_BIT, eth_dst_mask=MULTICAST_BIT)
    actions = (GotoTable(SEGMENT_FLOOD_TABLE),)
    return Flow(SEGMENT_TABLE, PRIO_FLOOD, match, actions, COOKIE_FLOOD | port)


def flood_flow(tag: int, members: tuple[int, ...], links: Container[int]) -> Flow:
    """Segment `tag`'s floods on a switch: to every member (but the input port)."""
    match = Match(eth_dst=MULTICAST_BIT, eth_dst_mask=MULTICAST_BIT, vlan_vid=vid(tag))
    actions = outputs(members, links)
    return Flow(SEGMENT_FLOOD_TABLE, PRIO_FLOOD, match, actions, COOKIE_SEGMENT | tag)
