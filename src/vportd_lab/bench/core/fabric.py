"""The core benchmark's topology: a pod fabric (a core switch, pod switches, hypervisors)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from vportd.core.topology import Topology

MIN_POD_FABRIC = 4  # fewer switches: a chain of hypervisors
HV_UPLINK = 1  # a hypervisor's port to its pod switch; VM ports come after it


@dataclass(frozen=True, slots=True)
class Fabric:
    topology: Topology
    hypervisors: list[str]
    pods: int
    description: str


def pod_count(switches: int) -> int:
    """About sqrt(switches) - 1 pods: 31 pods of about 31 hypervisors for 1,000."""
    return max(1, round(math.sqrt(switches)) - 1)


def build_fabric(switches: int) -> Fabric:
    """1 core, P pods, the rest hypervisors; tiny sizes fall back to a chain."""
    topo = Topology()
    pods = pod_count(switches) if switches >= MIN_POD_FABRIC else 0
    if pods == 0:
        hvs = [f"hv{i:04d}" for i in range(1, switches + 1)]
        for i, hv in enumerate(hvs):
            topo.add_switch(hv, 0x10000 + i)
        for a, b in itertools.pairwise(hvs):
            topo.add_link(a, 1000, b, 1001)
        return Fabric(topo, hvs, 0, f"{switches} hypervisors in a chain")
    topo.add_switch("core", 1)
    pod_names = [f"pod{i:02d}" for i in range(1, pods + 1)]
    for i, pod in enumerate(pod_names):
        topo.add_switch(pod, 0x100 + i)
        topo.add_link("core", i + 1, pod, 1)
    hvs = [f"hv{i:04d}" for i in range(1, switches - pods)]
    next_port = dict.fromkeys(pod_names, 2)
    for i, hv in enumerate(hvs):
        pod = pod_names[i % pods]
        topo.add_switch(hv, 0x10000 + i)
        topo.add_link(pod, next_port[pod], hv, HV_UPLINK)
        next_port[pod] += 1
    per_pod = math.ceil(len(hvs) / pods)
    text = (
        f"1 core, {pods} pod switches linked to it, {len(hvs)} hypervisors "
        f"(up to {per_pod} per pod) each linked to its pod switch"
    )
    return Fabric(topo, hvs, pods, text)
