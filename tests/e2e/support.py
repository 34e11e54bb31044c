"""A real cluster for end-to-end tests: etcd, N `vportd` processes, a dummy-datapath OVS.

The harness lives in `vportd_lab.bed.cluster` (the cluster benchmark uses it too);
here it is bound to the integration tests' `Fabric`, whose helpers
(`add_vm`, `vsctl`, `appctl`) the tests call through `Cluster.fabric`.
"""

from __future__ import annotations

from tests.integration.support import Fabric
from vportd_lab.bed import cluster as lab
from vportd_lab.bed.cluster import PEER_TOKEN, TOKEN, Node, NodeSettings

__all__ = ["PEER_TOKEN", "TOKEN", "Cluster", "Node", "NodeSettings", "cluster"]


# Controllers on the integration tests' fabric, and the harness that starts them.
Cluster = lab.Cluster[Fabric]
cluster = lab.cluster
