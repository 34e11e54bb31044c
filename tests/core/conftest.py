"""Fixtures for the core tests."""

from __future__ import annotations

import pytest

from tests.core.support import VM_A, VM_B, VM_C, boot, cluster
from vportd_lab.sim.cluster import SimCluster


@pytest.fixture
def sim() -> SimCluster:
    """Three hypervisors in a mesh, three controllers (c0 leads), a VM on each."""
    s = cluster()
    boot(s, VM_A, "hv1", 1)
    boot(s, VM_B, "hv2", 1)
    boot(s, VM_C, "hv0", 1)
    return s
