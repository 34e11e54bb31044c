"""etcd with authentication on (`--auth`, users and roles): the store logs in with
`[store]`'s user and password, keeps its lease, logs in again after etcd restarted (its
tokens are gone then), and a wrong password is refused at start saying so."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from tests.cluster.daemon import controller_config, in_session, vportd
from tests.cluster.support import at, eventually_async, mac
from vportd.cluster.etcd import EtcdStore
from vportd.cluster.etcd_auth import LoginRefused
from vportd_lab.bed.etcd import PrivateEtcd

pytestmark = pytest.mark.etcd

PASSWORD = "root-password-0123"


async def test_a_store_logs_in_keeps_its_lease_and_logs_in_again_after_a_restart(
    etcd: PrivateEtcd,
) -> None:
    etcd.enable_auth(PASSWORD)
    one, two = at(mac(1), 1, 1, "c0"), at(mac(2), 1, 1, "c0")
    async with EtcdStore([etcd.endpoint], "/t", 2, login=("root", PASSWORD)) as store:
        lease = await store.grant_lease()
        keeping = asyncio.create_task(store.keep_alive(lease))
        try:
            await store.merge([one])
            await asyncio.sleep(3 * store.lease_ttl)  # renewed all along, else it expired
            assert not keeping.done()
            await asyncio.to_thread(etcd.restart)  # every token etcd gave is void now
            await store.merge([two])
            assert (await store.records())[0] == {one.vm: one, two.vm: two}
        finally:
            keeping.cancel()
            await asyncio.gather(keeping, return_exceptions=True)


async def test_a_wrong_password_is_refused_at_start_saying_so(etcd: PrivateEtcd) -> None:
    etcd.enable_auth(PASSWORD)
    store = EtcdStore([etcd.endpoint], "/t", 2, login=("root", "not-the-password"))
    with pytest.raises(LoginRefused, match="etcd refused user 'root'"):
        async with store:
            pass


async def test_a_controller_with_a_user_joins_and_watches(
    tmp_path: Path, etcd: PrivateEtcd
) -> None:
    etcd.enable_auth(PASSWORD)
    (tmp_path / "password").write_text(PASSWORD + "\n")
    extra = f'username = "root"\npassword_file = "{tmp_path / "password"}"\n'
    config, url = controller_config(tmp_path, etcd.endpoint, store_extra=extra)
    proc = vportd(config, tmp_path / "c0.log")
    try:
        # in session: logged in, its watches read the table, its leader key written
        await eventually_async(lambda: in_session(url), "the controller to join with a user")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0


async def test_a_user_given_while_etcd_has_no_authentication_is_refused(
    etcd: PrivateEtcd,
) -> None:
    store = EtcdStore([etcd.endpoint], "/t", 2, login=("root", PASSWORD))
    with pytest.raises(LoginRefused, match="etcd refused user 'root'"):
        async with store:
            pass
