"""The flow compiler is incremental; what it holds must equal a compile from scratch.

Random sequences of VMs booting, moving, leaving, changing segment and
migrating (every phase), with the topology's version bumped now and then
(the compiler drops what it keeps of paths then), on the overlay (hosts
joined by tunnels) and on a mesh of links, with all or some switches
mastered and mastership changing (a gained switch is synced once its flows
are read, as the controller does). After every step, each mastered switch
whose flows were read holds what a new compiler installs from the same
entries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core.support import mesh
from vportd.core.compiler import FlowCompiler
from vportd.core.model import Location, MigrationMark, Phase, VPortRecord
from vportd.core.topology import Topology
from vportd.core.tunnels import TunnelEndpoint, Tunnels

HOSTS = ("hv0", "hv1", "hv2")
VMS = tuple(f"02:00:00:00:00:{i:02x}" for i in range(1, 6))
TAGS = (0, 10, 20)


@dataclass
class World:
    """A fabric, its entries, and the compiler under test."""

    topology: Topology
    tunnels: Tunnels
    switches: set[str]
    records: dict[str, VPortRecord] = field(default_factory=dict)
    synced: set[str] = field(default_factory=set)  # (mastered, and their flows read)
    seq: int = 0
    bumps: int = 0

    def __post_init__(self) -> None:
        self.compiler = FlowCompiler(self.topology, self.switches, tunnels=self.tunnels)
        for switch in self.switches:  # (its base flows, as on a switch's connect)
            self.compiler.sync_switch(switch, [])
        self.synced = set(self.switches)

    def put(self, rec: VPortRecord) -> None:
        self.records[rec.vm] = rec
        self.compiler.update_vm(rec)

    def scratch(self) -> dict[str, dict[object, object]]:
        fresh = FlowCompiler(self.topology, self.switches, tunnels=self.tunnels)
        for switch in self.synced:
            fresh.sync_switch(switch, list(self.records.values()))
        return {s: dict(fresh.installed[s].items()) for s in self.synced}

    def held(self) -> dict[str, dict[object, object]]:
        return {s: dict(self.compiler.installed[s].items()) for s in self.synced}


def overlay(switches: set[str]) -> World:
    topo = Topology()
    for i, host in enumerate(HOSTS):
        topo.add_switch(host, i + 1)
    tunnels = Tunnels()
    tunnels.set(TunnelEndpoint(h, f"192.0.2.{i + 1}", 99) for i, h in enumerate(HOSTS))
    return World(topo, tunnels, switches)


def links(switches: set[str]) -> World:
    return World(mesh(3), Tunnels(), switches)


def place(w: World, vm: str, host: str, tag: int, mig: MigrationMark | None = None) -> None:
    w.seq += 1
    port = VMS.index(vm) + 1 + (10 if host != "hv0" else 0)
    w.put(VPortRecord(vm, Location(host, port, None, True, w.seq, 0, "c0", segment=tag), mig))


def step(w: World, op: str, vm: str, host: str, tag: int) -> None:
    rec = w.records.get(vm)
    here = None if rec is None else rec.loc.ovs
    mig = None if rec is None else rec.mig
    open_ = mig is not None and mig.phase < Phase.ACTIVATED
    if op == "boot" and not open_:
        place(w, vm, host, tag)
    elif op == "leave" and rec is not None and here is not None and not open_:
        w.seq += 1
        w.put(VPortRecord(vm, rec.loc.gone("c0"), mig))
    elif op == "migrate" and rec is not None and here not in (None, host) and not open_:
        assert here is not None
        epoch = 1 if mig is None else mig.epoch + 1
        port = 50 + VMS.index(vm)
        mark = MigrationMark(epoch, f"m{epoch}", here, host, rec.loc.seq, Phase.SYNCED, "c0")
        w.put(VPortRecord(vm, rec.loc, mark))
        arrived = mark.at_port(Phase.ARRIVED, "c0", port, None, rec.loc.segment)
        w.put(VPortRecord(vm, rec.loc, arrived))
    elif op == "activate" and rec is not None and mig is not None and open_:
        place(w, vm, mig.destination, rec.loc.segment, mig.advance(Phase.ACTIVATED, "c0"))
    elif op == "complete" and rec is not None and mig is not None and mig.phase == Phase.ACTIVATED:
        w.put(VPortRecord(vm, rec.loc, mig.advance(Phase.COMPLETED, "c0")))
    elif op == "master":  # (a mastership change: as the controller's gain and loss)
        if host in w.switches:
            w.switches.discard(host)
            w.synced.discard(host)
            w.compiler.release(host)
        else:
            w.switches.add(host)
            w.compiler.master(host)  # (its flows are read, and it is synced, later: "read")
    elif op == "read" and host in w.switches:
        w.synced.add(host)
        w.compiler.sync_switch(host, list(w.records.values()))
    elif op == "bump":
        w.bumps += 1
        w.topology.add_switch(f"far{w.bumps}", 100 + w.bumps)  # (no link: changes no path)


OPS = st.tuples(
    st.sampled_from(
        ["boot", "boot", "leave", "migrate", "activate", "complete", "master", "read", "bump"]
    ),
    st.sampled_from(VMS),
    st.sampled_from(HOSTS),
    st.sampled_from(TAGS),
)


@settings(max_examples=300, deadline=None)
@given(
    fabric=st.sampled_from([overlay, links]),
    switches=st.sampled_from([HOSTS, ("hv0",), ("hv1", "hv2")]),
    ops=st.lists(OPS, max_size=40),
)
def test_incremental_flows_equal_a_compile_from_scratch(
    fabric: Callable[[set[str]], World],
    switches: tuple[str, ...],
    ops: list[tuple[str, str, str, int]],
) -> None:
    w = fabric(set(switches))
    for op in ops:
        step(w, *op)
        assert w.held() == w.scratch(), op


def test_one_switch_released_and_another_mastered_between_two_updates() -> None:
    """As many switches as before, other ones: nothing kept names the released one."""
    w = overlay({"hv0", "hv2"})
    step(w, "boot", VMS[0], "hv1", 10)
    step(w, "boot", VMS[1], "hv2", 10)  # hv0 holds a path to hv1's VMs, hv2 too
    step(w, "master", VMS[0], "hv2", 0)  # released
    step(w, "master", VMS[0], "hv1", 0)  # mastered, its flows not read yet
    step(w, "boot", VMS[2], "hv1", 10)
    assert w.held() == w.scratch()
