"""Fixtures for the cluster tests: a private etcd per test and stores connected to it, and
`connect_any`: the same tests against the in-memory store and (marker etcd) a real etcd."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from vportd.cluster.etcd import EtcdStore
from vportd.cluster.memory import MemoryServer
from vportd.cluster.store import Store
from vportd_lab.bed.etcd import PrivateEtcd

StoreFactory = Callable[..., EtcdStore]
AnyStoreFactory = Callable[..., Store]


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


@pytest.fixture(params=["memory", pytest.param("etcd", marks=pytest.mark.etcd)])
def connect_any(request: pytest.FixtureRequest) -> AnyStoreFactory:
    """`async with connect_any(lease_ttl=2) as store`: clients of one store of record, either
    a `MemoryServer` or the test's private etcd (started only for that parameter)."""
    if request.param == "memory":
        server = MemoryServer()

        def memory(lease_ttl: int = 1) -> Store:  # (etcd's shortest is 2 s)
            return server.client(lease_ttl)

        return memory
    factory: StoreFactory = request.getfixturevalue("connect")
    return factory
