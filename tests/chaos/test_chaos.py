"""Chaos: the leader, the source's master, the destination's master and etcd hit at five
moments of a live migration on a lab (3 controllers, 3 hypervisors, 4 VMs).

Faults (`faults.KINDS`): kill -9 of the leader, of the source's master, of the
destination's master (each started again a second later), etcd stopped
(SIGSTOP) for 5 s, etcd killed (kill -9, started again 5 s later on its
data). Moments (`vportd_lab.bed.migrate.MOMENTS`): before the notify, during
the handshake, in the pre-copy, right after the switchover, right after the
source delete. The VMM (`vmm`) retries as `vportctl migrate` does and tries a
failed migration again whole; `checks` says what must hold after each case.
"""

from __future__ import annotations

import os

import pytest

from tests.chaos import case
from tests.chaos.faults import KINDS
from tests.chaos.harness import ChaosLab
from vportd_lab.bed.migrate import MOMENTS

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.root,
    pytest.mark.ovs,
    pytest.mark.etcd,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces, veths, OVS)"),
]


@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize("kind", KINDS)
def test_fault_at_a_moment_of_a_migration(chaos_lab: ChaosLab, kind: str, moment: str) -> None:
    result = case.run(chaos_lab, kind, moment)
    assert not result.failures, result.message()
