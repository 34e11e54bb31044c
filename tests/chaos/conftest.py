"""The chaos tier's lab: one for the package (3 controllers, 3 hypervisors, 4 VMs), down after.

`lab up` takes seconds and every case starts by waiting for a settled
cluster, so the cases share one lab; `lab down` removes it whatever
happened (the lab tests' `fresh_lab_dir`), and skips the tier, saying why,
while another lab holds the machine's one userspace datapath. With
$VPORTD_CHAOS_LOGS set, the controllers' logs are kept there, and with
$VPORTD_CHAOS_REPORT, one JSON line per case (`case.Result.save`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.harness import ChaosLab
from tests.lab.conftest import fresh_lab_dir
from tests.lab.test_lab import up

LOGS_ENV = "VPORTD_CHAOS_LOGS"  # a directory: the controllers' logs are copied there at the end


@pytest.fixture(scope="package")
def chaos_lab() -> Iterator[ChaosLab]:
    with fresh_lab_dir() as lab_dir:
        result, _ = up(lab_dir, "--controllers", "3", "--hypervisors", "3", "--vms", "4")
        assert result.returncode == 0, result.stderr
        lab = ChaosLab.open(lab_dir)
        try:
            yield lab
        finally:
            lab.start_etcd()  # a stopped etcd is continued: `lab down` then stops it cleanly
            keep = os.environ.get(LOGS_ENV)
            if keep:
                Path(keep).mkdir(parents=True, exist_ok=True)
                for cid in lab.ids:
                    shutil.copy(lab.log(cid), Path(keep) / f"{cid}.log")
