"""The default segment on the overlay lab: untagged VMs reach each other across hosts.

One lab for the module: 3 hypervisors, 3 controllers, 4 untagged VMs (vm0 and
vm3 on hv0, vm1 on hv1, vm2 on hv2). The default segment travels between
hosts as its VNI (0), and a host without any VM of it holds none of its flows:

- every pair pings, on one host and across hosts;
- a broadcast reaches every other VM;
- after vm1, hv1's only VM, migrates to hv2, hv1 holds no flow that matches or
  sets VID 0 or VNI 0, and vm1 still reaches the others from its new host.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import pytest

from tests.lab import overlay
from tests.lab.overlay import Doc, arp_request, overlay_lab, wait_for
from tests.lab.test_lab import pytestmark as lab_marks
from tests.lab.test_lab import vportctl
from tests.lab.test_overlay_isolation import by_name, pings, segment_flows

pytestmark = lab_marks  # root, ovs, skipped unless root

LAYOUT = ("--hypervisors", "3", "--controllers", "3", "--vms", "4", "--segments", "1",
          "--wait", "20")  # fmt: skip


@pytest.fixture(scope="module")
def lab() -> Iterator[Doc]:
    with overlay_lab(*LAYOUT) as doc:
        yield doc


def test_the_vms_are_untagged_on_three_hosts(lab: Doc) -> None:
    assert {vm["segment"] for vm in lab["vms"]} == {0}
    assert {vm["hypervisor"] for vm in lab["vms"]} == {"hv0", "hv1", "hv2"}
    assert lab["segments"] == [{"tag": 0, "vni": 0, "name": "default"}]


def test_every_pair_pings_across_hosts(lab: Doc) -> None:
    pairs = list(itertools.permutations(lab["vms"], 2))
    results = pings(pairs)
    results.update(pings([(a, b) for a, b in pairs if results[a["name"], b["name"]]]))
    assert not [pair for pair, rc in results.items() if rc != 0], results


def test_a_broadcast_reaches_every_other_vm(lab: Doc) -> None:
    src = by_name(lab)["vm0"]
    frame, marker = arp_request(src, "ff:ff:ff:ff:ff:ff", "10.0.0.250")
    seen = overlay.who_sees(src, frame, marker, [vm for vm in lab["vms"] if vm is not src])
    assert all(count > 0 for count in seen.values()), seen


def test_a_host_without_untagged_vms_holds_no_flow_of_the_default_segment(lab: Doc) -> None:
    hv1 = lab["hypervisors"][1]
    vms = by_name(lab)
    assert segment_flows(hv1, 0, 0)  # the check sees them
    done = vportctl("lab", "migrate", "vm1", "--to", "hv2", "--dir", lab["dir"],
                    "--precopy", "0.2", "--wait", "20", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outcome"] == "migrated"
    assert wait_for(lambda: not segment_flows(hv1, 0, 0)), segment_flows(hv1, 0, 0)
    moved = {**vms["vm1"], "hypervisor": "hv2"}
    results = pings([(moved, vms["vm0"]), (moved, vms["vm3"]), (moved, vms["vm2"])])
    assert set(results.values()) == {0}, results
