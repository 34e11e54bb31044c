"""A real cluster for end-to-end tests: etcd, N `vportd` processes, a dummy-datapath OVS.

The harness lives in `vportd.lab.cluster` (the cluster benchmark uses it too);
here it is bound to the integration tests' `Fabric`, whose helpers
(`add_vm`, `vsctl`, `appctl`) the tests call through `Cluster.fabric`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from tests.integration.support import Fabric
from vportd.lab import cluster as lab
from vportd.lab.cluster import PEER_TOKEN, TOKEN, Node, NodeSettings
from vportd.lab.etcd import PrivateEtcd

__all__ = ["PEER_TOKEN", "TOKEN", "Cluster", "Node", "NodeSettings", "cluster"]


class Cluster(lab.Cluster[Fabric]):
    """Controllers on the integration tests' fabric."""


@contextlib.asynccontextmanager
async def cluster(
    tmp: Path, fabric: Fabric, etcd: PrivateEtcd, size: int = 3
) -> AsyncIterator[Cluster]:
    c = Cluster(tmp, fabric, etcd, size)
    try:
        await c.start()
        yield c
    except BaseException:
        c.show_logs()
        raise
    finally:
        c.stop()
