"""etcd over TLS with client certificates (`--client-cert-auth`): the store and a whole
controller connect with `[store]`'s `ca`, `cert` and `key`; a CA that does not fit is
refused at start with an error that says so."""

from __future__ import annotations

import asyncio
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.daemon import controller_config, in_session, vportd
from tests.cluster.support import at, eventually_async, mac
from tests.pki import Certs
from vportd.cluster.etcd import EtcdStore
from vportd.cluster.etcd_tls import EtcdTLS, load
from vportd.cluster.store import StoreError
from vportd.node.config import ConfigError, parse_config
from vportd_lab.bed.etcd import EtcdCerts, PrivateEtcd, temporary_etcd

pytestmark = [
    pytest.mark.etcd,
    pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd not installed"),
]

REFUSED = "does not check out against store.ca"


@pytest.fixture
def etcd(tmp_path: Path, certs: Certs) -> Iterator[PrivateEtcd]:
    served = EtcdCerts(certs.ca.cert, certs.controller.cert, certs.controller.key)
    with temporary_etcd(tmp_path, tls=served) as member:
        yield member


def tls_keys(certs: Certs, ca: Path) -> str:
    """`[store]`'s TLS keys with CA `ca` and the controllers' pair."""
    pair = certs.controller
    return f'ca = "{ca}"\ncert = "{pair.cert}"\nkey = "{pair.key}"\n'


def client_tls(certs: Certs, *, ca: Path | None = None) -> EtcdTLS:
    return load(ca or certs.ca.cert, certs.controller.cert, certs.controller.key)


async def test_a_store_over_tls_writes_reads_and_keeps_its_lease(
    etcd: PrivateEtcd, certs: Certs
) -> None:
    rec = at(mac(1), 1, 1, "c0")
    async with EtcdStore([etcd.endpoint], "/t", 2, tls=client_tls(certs)) as store:
        lease = await store.grant_lease()
        keeping = asyncio.create_task(store.keep_alive(lease))  # (over the https gateway)
        try:
            await store.merge([rec])
            assert (await store.records())[0] == {rec.vm: rec}
            await asyncio.sleep(3 * store.lease_ttl)  # renewed all along, else it expired
            assert not keeping.done()
            assert etcd.time_to_live(lease) is not None
        finally:
            keeping.cancel()
            await asyncio.gather(keeping, return_exceptions=True)


async def test_a_ca_that_does_not_fit_is_refused_saying_so(etcd: PrivateEtcd, certs: Certs) -> None:
    store = EtcdStore([etcd.endpoint], "/t", 2, tls=client_tls(certs, ca=certs.stranger_ca.cert))
    with pytest.raises(StoreError, match=REFUSED):
        async with store:
            pass


async def test_a_controller_joins_over_tls_and_one_with_the_wrong_ca_exits_saying_why(
    tmp_path: Path, etcd: PrivateEtcd, certs: Certs
) -> None:
    config, url = controller_config(
        tmp_path, etcd.endpoint, store_extra=tls_keys(certs, certs.ca.cert)
    )
    proc = vportd(config, tmp_path / "c0.log")
    try:
        await eventually_async(lambda: in_session(url), "the controller to join over TLS")
        assert etcd.get("/vportd/members/c0") is not None
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0
    wrong, _ = controller_config(
        tmp_path, etcd.endpoint, store_extra=tls_keys(certs, certs.stranger_ca.cert)
    )
    refused = vportd(wrong, tmp_path / "wrong.log")
    assert await asyncio.to_thread(refused.wait, 20) == 1
    assert REFUSED in (tmp_path / "wrong.log").read_text()


@pytest.mark.parametrize(
    ("keys", "said"),
    [
        ({"cert": "c.pem"}, "store: cert and key: give both or neither"),
        ({"cert": "c.pem", "key": "c.key"}, "store: cert: needs ca"),
        ({"username": "root"}, "store: username and password_file: give both or neither"),
    ],
)
def test_store_keys_that_do_not_go_together_are_refused(keys: dict[str, str], said: str) -> None:
    lines = "\n".join(f'{k} = "{v}"' for k, v in keys.items())
    text = f'[controller]\nid = "c0"\n[store]\nkind = "memory"\n{lines}\n'
    with pytest.raises(ConfigError, match=said):
        parse_config(text)


def test_unreadable_store_tls_files_are_a_configuration_error(tmp_path: Path, certs: Certs) -> None:
    with pytest.raises(ValueError, match="cannot load the etcd TLS files"):
        load(tmp_path / "missing.pem", None, None)
    with pytest.raises(ValueError, match="cannot load the etcd TLS files"):
        load(certs.ca.cert, certs.controller.cert, certs.stranger.key)  # not its key
