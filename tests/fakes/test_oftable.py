"""FakeOFTable: encoded flow mods applied with OpenFlow 1.3's semantics, frames traced."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofpp

from tests.fakes.oftable import FakeOFTable, SwitchError, Unmodelled
from vportd.core.flow import Flow, FlowCommand, FlowMod, GotoTable, Match, Output, ToController
from vportd.core.pipeline import arrival_flow, base_flows, flood_flows, vm_flow
from vportd.core.topology import Topology
from vportd.southbound.openflow import flowcodec, wire
from vportd_lab.sim.fabric import FakeSwitch as FabricSwitch

VM1, VM2, VM3 = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"
BROADCAST = "ff:ff:ff:ff:ff:ff"
STRANGER = "02:00:00:00:00:99"
TO_1 = Flow(0, 0, Match(), (GotoTable(1),), 0)


def add(flow: Flow) -> bytes:
    return wire.serialize(flowcodec.encode_flow_mod(FlowMod("s", FlowCommand.ADD, flow)), 1)


def delete(flow: Flow) -> bytes:
    return wire.serialize(flowcodec.encode_flow_mod(FlowMod("s", FlowCommand.DELETE, flow)), 1)


def mod(command: int, *, actions: tuple[Any, ...] = (), goto: int | None = None,
        **kw: Any) -> bytes:  # fmt: skip
    """An os-ken OFPFlowMod with any of its fields (match given as `match=dict`)."""
    inst: list[Any] = []
    if actions:
        inst.append(ofpp.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, list(actions)))
    if goto is not None:
        inst.append(ofpp.OFPInstructionGotoTable(goto))
    match = ofpp.OFPMatch(**kw.pop("match", {}))
    kw = {"out_port": ofp.OFPP_ANY, "out_group": ofp.OFPG_ANY, **kw}  # os-ken's default is 0
    msg = ofpp.OFPFlowMod(wire.DATAPATH, command=command, match=match, instructions=inst, **kw)
    return wire.serialize(msg, 1)


def out(port: int, max_len: int = 0) -> Any:
    return ofpp.OFPActionOutput(port, max_len)


def one_switch(*vms: tuple[str, int]) -> list[Flow]:
    """The compiler's pipeline on a switch alone, VMs on the given ports."""
    topo = Topology()
    topo.add_switch("s", 1)
    ports = [port for _, port in vms]
    return [*base_flows(topo, "s"), *flood_flows(topo, "s", ports),
            *(vm_flow(mac, port) for mac, port in vms)]  # fmt: skip


def table_of(*flows: Flow) -> FakeOFTable:
    table = FakeOFTable()
    for flow in flows:
        table.apply(add(flow))
    return table


def refused(table: FakeOFTable, data: bytes) -> str:
    with pytest.raises(SwitchError) as info:
        table.apply(data)
    return info.value.describe()


# -- the compiler's pipeline -----------------------------------------------------------
def test_the_compilers_pipeline_forwards_floods_and_drops() -> None:
    flows = one_switch((VM1, 1), (VM2, 2), (VM3, 3))
    table = table_of(*flows)
    assert table.core_flows() == set(flows)
    assert table.lookup(1, VM1, VM2) == {2}
    assert table.lookup(2, VM2, VM1) == {1}
    assert table.lookup(2, VM2, BROADCAST) == {1, 3}  # every member but the input
    assert table.lookup(1, VM1, "01:00:5e:00:00:01") == {2, 3}  # multicast, by the mask
    assert table.lookup(1, VM1, STRANGER) == set()  # unknown unicast: dropped
    assert table.lookup(9, STRANGER, BROADCAST) == set()  # not a flood member: no flood
    assert table.lookup(1, VM1, VM1) == set()  # never back out of its input port


def test_an_arrival_flow_copies_the_vms_frames_to_the_controller() -> None:
    table = table_of(*one_switch((VM1, 1), (VM2, 2)), arrival_flow(VM3))
    assert table.lookup(1, VM1, VM2) == {2}
    assert table.lookup(3, VM3, VM1) == {"controller", 1}
    (punt,) = table.trace(3, VM3, VM1).punts
    assert (punt.table, punt.cookie) == (0, arrival_flow(VM3).cookie)


def test_delete_strict_removes_exactly_that_flow() -> None:
    flows = one_switch((VM1, 1), (VM2, 2))
    table = table_of(*flows)
    table.apply(delete(vm_flow(VM1, 7)))  # same key, other actions: still that flow
    assert table.core_flows() == set(flows) - {vm_flow(VM1, 1)}
    assert table.lookup(2, VM2, VM1) == set()
    wrong_priority = Flow(1, 99, Match(eth_dst=VM2), (), 0)
    table.apply(delete(wrong_priority))
    assert table.lookup(1, VM1, VM2) == {2}


def test_an_add_with_the_same_table_priority_and_match_replaces() -> None:
    table = table_of(TO_1, vm_flow(VM1, 1))
    moved = Flow(1, 100, Match(eth_dst=VM1), (Output(5),), 0x77)
    table.apply(add(moved))
    assert table.core_flows() == {TO_1, moved}
    assert len(table) == 2
    other_priority = Flow(1, 90, Match(eth_dst=VM1), (Output(6),), 0x78)
    table.apply(add(other_priority))
    assert len(table) == 3
    assert table.lookup(9, VM2, VM1) == {5}  # the higher priority wins


def test_a_full_mask_is_an_exact_match_as_ovs_holds_it() -> None:
    table = FakeOFTable()
    table.apply(mod(ofp.OFPFC_ADD, table_id=1, priority=5,
                    match={"eth_dst": (VM1, "ff:ff:ff:ff:ff:ff")}, actions=(out(1),)))  # fmt: skip
    table.apply(mod(ofp.OFPFC_ADD, table_id=1, priority=5, match={"eth_dst": VM1},
                    actions=(out(2),)))  # fmt: skip
    (entry,) = table.flows()
    assert str(entry) == "table=1 priority=5 cookie=0x0 eth_dst=02:00:00:00:00:01 actions=output:2"
    # bits outside the mask do not count either
    table.apply(mod(ofp.OFPFC_ADD, table_id=1, priority=5,
                    match={"eth_dst": ("03:00:00:00:00:00", "01:00:00:00:00:00")}))  # fmt: skip
    assert {str(f.match[0]) for f in table.flows()} == {
        "eth_dst=02:00:00:00:00:01", "eth_dst=01:00:00:00:00:00/01:00:00:00:00:00",
    }  # fmt: skip


# -- modify and non-strict delete -------------------------------------------------------
def test_non_strict_delete_takes_every_flow_as_specific_or_more() -> None:
    table = FakeOFTable()
    for in_port in (1, 2):
        table.apply(mod(ofp.OFPFC_ADD, table_id=1, priority=10 * in_port,
                        match={"in_port": in_port, "eth_dst": VM1}, actions=(out(3),)))  # fmt: skip
    table.apply(mod(ofp.OFPFC_ADD, table_id=1, priority=5, match={"eth_dst": VM2}))
    table.apply(mod(ofp.OFPFC_ADD, table_id=2, priority=5, match={"eth_dst": VM1}))
    table.apply(mod(ofp.OFPFC_DELETE, table_id=1, match={"eth_dst": VM1}))
    assert [(f.table, f.priority) for f in table.flows()] == [(1, 5), (2, 5)]
    table.apply(mod(ofp.OFPFC_DELETE, table_id=ofp.OFPTT_ALL))
    assert len(table) == 0


def test_delete_selects_by_cookie_under_its_mask_and_by_out_port() -> None:
    table = FakeOFTable()
    for n, cookie in enumerate((0x0100, 0x0101, 0x0200)):
        table.apply(mod(ofp.OFPFC_ADD, table_id=1, priority=n, cookie=cookie,
                        actions=(out(n + 1),)))  # fmt: skip
    table.apply(mod(ofp.OFPFC_DELETE, table_id=ofp.OFPTT_ALL, cookie=0x0100, cookie_mask=0xFF00))
    assert [f.cookie for f in table.flows()] == [0x0200]
    table.apply(mod(ofp.OFPFC_ADD, table_id=1, priority=9, actions=(out(7),)))
    table.apply(mod(ofp.OFPFC_DELETE, table_id=1, out_port=3))
    assert [f.priority for f in table.flows()] == [9]


def test_modify_changes_instructions_not_cookies_and_adds_nothing() -> None:
    table = FakeOFTable()
    table.apply(mod(ofp.OFPFC_ADD, table_id=0, priority=5, cookie=0x42, match={"eth_dst": VM1},
                    actions=(out(1),)))  # fmt: skip
    table.apply(mod(ofp.OFPFC_MODIFY_STRICT, table_id=0, priority=6, cookie=0x43,
                    match={"eth_dst": VM1}, actions=(out(2),)))  # fmt: skip
    assert table.lookup(9, VM2, VM1) == {1}  # other priority: not that flow
    table.apply(mod(ofp.OFPFC_MODIFY, table_id=0, cookie=0x43, actions=(out(2),)))
    (entry,) = table.flows()
    assert (entry.cookie, table.lookup(9, VM2, VM1)) == (0x42, {2})
    table.apply(mod(ofp.OFPFC_MODIFY, table_id=3, actions=(out(2),)))
    assert len(table) == 1


# -- refusals ---------------------------------------------------------------------------
def test_what_a_switch_refuses_gets_its_error_and_changes_nothing() -> None:
    table = FakeOFTable(n_tables=4, max_flows=2)
    table.apply(mod(ofp.OFPFC_ADD, table_id=0, priority=1, match={"in_port": 1}))
    cases = {
        "FLOW_MOD_FAILED/BAD_TABLE_ID": mod(ofp.OFPFC_ADD, table_id=4),
        "BAD_INSTRUCTION/BAD_TABLE_ID": mod(ofp.OFPFC_ADD, table_id=2, goto=1),
        "BAD_ACTION/BAD_OUT_PORT": mod(ofp.OFPFC_ADD, actions=(out(0),)),
        "FLOW_MOD_FAILED/BAD_COMMAND": mod(9),
        "BAD_REQUEST/BUFFER_UNKNOWN": mod(ofp.OFPFC_ADD, buffer_id=7),
        "BAD_MATCH/BAD_MASK": mod(ofp.OFPFC_ADD, match={"in_port": (1, 0xF)}),
        "FLOW_MOD_FAILED/OVERLAP": mod(ofp.OFPFC_ADD, priority=1, match={"eth_dst": VM1},
                                       flags=ofp.OFPFF_CHECK_OVERLAP),
        "BAD_REQUEST/BAD_LEN": b"\x04\x0e\x00\x08\x00\x00\x00\x01",
    }  # fmt: skip
    for want, data in cases.items():
        assert refused(table, data) == want
    table.apply(mod(ofp.OFPFC_ADD, table_id=0, priority=2, match={"eth_dst": VM1}))
    assert refused(table, mod(ofp.OFPFC_ADD, priority=3)) == "FLOW_MOD_FAILED/TABLE_FULL"
    table.apply(mod(ofp.OFPFC_ADD, priority=2, match={"eth_dst": VM1}))  # a replace still fits
    assert len(table) == 2


def test_a_lookup_through_an_unmodelled_action_says_so() -> None:
    table = FakeOFTable()
    set_field = ofpp.OFPActionSetField(eth_dst=VM2)
    table.apply(mod(ofp.OFPFC_ADD, actions=(set_field, out(2))))
    with pytest.raises(Unmodelled):
        table.lookup(1, VM1, VM1)


def test_write_actions_go_when_the_walk_ends_and_a_miss_drops_them() -> None:
    table = FakeOFTable()
    write = ofpp.OFPInstructionActions(ofp.OFPIT_WRITE_ACTIONS, [out(4)])
    to_1 = ofpp.OFPInstructionGotoTable(1)
    table.apply(wire.serialize(ofpp.OFPFlowMod(wire.DATAPATH, instructions=[write, to_1]), 1))
    assert table.lookup(1, VM1, VM2) == set()  # table 1 misses: dropped, action set and all
    table.apply(mod(ofp.OFPFC_ADD, table_id=1, priority=0, actions=(out(5),)))
    assert table.lookup(1, VM1, VM2) == {4, 5}
    assert table.trace(1, VM1, VM2).outputs == (5, 4)
    table.apply(mod(ofp.OFPFC_ADD, table_id=1, priority=1, actions=(out(ofp.OFPP_IN_PORT),)))
    assert table.lookup(1, VM1, VM2) == {1, 4}


# -- against the simulator's fabric switch, which applies the core's FlowMods directly ---------
MACS = [VM1, VM2, VM3, STRANGER, BROADCAST, "01:80:c2:00:00:0e"]
flow_mods = st.lists(
    st.tuples(
        st.booleans(),
        st.sampled_from([
            *one_switch((VM1, 1), (VM2, 2), (VM3, 3)), vm_flow(VM1, 4), arrival_flow(VM2),
            Flow(0, 300, Match(eth_dst=MACS[5]), (ToController(),), 5),
            Flow(1, 100, Match(eth_dst=VM3), (Output(1), Output(2)), 6),
            Flow(0, 0, Match(), (GotoTable(2),), 7),
        ]),
    ),
    max_size=30,
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(flow_mods, st.sampled_from([1, 2, 3, 4]), st.sampled_from(MACS[:3]),
       st.sampled_from(MACS))  # fmt: skip
def test_frames_go_where_the_simulators_fabric_sends_them(
    mods: list[tuple[bool, Flow]], in_port: int, src: str, dst: str
) -> None:
    table, fabric = FakeOFTable(), FabricSwitch("s")
    for adding, flow in mods:
        core = FlowMod("s", FlowCommand.ADD if adding else FlowCommand.DELETE, flow)
        table.apply(wire.serialize(flowcodec.encode_flow_mod(core), 1))
        fabric.apply(core)
    assert table.core_flows() == set(fabric.flows.values())
    outs, punted = fabric.process(in_port, dst, src)
    assert table.lookup(in_port, src, dst) == outs | ({"controller"} if punted else set())
