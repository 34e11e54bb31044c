"""The codec of the segments' and tunnels' flows: VLAN and tunnel matches, push/pop VLAN,
set_field of vlan_vid, tunnel_id and tun_ipv4_dst (a Nicira field), byte for byte os-ken's,
and back."""

from __future__ import annotations

import pytest

from tests.southbound.support import flow_entry, os_ken_flow_mod
from tests.southbound.test_ofcodec import decoded
from vportd.core.flow import (
    Flow,
    FlowCommand,
    FlowMod,
    GotoTable,
    Match,
    Output,
    PopVlan,
    PushVlan,
    SetField,
)
from vportd.southbound.openflow import flowcodec, wire

MAC = "02:00:00:00:00:0a"

FLOWS = [
    Flow(0, 100, Match(in_port=3), (PushVlan(), SetField("vlan_vid", 0x100A), GotoTable(3)), 7),
    Flow(0, 100, Match(in_port=9, vlan_vid=0x1000, vlan_vid_mask=0x1000), (GotoTable(3),), 7),
    Flow(0, 1, Match(vlan_vid=0x1000, vlan_vid_mask=0x1000), (), 7),
    Flow(3, 100, Match(eth_dst=MAC, vlan_vid=0x100A), (Output(9), PopVlan(), Output(3)), 8),
    Flow(0, 200, Match(eth_src=MAC, vlan_vid=0), (PushVlan(), GotoTable(3)), 8),
    Flow(0, 100, Match(in_port=7, tunnel_id=5010), (PushVlan(), GotoTable(3)), 9),
    Flow(
        3, 100, Match(eth_dst=MAC, vlan_vid=0x100A),
        (PopVlan(), SetField("tun_ipv4_dst", "192.0.2.7"), SetField("tunnel_id", 5010), Output(7)),
        9,
    ),
]  # fmt: skip


@pytest.mark.parametrize("flow", FLOWS, ids=str)
def test_packed_like_os_ken_and_read_back(flow: Flow) -> None:
    for command in FlowCommand:
        mod = FlowMod("s", command, flow)
        ours = wire.serialize(flowcodec.encode_flow_mod(mod), 3)
        assert ours == wire.serialize(os_ken_flow_mod(mod), 3)
    assert decoded([flow_entry(flow)]).flows == (flow,)


@pytest.mark.parametrize(
    "action",
    [SetField("tun_ipv4_dst", "::1"), SetField("vlan_vid", 0x2000), SetField("eth_dst", 1)],
    ids=str,
)
def test_a_field_the_core_cannot_set_is_refused(action: SetField) -> None:
    flow = Flow(3, 5, Match(), (action,), 1)
    with pytest.raises(wire.CodecError):
        flowcodec.encode_flow_mod(FlowMod("s", FlowCommand.ADD, flow))
