"""Tenant segments on the overlay lab, with three controllers: what crosses, what does not.

One lab for the module: 3 hypervisors, 2 segments, 6 VMs. VM k is on hv{k mod 3}
in segment 10·(k mod 2 + 1), so every host has one VM of each segment
(vm0 hv0 10, vm1 hv1 20, vm2 hv2 10, vm3 hv0 20, vm4 hv1 10, vm5 hv2 20):

- every same-segment pair pings, both ways, on one host or across hosts, and
  no cross-segment pair does (ARP gets no answer across segments);
- a broadcast sent in one segment (an ARP request for an address nobody
  has) reaches the segment's VMs on the other hosts (the capture works) and
  none of the other segment's, not even the one on the sender's host;
- an unknown unicast (a frame to a MAC no VM has) reaches no VM of the other
  segment;
- a host holds no flow of a segment it has no VM of: after vm3, the only
  segment-20 VM on hv0, migrates to hv1, hv0's flows no longer match or set
  segment 20's tag or VNI (they did before), while segment 10's stay.

The frames are sent and captured with AF_PACKET sockets inside the VMs'
namespaces (no tcpdump needed).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator

import pytest

from tests.lab import overlay
from tests.lab.overlay import Doc, arp_request, overlay_lab, popen_in, wait_for
from tests.lab.test_lab import pytestmark as lab_marks
from tests.lab.test_lab import vportctl

pytestmark = lab_marks  # root, ovs, skipped unless root

LAYOUT = ("--hypervisors", "3", "--controllers", "3", "--vms", "6", "--segments", "2",
          "--wait", "20")  # fmt: skip
NOBODY_MAC = "02:00:00:00:00:ee"  # no VM has it


@pytest.fixture(scope="module")
def lab() -> Iterator[Doc]:
    with overlay_lab(*LAYOUT) as doc:
        yield doc


def by_name(doc: Doc) -> dict[str, Doc]:
    return {vm["name"]: vm for vm in doc["vms"]}


def test_every_host_has_both_segments(lab: Doc) -> None:
    per_host: dict[str, set[int]] = {hv["name"]: set() for hv in lab["hypervisors"]}
    for vm in lab["vms"]:
        per_host[vm["hypervisor"]].add(vm["segment"])
    assert per_host == {"hv0": {10, 20}, "hv1": {10, 20}, "hv2": {10, 20}}


def test_same_segment_pairs_ping_and_cross_segment_pairs_do_not(lab: Doc) -> None:
    pairs = list(itertools.permutations(lab["vms"], 2))
    results = pings(pairs)
    # a same-segment pair that lost all three to a slow first ARP gets one more try
    retry = [(a, b) for a, b in pairs
             if a["segment"] == b["segment"] and results[a["name"], b["name"]]]  # fmt: skip
    results.update(pings(retry))
    same = {(a["name"], b["name"]): results[a["name"], b["name"]]
            for a, b in pairs if a["segment"] == b["segment"]}  # fmt: skip
    cross = {(a["name"], b["name"]): results[a["name"], b["name"]]
             for a, b in pairs if a["segment"] != b["segment"]}  # fmt: skip
    assert len(same) == 12 and len(cross) == 18
    assert not [pair for pair, rc in same.items() if rc != 0], same
    assert not [pair for pair, rc in cross.items() if rc == 0], cross


def pings(pairs: list[tuple[Doc, Doc]]) -> dict[tuple[str, str], int]:
    """Ping every pair at once (3 probes 0.2 s apart each); each pair's exit status."""
    ping = ("ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "1")
    procs = {(a["name"], b["name"]): popen_in(a["netns"], *ping, b["ip"]) for a, b in pairs}
    return {pair: proc.wait(timeout=30) for pair, proc in procs.items()}


@pytest.mark.parametrize("sender", ["vm0", "vm3"])
def test_a_broadcast_stays_in_its_segment(lab: Doc, sender: str) -> None:
    vms = by_name(lab)
    src = vms[sender]
    frame, marker = arp_request(src, "ff:ff:ff:ff:ff:ff", "10.0.0.250")
    seen = overlay.who_sees(src, frame, marker, [vm for vm in lab["vms"] if vm is not src])
    mates = {vm["name"] for vm in lab["vms"] if vm["segment"] == src["segment"]} - {sender}
    others = {vm["name"] for vm in lab["vms"] if vm["segment"] != src["segment"]}
    assert all(seen[name] > 0 for name in mates), seen  # on the other hosts: the capture works
    assert all(seen[name] == 0 for name in others), seen  # same host included


@pytest.mark.parametrize("sender", ["vm0", "vm3"])
def test_an_unknown_unicast_reaches_no_vm_of_another_segment(lab: Doc, sender: str) -> None:
    vms = by_name(lab)
    src = vms[sender]
    frame, marker = arp_request(src, NOBODY_MAC, "10.0.0.251")
    seen = overlay.who_sees(src, frame, marker, [vm for vm in lab["vms"] if vm is not src])
    others = {vm["name"] for vm in lab["vms"] if vm["segment"] != src["segment"]}
    assert all(seen[name] == 0 for name in others), seen


def segment_flows(hv: Doc, tag: int, vni: int) -> list[str]:
    """hv's flows that match or set segment `tag`'s VLAN or its VNI `vni`."""
    vid, key = 0x1000 | tag, f"{vni:#x}" if vni else "0"  # (OVS prints VNI 0 as 0)
    pattern = re.compile(
        rf"\btun_id={key}\b|\b{key}->tun_id\b|\bdl_vlan={tag}\b|\b{vid}->vlan_vid\b"
        rf"|\bvlan_vid=(0x{vid:x}|{vid})\b|\bmod_vlan_vid:{tag}\b"
    )
    return [f for f in overlay.flows(hv) if pattern.search(f)]


def test_a_host_holds_no_flows_of_a_segment_it_has_no_vm_of(lab: Doc) -> None:
    hv0 = lab["hypervisors"][0]
    vms = by_name(lab)
    assert segment_flows(hv0, 20, 20) and segment_flows(hv0, 10, 10)  # the check sees them
    done = vportctl("lab", "migrate", "vm3", "--to", "hv1", "--dir", lab["dir"],
                    "--precopy", "0.2", "--wait", "20", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outcome"] == "migrated"
    # vm0 (segment 10) is hv0's last VM: segment 20's flows go, segment 10's stay
    assert wait_for(lambda: not segment_flows(hv0, 20, 20)), segment_flows(hv0, 20, 20)
    assert segment_flows(hv0, 10, 10)
    # the moved VM still reaches its segment (on its new host and across) and nothing else
    moved = {**vms["vm3"], "hypervisor": "hv1"}
    results = pings([(moved, vms["vm1"]), (moved, vms["vm5"]), (moved, vms["vm0"])])
    assert results[("vm3", "vm1")] == 0 and results[("vm3", "vm5")] == 0, results
    assert results[("vm3", "vm0")] != 0, results
