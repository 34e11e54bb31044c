"""Fixtures for the lab tests: a fresh lab directory, torn down whatever happens."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.test_lab import up, vportctl
from vportd_lab.bed import netns, procs
from vportd_lab.bed.plan import VM_NAMESPACE


@contextlib.contextmanager
def fresh_lab_dir() -> Iterator[Path]:
    """A new lab directory (skip if another lab holds the datapath); `lab down` after."""
    holders = procs.tap_holders()
    if "ovs-netdev" in holders:
        pytest.skip(
            f"another userspace-datapath Open vSwitch runs in this network namespace (pid "
            f"{holders['ovs-netdev'][0]} holds ovs-netdev) and only one can: stop that lab first"
        )
    taken = [n for n in netns.namespaces() if VM_NAMESPACE.match(n)]
    if taken:
        pytest.skip(f"VM namespaces of another lab exist ({', '.join(taken)}): stop that lab first")
    base = Path(tempfile.mkdtemp(prefix="vl-", dir="/tmp"))  # short: unix sockets take 108 chars
    lab = base / "lab"
    try:
        yield lab
    finally:
        vportctl("lab", "down", "--dir", str(lab))
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def lab_dir() -> Iterator[Path]:
    with fresh_lab_dir() as lab:
        yield lab


@contextlib.contextmanager
def lab_up(*layout: str) -> Iterator[Path]:
    """A new lab of `layout`, up (its directory) until the block ends, then down."""
    with fresh_lab_dir() as lab_dir:
        result, _ = up(lab_dir, *layout)
        assert result.returncode == 0, result.stderr
        yield lab_dir
