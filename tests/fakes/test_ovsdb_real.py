"""FakeOvsdb held to a real ovsdb-server (with ovs-vswitchd, dummy datapath).

The same changes are made to both, as an operator, libvirt and ovs-vswitchd
make them on a real one; after each, vportd's `OvsdbMonitor` on each must
hold the same snapshot. At the end, the rows themselves (the client's
columns, uuids named) must be the same on the wire. The fake's column types
must be the installed schema's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.fakes.ovsdb import FakeOvsdb
from tests.fakes.ovsdb_data import SCHEMA
from tests.fakes.test_ovsdb import Snapshots
from vportd.southbound.ovsdb.monitor import OvsdbMonitor, _open
from vportd.southbound.ovsdb.snapshot import Snapshot
from vportd.southbound.ovsdb.wire import COLUMNS, Framer
from vportd_lab.bed.ovs import SCHEMA as SCHEMA_FILE
from vportd_lab.bed.ovs import PrivateOVS, temporary_ovs

pytestmark = [
    pytest.mark.ovs,
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="Open vSwitch not installed"),
]

WAIT = 10.0
MAC1, MAC2, MAC4, MAC5 = (f"02:00:00:00:00:0{n}" for n in (1, 2, 4, 5))


@pytest.fixture
def ovs() -> Iterator[PrivateOVS]:
    with temporary_ovs() as switch:
        yield switch


@contextlib.asynccontextmanager
async def monitoring(remote: str) -> AsyncIterator[Snapshots]:
    snaps = Snapshots()
    task = asyncio.create_task(OvsdbMonitor(remote, snaps).run())
    try:
        yield snaps
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def dummy(bridge: str, name: str, port: int, *extra: str) -> list[str]:
    return ["--", "add-port", bridge, name, "--", "set", "Interface", name, "type=dummy",
            f"ofport_request={port}", *extra]  # fmt: skip


def vm(mac: str, name: str) -> list[str]:
    return [f"external_ids:attached-mac={mac}", f"external_ids:iface-id={name}-iface",
            f"external_ids:vm-id={name}-vm", "external_ids:iface-status=active"]  # fmt: skip


@dataclass
class Step:
    what: str
    fake: Callable[[FakeOvsdb], None]
    real: Callable[[PrivateOVS], object]


# -- the changes, to the fake and to the real one -----------------------------------------
def bridges(db: FakeOvsdb) -> None:
    db.add_bridge("b1", 1, datapath_type="dummy")
    db.add_bridge("b2", 2, datapath_type="dummy")


def real_bridges(ovs: PrivateOVS) -> None:
    ovs.add_bridge("b1", 1)
    ovs.add_bridge("b2", 2)


def plain_and_hinted(db: FakeOvsdb) -> None:
    with db.transaction():
        db.add_port("b2", "v2", 1, ofport_request=1, type="dummy")
        db.add_port("b2", "v3", 2, ofport_request=2, type="dummy",
                    external_ids={"vportd-peer": "b1/v1"})  # fmt: skip


def real_patch(ovs: PrivateOVS) -> None:
    ovs.vsctl(
        "add-port", "b1", "pa", "--", "set", "Interface", "pa", "type=patch", "options:peer=pb",
        "ofport_request=10", "--", "add-port", "b2", "pb", "--", "set", "Interface", "pb",
        "type=patch", "options:peer=pa", "ofport_request=20",
    )  # fmt: skip


def moved(db: FakeOvsdb) -> None:
    with db.transaction():
        db.delete_port("v3")
        db.add_port("b1", "v3", 3, ofport_request=3, type="dummy")


def real_restart(ovs: PrivateOVS) -> None:
    ovs.stop_ovsdb()
    ovs.start_ovsdb()


def unnumbered(db: FakeOvsdb) -> None:
    db.add_vm_port("b1", "v5", 5, MAC5, iface_id="v5-iface", vm_id="v5-vm", type="dummy",
                   numbered=False)  # fmt: skip


def real_unnumbered(ovs: PrivateOVS) -> None:
    ovs.stop_vswitchd()
    ovs.vsctl("--no-wait", *dummy("b1", "v5", 5, *vm(MAC5, "v5")))


STEPS = [
    Step("two bridges", bridges, real_bridges),
    Step("a VM port", lambda db: db.add_vm_port("b1", "v1", 1, MAC1, iface_id="v1-iface",
                                               vm_id="v1-vm", tag=7, type="dummy"),
         lambda ovs: ovs.vsctl(*dummy("b1", "v1", 1, *vm(MAC1, "v1")), "--", "set", "Port", "v1",
                               "tag=7")),
    Step("a plain port and a hinted one", plain_and_hinted,
         lambda ovs: ovs.vsctl(*dummy("b2", "v2", 1),
                               *dummy("b2", "v3", 2, "external_ids:vportd-peer=b1/v1"))),
    Step("a patch pair", lambda db: db.add_patch(("b1", "pa", 10), ("b2", "pb", 20)), real_patch),
    Step("a plain port becomes a VM's",
         lambda db: db.set_external_ids("v2", {"attached-mac": MAC2}),
         lambda ovs: ovs.vsctl("set", "Interface", "v2", f"external_ids:attached-mac={MAC2}")),
    Step("a link goes down", lambda db: db.set_link("v1", False),
         lambda ovs: ovs.appctl("netdev-dummy/set-admin-state", "v1", "down")),
    Step("a hint goes", lambda db: db.set_peer_hint("v3", None),
         lambda ovs: ovs.vsctl("remove", "Interface", "v3", "external_ids", "vportd-peer")),
    Step("a port moves to another bridge", moved,
         lambda ovs: ovs.vsctl("del-port", "b2", "v3", *dummy("b1", "v3", 3))),
    Step("a VM port is deleted", lambda db: db.delete_port("v1"),
         lambda ovs: ovs.vsctl("del-port", "b1", "v1")),
    Step("the server restarts", lambda db: db.close_clients(), real_restart),
    Step("a VM port comes after", lambda db: db.add_vm_port("b2", "v4", 4, MAC4,
                                                           iface_id="v4-iface", vm_id="v4-vm",
                                                           type="dummy"),
         lambda ovs: ovs.vsctl(*dummy("b2", "v4", 4, *vm(MAC4, "v4")))),
    Step("a datapath id changes", lambda db: db.set_dpid("b1", 0x11),
         lambda ovs: ovs.vsctl("set", "Bridge", "b1", "other-config:datapath-id=0000000000000011")),
    Step("ovs-vswitchd is down, a VM port waits for its number", unnumbered, real_unnumbered),
    Step("ovs-vswitchd is back and numbers it", lambda db: db.set_ofport("v5", 5),
         lambda ovs: ovs.start_vswitchd()),
]  # fmt: skip
LAST = [
    Step("a bridge is deleted", lambda db: db.delete_bridge("b2"),
         lambda ovs: ovs.vsctl("del-br", "b2")),
]  # fmt: skip


def view(snap: Snapshot) -> tuple[Any, ...]:
    """What a snapshot says, including what IfaceRow leaves out of its equality."""
    rows = {n: (r, r.pending, r.error) for n, r in snap.ifaces.items()}
    return snap.bridges, rows


async def agree(fake: Snapshots, real: Snapshots, step: str) -> None:
    """Until the latest snapshots of both monitors say the same (the real one settles
    as ovs-vswitchd catches up)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not (fake.seen and real.seen and view(fake.last) == view(real.last)):
        if loop.time() > deadline:
            mine = view(fake.last) if fake.seen else None
            theirs = view(real.last) if real.seen else None
            raise AssertionError(f"after {step}:\n fake {mine}\n real {theirs}")
        await asyncio.sleep(0.02)


async def test_the_monitor_holds_the_same_snapshots_from_the_fake_and_the_real_server(
    ovs: PrivateOVS,
) -> None:
    async with FakeOvsdb() as db, monitoring(db.remote) as fake, monitoring(ovs.db) as real:
        await agree(fake, real, "start")
        for step in STEPS:
            step.fake(db)
            await asyncio.to_thread(step.real, ovs)
            await agree(fake, real, step.what)
        assert await rows(db.remote) == await rows(ovs.db)
        for step in LAST:
            step.fake(db)
            await asyncio.to_thread(step.real, ovs)
            await agree(fake, real, step.what)


async def rows(remote: str) -> dict[tuple[str, str], Any]:
    """Every row of the client's tables and columns as the server sends them, by (table,
    name), a uuid named after the row it refers to (`<name>`)."""
    reader, writer = await _open(remote)
    try:
        request = {t: [{"columns": list(c)}] for t, c in COLUMNS.items()}
        writer.write(json.dumps({"id": 0, "method": "monitor_cond",
                                 "params": ["Open_vSwitch", None, request]}).encode())  # fmt: skip
        framer, replies = Framer(), list[Any]()
        async with asyncio.timeout(WAIT):
            while not replies:
                replies = [m for m in framer.feed(await reader.read(1 << 16)) if m.get("id") == 0]
    finally:
        writer.close()
    result = replies[0]["result"]
    # (The one Open_vSwitch row has no name: it is named after its table.)
    names = {u: row["initial"].get("name", t) for t, rs in result.items() for u, row in rs.items()}
    text = json.dumps(result)
    for uuid, name in names.items():
        text = text.replace(uuid, f"<{name}>")
    named = _sorted_sets(json.loads(text))
    return {
        (t, row["initial"].get("name", t)): row
        for t, rows_ in named.items()
        for row in rows_.values()
    }


def _sorted_sets(value: Any) -> Any:
    """Sets in name order (the servers order them by uuid, and the uuids differ)."""
    if isinstance(value, dict):
        return {k: _sorted_sets(v) for k, v in value.items()}
    if isinstance(value, list) and len(value) == 2 and value[0] == "set":
        return ["set", sorted(value[1], key=json.dumps)]
    return value


def test_the_fakes_columns_have_the_installed_schemas_types() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    for table, columns in SCHEMA.items():
        for column, ctype in columns.items():
            real = schema["tables"][table]["columns"][column]["type"]
            if isinstance(real, str):
                real = {"key": real}
            key = real["key"]["type"] if isinstance(real["key"], dict) else real["key"]
            value = real.get("value")
            value = value["type"] if isinstance(value, dict) else value
            maximum = real.get("max", 1)
            want = (key, value, real.get("min", 1), None if maximum == "unlimited" else maximum)
            assert (ctype.key, ctype.value, ctype.min, ctype.max) == want, (table, column)
