"""Fixtures for the cluster tests: a private etcd per test and stores connected to it."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from vportd.cluster.etcd import EtcdStore
from vportd_lab.bed.etcd import PrivateEtcd

StoreFactory = Callable[..., EtcdStore]


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[PrivateEtcd]:
    if shutil.which("etcd") is None:
        pytest.skip("no etcd binary (Debian package etcd-server)")
    member = PrivateEtcd(tmp_path / "etcd").start()
    try:
        yield member
    finally:
        member.stop()


@pytest.fixture
def connect(etcd: PrivateEtcd) -> StoreFactory:
    """`async with connect(lease_ttl=3) as store`: a store on the test's etcd."""

    def factory(lease_ttl: int = 2, patience: float = 10.0) -> EtcdStore:
        return EtcdStore([etcd.endpoint], prefix="/test", lease_ttl=lease_ttl, patience=patience)

    return factory


@pytest.fixture
async def store(connect: StoreFactory) -> AsyncIterator[EtcdStore]:
    async with connect() as s:
        yield s
