"""The codec: core flows to OpenFlow 1.3 and back, ports, hellos, malformed input."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofpp

from tests.southbound.support import (
    flow_entry,
    foreign_mod,
    hello,
    message,
    multipart_reply,
    os_ken_flow_mod,
    port_entry,
    read_flow_mod,
    stats_entry,
)
from vportd.core.flow import Flow, FlowCommand, FlowMod, GotoTable, Match, Output, ToController
from vportd.core.pipeline import arrival_flow, base_flows, flood_flows, vm_flow
from vportd.core.topology import Topology
from vportd.southbound.openflow import flowcodec, incoming, outgoing, wire

MAC = "02:00:00:00:00:0a"


def line() -> Topology:
    """hv0 (port 10) — (1) hv1 (11) — (1) hv2: hv1 is the root."""
    topo = Topology()
    for i in range(3):
        topo.add_switch(f"hv{i}", i + 1)
    topo.add_link("hv0", 10, "hv1", 1)
    topo.add_link("hv1", 11, "hv2", 1)
    return topo


def every_kind_of_flow() -> list[Flow]:
    topo = line()
    flows = [vm_flow(MAC, 3), arrival_flow(MAC)]
    for switch in topo.switches:
        flows += base_flows(topo, switch)
        flows += flood_flows(topo, switch, [3, 4, 5])
    return flows


def decoded(entries: list[bytes]) -> incoming.FlowStatsReply:
    buf = multipart_reply(ofp.OFPMP_FLOW, b"".join(entries), xid=7)
    record = incoming.decode_message(wire.parse_header(buf), buf)
    assert isinstance(record, incoming.FlowStatsReply)
    return record


def test_the_compiler_makes_every_kind_of_flow_we_test() -> None:
    flows = every_kind_of_flow()
    kinds = {
        "masked default unicast": any(f.match.eth_dst == "00:00:00:00:00:00" for f in flows),
        "masked flood": any(f.match.eth_dst_mask is not None and f.match.in_port for f in flows),
        "table miss": any(f.match == Match() and f.priority == 0 for f in flows),
        "to controller": any(ToController() in f.actions for f in flows),
    }
    assert all(kinds.values()), kinds


@pytest.mark.parametrize("flow", every_kind_of_flow(), ids=str)
def test_decode_of_encode_is_the_same_flow(flow: Flow) -> None:
    assert decoded([flow_entry(flow)]).flows == (flow,)


def test_a_reply_of_many_flows_decodes_to_all_of_them_in_order() -> None:
    flows = every_kind_of_flow()
    reply = decoded([flow_entry(f) for f in flows])
    assert reply.flows == tuple(flows)
    assert reply.foreign == ()
    assert not reply.more


def test_decode_flow_stats_on_an_os_ken_entry() -> None:
    flow = base_flows(line(), "hv0")[1]  # the masked default route
    stats = ofpp.OFPFlowStats.parser(flow_entry(flow), 0)
    assert flowcodec.decode_flow_stats(stats) == flow


def _wire_match(mod: Any) -> dict[str, Any]:
    return dict(read_flow_mod(mod).match.items())


def test_add_carries_cookie_table_priority_match_and_instructions() -> None:
    flow = arrival_flow(MAC)
    packed = flowcodec.encode_flow_mod(FlowMod("hv0", FlowCommand.ADD, flow))
    mod = read_flow_mod(packed)
    assert mod.command == ofp.OFPFC_ADD
    assert (mod.cookie, mod.table_id, mod.priority) == (flow.cookie, flow.table, flow.priority)
    assert _wire_match(packed) == {"eth_src": MAC, "vlan_vid": 0}  # untagged frames only
    apply, goto = mod.instructions
    assert apply.type == ofp.OFPIT_APPLY_ACTIONS
    assert [(a.port, a.max_len) for a in apply.actions] == [(ofp.OFPP_CONTROLLER, 128)]
    assert goto.table_id == 1


def test_delete_is_strict_on_the_same_table_priority_and_match() -> None:
    flow = flood_flows(line(), "hv0", [3])[0]
    packed = flowcodec.encode_flow_mod(FlowMod("hv0", FlowCommand.DELETE, flow))
    mod = read_flow_mod(packed)
    assert mod.command == ofp.OFPFC_DELETE_STRICT
    assert (mod.table_id, mod.priority) == (flow.table, flow.priority)
    assert _wire_match(packed) == {
        "in_port": flow.match.in_port,
        "eth_dst": ("01:00:00:00:00:00", "01:00:00:00:00:00"),
    }
    assert (mod.out_port, mod.out_group, mod.cookie_mask) == (ofp.OFPP_ANY, ofp.OFPG_ANY, 0)
    assert mod.instructions == []


def test_a_flow_that_drops_has_no_instructions() -> None:
    flow = Flow(1, 5, Match(eth_src=MAC), (), 1)
    packed = flowcodec.encode_flow_mod(FlowMod("s", FlowCommand.ADD, flow))
    assert read_flow_mod(packed).instructions == []
    assert decoded([flow_entry(flow)]).flows == (flow,)


def test_a_full_eth_dst_mask_reads_back_as_an_exact_match() -> None:
    masked = Flow(1, 100, Match(eth_dst=MAC, eth_dst_mask="FF:FF:FF:FF:FF:FF"), (Output(1),), 1)
    assert decoded([flow_entry(masked)]).flows[0].match == Match(eth_dst=MAC)


@pytest.mark.parametrize(
    "actions",
    [
        (GotoTable(1), Output(2)),
        (Output(ofp.OFPP_CONTROLLER),),
        (Output(ofp.OFPP_NORMAL),),
        (GotoTable(255),),
    ],
    ids=["goto not last", "output to controller", "output to NORMAL", "bad table"],
)
def test_flows_the_codec_cannot_encode_are_refused_before_anything_is_sent(
    actions: tuple[Any, ...],
) -> None:
    flow = Flow(0, 1, Match(), actions, 1)
    with pytest.raises(wire.CodecError):
        flowcodec.encode_flow_mod(FlowMod("s", FlowCommand.ADD, flow))


def test_out_of_range_priority_and_cookie_are_refused() -> None:
    for flow in (Flow(0, 70000, Match(), (), 1), Flow(0, 1, Match(), (), 1 << 64)):
        with pytest.raises(wire.CodecError):
            flowcodec.encode_flow_mod(FlowMod("s", FlowCommand.ADD, flow))


# -- foreign flows ----------------------------------------------------------------
def test_a_foreign_match_field_raises_with_no_core_key_but_can_be_deleted_exactly() -> None:
    mod = foreign_mod(eth_type=0x0800, ipv4_dst="10.0.0.1")
    stats = ofpp.OFPFlowStats.parser(stats_entry(mod), 0)
    with pytest.raises(flowcodec.ForeignFlowError) as caught:
        flowcodec.decode_flow_stats(stats)
    foreign = caught.value.foreign
    assert (foreign.table, foreign.priority, foreign.cookie) == (0, 7, 0x99)
    assert foreign.key is None
    assert "eth_type" in foreign.reason
    delete = flowcodec.encode_delete_foreign(foreign)
    assert delete.command == ofp.OFPFC_DELETE_STRICT
    assert (delete.table_id, delete.priority) == (0, 7)
    assert dict(delete.match.items()) == {"eth_type": 0x0800, "ipv4_dst": "10.0.0.1"}
    wire.serialize(delete, 1)  # encodes


def test_foreign_actions_keep_the_core_key_so_an_add_can_overwrite_them() -> None:
    reply = decoded([stats_entry(foreign_mod(eth_dst=MAC)), flow_entry(vm_flow(MAC, 2))])
    assert reply.flows == (vm_flow(MAC, 2),)
    (foreign,) = reply.foreign
    assert foreign.key == (0, 7, Match(eth_dst=MAC))
    assert foreign.reason == "outputs to reserved port NORMAL"


def test_timeouts_make_a_flow_foreign() -> None:
    flow = vm_flow(MAC, 2)
    mod = flowcodec.encode_flow_mod(FlowMod("s", FlowCommand.ADD, flow))
    (foreign,) = decoded([stats_entry(mod, hard=30)]).foreign
    assert foreign.key == flow.key
    assert "timeouts" in foreign.reason


def test_write_actions_and_masked_eth_src_are_foreign() -> None:
    write = ofpp.OFPInstructionActions(ofp.OFPIT_WRITE_ACTIONS, [ofpp.OFPActionOutput(1)])
    mod = ofpp.OFPFlowMod(wire.DATAPATH, table_id=1, priority=3, match=ofpp.OFPMatch(),
                          instructions=[write])  # fmt: skip
    masked = foreign_mod(eth_src=(MAC, "ff:ff:ff:00:00:00"))
    reasons = [f.reason for f in decoded([stats_entry(mod), stats_entry(masked)]).foreign]
    assert "OFPInstructionActions" in reasons[0]
    assert "masked eth_src" in reasons[1]


# -- ports ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("config", "state", "up"),
    [
        (0, ofp.OFPPS_LIVE, True),
        (0, ofp.OFPPS_LINK_DOWN, False),
        (ofp.OFPPC_PORT_DOWN, 0, False),
        (ofp.OFPPC_PORT_DOWN, ofp.OFPPS_LINK_DOWN, False),
        (ofp.OFPPC_NO_FWD, ofp.OFPPS_BLOCKED, True),
    ],
)
def test_port_info_link_up_from_state_and_config(config: int, state: int, up: bool) -> None:
    port = incoming.decode_port(port_entry(5, "vm-a", config=config, state=state))
    assert port == incoming.PortInfo(5, "vm-a", "02:00:00:00:00:05", up)
    assert not port.reserved


def test_port_desc_and_port_status_decode() -> None:
    entries = port_entry(1, "p1") + port_entry(ofp.OFPP_LOCAL, "br0")
    buf = multipart_reply(ofp.OFPMP_PORT_DESC, entries, xid=3, more=True)
    record = incoming.decode_message(wire.parse_header(buf), buf)
    assert isinstance(record, incoming.PortDescReply)
    assert record.more
    assert [(p.port_no, p.name, p.reserved) for p in record.ports] == [
        (1, "p1", False),
        (ofp.OFPP_LOCAL, "br0", True),
    ]
    body = struct.pack("!B7x", ofp.OFPPR_DELETE) + port_entry(9, "gone")
    buf = message(ofp.OFPT_PORT_STATUS, body)
    status = incoming.decode_message(wire.parse_header(buf), buf)
    assert status == incoming.PortStatus(
        "delete", incoming.PortInfo(9, "gone", "02:00:00:00:00:09", True)
    )


def test_packet_in_decodes_in_port_and_data() -> None:
    frame = bytes.fromhex("ffffffffffff" + MAC.replace(":", "") + "0806") + b"\0" * 28
    match = ofpp.OFPMatch(in_port=4)
    raw = bytearray(32)
    match_len = match.serialize(raw, 0)
    body = struct.pack("!IHBBQ", ofp.OFP_NO_BUFFER, len(frame), 1, 0, 0x42)
    buf = message(ofp.OFPT_PACKET_IN, body + bytes(raw[:match_len]) + b"\0\0" + frame)
    record = incoming.decode_message(wire.parse_header(buf), buf)
    assert record == incoming.PacketIn(4, frame, 1, 0, 0x42)


# -- hello and other messages -------------------------------------------------------
@pytest.mark.parametrize(
    ("version", "versions", "ok"),
    [
        (4, [4], True),
        (6, [1, 4, 6], True),
        (4, None, True),
        (5, None, True),  # no bitmap: min(theirs, ours) = 1.3
        (1, None, False),
        (6, [5, 6], False),
    ],
)
def test_version_negotiation(version: int, versions: list[int] | None, ok: bool) -> None:
    buf = hello(version, versions)
    record = incoming.decode_message(wire.parse_header(buf), buf)
    assert isinstance(record, incoming.Hello)
    assert record.versions == (None if versions is None else frozenset(versions))
    assert incoming.negotiate(version, record) is ok


def test_our_hello_offers_1_3_only() -> None:
    buf = outgoing.encode_hello()
    head = wire.parse_header(buf)
    assert (head.version, head.msg_type, head.length) == (4, ofp.OFPT_HELLO, len(buf))
    assert incoming.decode_hello(buf).versions == frozenset({4})


def test_error_describes_itself_by_name() -> None:
    body = struct.pack("!HH", ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_TABLE_FULL) + b"x"
    buf = message(ofp.OFPT_ERROR, body, xid=9)
    record = incoming.decode_message(wire.parse_header(buf), buf)
    assert record == incoming.ErrorMsg(ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_TABLE_FULL, b"x")
    assert record.describe() == "FLOW_MOD_FAILED/TABLE_FULL"


def test_messages_we_do_not_act_on_are_not_parsed() -> None:
    buf = message(ofp.OFPT_GET_CONFIG_REPLY, b"\xff")  # would not parse
    assert incoming.decode_message(wire.parse_header(buf), buf) == incoming.Unhandled(
        ofp.OFPT_GET_CONFIG_REPLY
    )
    buf = multipart_reply(ofp.OFPMP_TABLE_FEATURES, b"\0" * 8, xid=1)
    assert isinstance(incoming.decode_message(wire.parse_header(buf), buf), incoming.Unhandled)


def zero_length_instruction() -> bytes:
    entry = bytearray(flow_entry(vm_flow(MAC, 1)))
    inst_at = ofp.OFP_FLOW_STATS_0_SIZE + 16  # the eth_dst match is 14 bytes, padded to 16
    struct.pack_into("!H", entry, inst_at + 2, 0)
    return bytes(entry)


@pytest.mark.parametrize(
    "buf",
    [
        message(99),
        message(ofp.OFPT_PORT_STATUS, b"\0" * 10),
        message(ofp.OFPT_ERROR, b"\0"),
        message(ofp.OFPT_FEATURES_REPLY, b"\0" * 3),
        multipart_reply(ofp.OFPMP_FLOW, b"\0" * 56, xid=1),  # entry length 0
        multipart_reply(ofp.OFPMP_FLOW, zero_length_instruction(), xid=1),
        multipart_reply(ofp.OFPMP_FLOW, flow_entry(vm_flow(MAC, 1))[:60], xid=1),
        multipart_reply(ofp.OFPMP_PORT_DESC, b"\0" * 30, xid=1),
        message(ofp.OFPT_HELLO, struct.pack("!HH", 1, 0)),  # hello element of length 0
    ],
    ids=[
        "unknown type", "short port status", "short error", "short features",
        "zero-length flow stats entry", "zero-length instruction", "truncated entry",
        "short port desc", "zero-length hello element",
    ],
)  # fmt: skip
def test_malformed_bodies_raise_codec_error_and_never_hang(buf: bytes) -> None:
    head = wire.parse_header(buf)
    assert head.length == len(buf)
    with pytest.raises(wire.CodecError):
        incoming.decode_message(head, buf)


def test_packed_flow_mods_are_os_kens_byte_for_byte() -> None:
    """Flow mods are packed here: their bytes are the ones os-ken builds."""
    flows = [*flood_flows(line(), "hv0", [3]), arrival_flow(MAC), *base_flows(line(), "hv0")]
    for flow in flows:
        for command in FlowCommand:
            mod = FlowMod("hv0", command, flow)
            fresh = os_ken_flow_mod(mod)
            assert wire.serialize(flowcodec.encode_flow_mod(mod), 7) == wire.serialize(fresh, 7)


@pytest.mark.parametrize(
    "match",
    [
        Match(in_port=1, eth_dst=MAC),
        Match(eth_src=MAC, in_port=4_000_000_000),
        Match(eth_dst="03:00:00:00:00:07", eth_dst_mask="01:00:00:00:00:00", in_port=5),
        Match(eth_dst="ff:ff:ff:ff:ff:ff", eth_dst_mask="ff:ff:ff:ff:ff:ff", eth_src=MAC),
        Match(),
    ],
)
def test_packed_match_bytes_are_os_kens(match: Match) -> None:
    """The match packed without os-ken is, byte for byte, the one os-ken builds."""
    flow = Flow(1, 5, match, (Output(2), ToController(64), GotoTable(3)), 9)
    mod = FlowMod("s", FlowCommand.ADD, flow)
    ours = flowcodec.encode_flow_mod(mod)
    assert wire.serialize(ours, 1) == wire.serialize(os_ken_flow_mod(mod), 1)


@pytest.mark.parametrize("mac", ["02:00:00:00:00", "02-00-00-00-00-01", "zz:00:00:00:00:01"])
def test_a_match_on_a_malformed_mac_is_a_codec_error(mac: str) -> None:
    with pytest.raises(wire.CodecError):
        flowcodec.encode_flow_mod(
            FlowMod("s", FlowCommand.ADD, Flow(1, 5, Match(eth_dst=mac), (), 1))
        )
