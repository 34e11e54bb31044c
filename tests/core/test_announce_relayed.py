"""An ARP the VM sends while it still runs at the source never activates its migration.

Regression for the flaky `tests/lab/test_lab_migrate.py` (third hop, `--fail-at
switchover`: the abort got 409 "migration is activated"). From the notify on,
the destination switch holds the arrival flow (table 0, `eth_src` = the VM,
any `in_port`) that copies the VM's frames to its controller. The VM still
runs at the source, and its broadcasts (an ARP request for a peer: the guest
re-resolving a neighbour, or its link flapping when a failed switchover
resumes it) are flooded over the spanning tree, through the destination
switch: they enter it by an inter-switch link, match the arrival flow and came
to `vm_announced`, which activated the migration *on the link's port*. The
VM's flows then pointed at the destination's patch port (a blackhole for
traffic to the VM) and the VMM's abort was refused.

Set-up (see conftest): hv0, hv1, hv2 in a mesh mastered by c0, c1, c2; c0
leads; VM A on hv1 port 1.
"""

from __future__ import annotations

import pytest

from tests.core.support import VM_A, add, entries, link, reach, ready_migration
from vportd.core.errors import MigrationConflict
from vportd.core.model import MigrationState, PortState
from vportd_lab.sim.cluster import SimCluster

BROADCAST = "ff:ff:ff:ff:ff:ff"


def punted_at(sim: SimCluster, switch: str, in_port: int, src: str) -> set[tuple[str, int]]:
    """Where a broadcast from `src` entering `switch` by `in_port` is copied to a controller:
    (switch, the port it entered that switch by), as the controller's packet-in shows it."""
    fabric = sim.fabric
    assert fabric is not None
    punts: set[tuple[str, int]] = set()
    seen: set[tuple[str, int]] = set()
    stack = [(switch, in_port)]
    while stack:
        here, port = stack.pop()
        if (here, port) in seen:
            continue
        seen.add((here, port))
        outs, punt = fabric.switches[here].process(port, BROADCAST, src)
        if punt:
            punts.add((here, port))
        links = sim.topology.link_ports(here)
        stack += [(links[o].switch, links[o].port) for o in outs if o in links]
    return punts


def source_arp(sim: SimCluster) -> list[tuple[str, int]]:
    """The VM, still at the source (hv1 port 1), broadcasts an ARP request; every copy the
    destination's controller gets is fed to it as the runtime's packet-in does."""
    punts = punted_at(sim, "hv1", 1, VM_A)
    assert punts and {s for s, _ in punts} == {"hv2"}  # only the destination punts...
    assert all(sim.topology.is_link(s, p) for s, p in punts)  # ...what a link brought it
    for switch, in_port in punts:
        sim.run(sim.master_of(switch).vm_announced(switch, in_port, VM_A, sim.now))
    sim.deliver_all()
    return sorted(punts)


AT_SOURCE = {("hv1", 1, PortState.UP, MigrationState.MIGRATING)}


@pytest.mark.parametrize("dest_port_known", [True, False])
def test_an_arp_from_the_source_relayed_to_the_destination_does_not_activate(
    sim: SimCluster, dest_port_known: bool
) -> None:
    mid = ready_migration(sim, VM_A, "hv1", "hv2")
    if dest_port_known:  # the destination tap exists (pre-copy), still down
        sim.port_event(add("hv2", 7, VM_A))
        sim.deliver_all()

    source_arp(sim)

    assert sim.leader.migration(mid).state == "ready"
    assert entries(sim, VM_A) == AT_SOURCE
    # still reached at the source (and, once it exists, at the new port by the hand-over)
    expected = {("hv1", 1), ("hv2", 7)} if dest_port_known else {("hv1", 1)}
    assert reach(sim, VM_A) == {frozenset(expected)}


def test_a_failed_switchover_is_aborted_after_the_resumed_vm_sent_an_arp(
    sim: SimCluster,
) -> None:
    """The lab's third hop: the switchover fails, the source VM resumes (its link flaps, it
    ARPs), then the VMM aborts: the abort is taken and the VM stays at the source."""
    mid = ready_migration(sim, VM_A, "hv1", "hv2")
    sim.port_event(add("hv2", 7, VM_A))
    sim.deliver_all()
    sim.port_event(link("hv1", 1, VM_A, up=False))  # stop-and-copy
    sim.port_event(link("hv1", 1, VM_A, up=True))  # the source resumes
    sim.deliver_all()
    source_arp(sim)

    try:
        sim.abort(mid)
    except MigrationConflict as err:  # what the lab's VMM got: 409
        pytest.fail(f"abort refused: {err}")
    sim.deliver_all()

    assert sim.leader.migration(mid).state == "aborted"
    assert entries(sim, VM_A) == {("hv1", 1, PortState.UP, MigrationState.NOT_MIGRATING)}
    assert reach(sim, VM_A) == {frozenset({("hv1", 1)})}


def test_only_the_vms_own_port_at_the_destination_announces_it(sim: SimCluster) -> None:
    """Once the destination's port for the VM is known, an announcement from another edge
    port of that switch (a stray or spoofing port) does not move the VM; one from its
    port does (the RARP may come before the link event: make-before-break)."""
    mid = ready_migration(sim, VM_A, "hv1", "hv2")
    sim.port_event(add("hv2", 7, VM_A))
    sim.deliver_all()

    sim.run(sim.master_of("hv2").vm_announced("hv2", 9, VM_A, sim.now))
    sim.deliver_all()
    assert sim.leader.migration(mid).state == "ready"
    assert entries(sim, VM_A) == AT_SOURCE

    sim.run(sim.master_of("hv2").vm_announced("hv2", 7, VM_A, sim.now))
    sim.deliver_all()
    assert sim.leader.migration(mid).state == "activated"
    assert entries(sim, VM_A) == {("hv2", 7, PortState.UP, MigrationState.MIGRATING)}
    assert reach(sim, VM_A) == {frozenset({("hv2", 7)})}
