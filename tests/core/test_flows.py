"""The flow compiler and the topology, judged by where frames go in the fake fabric."""

from __future__ import annotations

import pytest

from tests.core.support import VM_A, VM_B, VM_C, boot, mesh
from vportd.core.compiler import FlowCompiler
from vportd.core.errors import InvalidRequest, UnknownSwitch
from vportd.core.flow import FLOOD_TABLE, FORWARD_TABLE, Flow, Match
from vportd.core.installed import SwitchFlows
from vportd.core.pipeline import base_flows, vm_flow
from vportd.core.topology import Topology
from vportd_lab.bench.core.fabric import build_fabric
from vportd_lab.bench.core.timed import TimedCluster
from vportd_lab.bench.core.workload import Workload
from vportd_lab.sim.cluster import SimCluster

BROADCAST = "ff:ff:ff:ff:ff:ff"


def tree(pods: int = 3, per_pod: int = 3) -> Topology:
    """core — pod{i} — hv{i}.{j}; ports: core i → pod i port 1; pod port 10+j → hv port 1."""
    topo = Topology()
    topo.add_switch("core", 1)
    dpid = 2
    for i in range(pods):
        topo.add_switch(f"pod{i}", dpid)
        topo.add_link("core", 10 + i, f"pod{i}", 1)
        dpid += 1
        for j in range(per_pod):
            topo.add_switch(f"hv{i}.{j}", dpid)
            topo.add_link(f"pod{i}", 10 + j, f"hv{i}.{j}", 1)
            dpid += 1
    return topo


def test_every_vm_is_reached_from_every_switch_and_only_through_its_port(sim: SimCluster) -> None:
    assert sim.fabric is not None
    places = {VM_A: ("hv1", 1), VM_B: ("hv2", 1), VM_C: ("hv0", 1)}
    for mac, place in places.items():
        for switch in ("hv0", "hv1", "hv2"):
            assert sim.fabric.deliveries(switch, 99, mac) == {place}


def test_broadcast_reaches_every_other_vm_once_despite_the_loop(sim: SimCluster) -> None:
    assert sim.fabric is not None
    # The mesh has a loop (hv0-hv1-hv2); the flood follows a spanning tree.
    assert sim.fabric.deliveries("hv1", 1, BROADCAST, VM_A) == {("hv2", 1), ("hv0", 1)}


def test_unknown_unicast_is_dropped_not_flooded(sim: SimCluster) -> None:
    assert sim.fabric is not None
    assert sim.fabric.deliveries("hv1", 1, "02:00:00:00:00:77") == set()


def test_a_tree_keeps_hypervisor_tables_small_by_default_routes() -> None:
    topo = tree()
    sim = SimCluster.build(topo, 3, masters={s: "c0" for s in topo.switches})
    boot(sim, VM_A, "hv0.0", 5)
    boot(sim, VM_B, "hv2.1", 5)
    assert sim.fabric is not None
    for switch in topo.switches:
        assert sim.fabric.deliveries(switch, 99, VM_A) == {("hv0.0", 5)}
        assert sim.fabric.deliveries(switch, 99, VM_B) == {("hv2.1", 5)}
    per_vm = {
        s: sum(1 for f in sw.flows.values() if f.match.eth_dst in (VM_A, VM_B))
        for s, sw in sim.fabric.switches.items()
    }
    # A VM's flow sits on its hypervisor, its pod switch and the core: nowhere else.
    assert {s for s, n in per_vm.items() if n} == {"hv0.0", "pod0", "hv2.1", "pod2", "core"}


def test_the_default_port_points_to_the_root_and_exceptions_are_shortest_steps() -> None:
    topo = tree()
    assert topo.root == "core"
    assert topo.default_port("hv1.2") == 1
    assert topo.default_port("core") is None
    assert topo.exceptions("hv1.2") == {"pod1": 12, "core": 11}


def test_reconnect_corrects_only_the_difference(sim: SimCluster) -> None:
    c1 = sim.controllers["c1"]
    installed = c1.installed("hv1")
    c1.switch_gone("hv1")
    assert c1.flows_read("hv1", installed).flow_mods == []  # nothing to do: all in place

    missing, *kept = installed
    stray = Flow(1, 100, Match(eth_dst="02:00:00:00:00:66"), missing.actions, 7)
    c1.switch_gone("hv1")
    # What the switch reports after a restart.
    mods = c1.flows_read("hv1", [*kept, stray]).flow_mods

    assert sorted((m.command.value, m.flow) for m in mods) == sorted(
        [("add", missing), ("delete", stray)], key=lambda t: t[0]
    )


def test_topology_refuses_what_cannot_be() -> None:
    topo = mesh(2)
    with pytest.raises(InvalidRequest):
        topo.add_link("hv0", 5, "hv0", 6)
    with pytest.raises(UnknownSwitch):
        topo.add_link("hv0", 5, "hv7", 6)
    with pytest.raises(InvalidRequest):
        topo.add_switch("hv9", 1)  # dpid 1 is hv0's


def test_a_link_change_recomputes_paths() -> None:
    topo = mesh(3)
    assert topo.root == "hv0"  # in a mesh every switch is as central: the first wins
    assert topo.exceptions("hv2") == {"hv0": 102, "hv1": 102}
    topo.remove_link("hv1", 102)
    assert topo.exceptions("hv2") == {"hv0": 102}
    assert topo.default_port("hv1") == 100


def test_one_flood_flow_per_switch_behind_a_gate_per_member() -> None:
    topo = tree()
    sim = SimCluster.build(topo, 3, masters={s: "c0" for s in topo.switches})
    boot(sim, VM_A, "hv0.0", 5)
    boot(sim, VM_B, "hv0.0", 6)
    boot(sim, VM_C, "hv2.1", 5)
    assert sim.fabric is not None
    flows = sim.fabric.switches["hv0.0"].flows.values()
    floods = [f for f in flows if f.table == FLOOD_TABLE]
    gates = sorted(
        f.match.in_port or 0 for f in flows if f.table == FORWARD_TABLE and f.priority == 50
    )
    assert len(floods) == 1
    assert gates == [1, 5, 6]  # the uplink (a tree link) and the two VMs' ports
    # Every other VM gets a broadcast once, the sender never gets it back.
    assert sim.fabric.deliveries("hv0.0", 5, BROADCAST, VM_A) == {("hv0.0", 6), ("hv2.1", 5)}
    assert sim.fabric.deliveries("hv2.1", 5, BROADCAST, VM_C) == {("hv0.0", 5), ("hv0.0", 6)}
    # A port without a VM floods nothing.
    assert sim.fabric.deliveries("hv0.0", 7, BROADCAST) == set()


def test_a_broadcast_entering_by_a_link_off_the_tree_goes_nowhere(sim: SimCluster) -> None:
    assert sim.fabric is not None
    tree_links = {s: sim.topology.tree_ports(s) for s in sim.topology.switches}
    off_tree = [
        (s, p) for s in sim.topology.switches for p in sim.topology.link_ports(s)
        if p not in tree_links[s]
    ]  # fmt: skip
    assert off_tree  # the mesh has a loop: one of its links is off the tree
    for switch, port in off_tree:
        assert sim.fabric.deliveries(switch, port, BROADCAST, VM_A) == set()


def test_incremental_flows_are_what_a_full_compile_makes() -> None:
    """After boots, moves, flaps, aborts and removals, every switch holds what compiling
    the final table from scratch gives, and a reconnect changes nothing."""
    fabric = build_fabric(40)
    cluster = TimedCluster(SimCluster.build(fabric.topology, 3, fabric=False))
    Workload(cluster, fabric.hypervisors).run(3000)
    for ctl in cluster.sim.controllers.values():
        for switch in sorted(s.name for s in ctl.switches() if ctl.mastered(s.name)):
            fresh = FlowCompiler(fabric.topology, [switch])
            fresh.sync_switch(switch, ctl.records())
            held = ctl.installed(switch)
            assert sorted(held, key=str) == sorted(fresh.installed[switch].values(), key=str)
            ctl.switch_gone(switch)  # a reconnect reads back what the switch holds
            assert ctl.flows_read(switch, held).flow_mods == [], switch


def test_switch_flows_hold_a_vm_flow_compactly_and_any_other_flow_as_it_is() -> None:
    mac = "02:00:00:00:00:0a"
    plain = vm_flow(mac, 5)
    odd = Flow(FORWARD_TABLE, 100, Match(eth_dst=mac), plain.actions, 7)  # another cookie
    base = base_flows(mesh(2), "hv1")
    table = SwitchFlows([plain, *base])
    n = 1 + len(base)
    assert table[plain.key] == plain and plain.key in table and len(table) == n
    assert sorted(table.values(), key=str) == sorted([plain, *base], key=str)
    table[odd.key] = odd  # what a switch may report: kept as it is, under the same key
    assert table[plain.key] == odd and len(table) == n
    table.set_vm(mac, 6)  # the compiler's write replaces it
    assert table[plain.key] == vm_flow(mac, 6) and len(table) == n
    table[odd.key] = odd
    assert table.pop_vm(mac) == odd and plain.key not in table and len(table) == n - 1
    assert dict(SwitchFlows([plain, odd]).items()) == {odd.key: odd}
