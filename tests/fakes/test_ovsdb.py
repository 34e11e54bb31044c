"""FakeOvsdb against vportd's real OVSDB client (`OvsdbMonitor`), and on the wire."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fakes.ovsdb import FakeOvsdb
from tests.fakes.ovsdb_data import SCHEMA, Row, datum, modify_json, new_row, row_json
from vportd.southbound.ovsdb import wire
from vportd.southbound.ovsdb.monitor import OvsdbMonitor
from vportd.southbound.ovsdb.snapshot import (
    Change,
    DeclaredLink,
    IfaceRow,
    Snapshot,
    declared_links,
    diff_ports,
)
from vportd.southbound.ovsdb.wire import Framer

WAIT = 10.0
VM1, VM2 = "02:00:00:00:00:01", "02:00:00:00:00:02"


class Snapshots:
    """What a monitor hands over, and a wait for the one a test expects."""

    def __init__(self) -> None:
        self.seen: list[Snapshot] = []
        self._came = asyncio.Event()

    def __call__(self, snap: Snapshot) -> None:
        self.seen.append(snap)
        self._came.set()
        self._came = asyncio.Event()

    @property
    def last(self) -> Snapshot:
        return self.seen[-1]

    async def until(self, want: Callable[[Snapshot], bool]) -> Snapshot:
        async with asyncio.timeout(WAIT):
            while not (self.seen and want(self.last)):
                await self._came.wait()
        return self.last


@contextlib.asynccontextmanager
async def monitoring(db: FakeOvsdb) -> AsyncIterator[Snapshots]:
    snaps = Snapshots()
    task = asyncio.create_task(OvsdbMonitor(db.remote, snaps).run())
    try:
        yield snaps
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def hypervisor(db: FakeOvsdb) -> None:
    db.add_bridge("b1", 1)
    db.add_bridge("b2", 2)
    db.add_vm_port("b1", "vnet0", 5, VM1, iface_id="i1", vm_id="m1", tag=7)
    db.add_patch(("b1", "p12", 10), ("b2", "p21", 20))
    db.add_port("b2", "tun", 30, external_ids={"vportd-peer": "hv9/tun"})


# -- against OvsdbMonitor ---------------------------------------------------------------
async def test_the_monitor_sees_bridges_vm_ports_and_links() -> None:
    async with FakeOvsdb() as db:
        hypervisor(db)
        async with monitoring(db) as snaps:
            snap = await snaps.until(lambda s: "tun" in s.ifaces)
    assert snap.bridges == {"b1": 1, "b2": 2}
    assert snap.ifaces == {
        "b1": IfaceRow("b1", "b1", 65534, True), "b2": IfaceRow("b2", "b2", 65534, True),
        "vnet0": IfaceRow("vnet0", "b1", 5, True, VM1, "i1", "m1", segment=7),
        "p12": IfaceRow("p12", "b1", 10, True, peer="p21"),
        "p21": IfaceRow("p21", "b2", 20, True, peer="p12"),
        "tun": IfaceRow("tun", "b2", 30, True, peer="hv9/tun"),
    }  # fmt: skip
    assert declared_links([snap]) == {DeclaredLink("b1", 10, "b2", 20)}


async def test_port_changes_reach_the_monitor_as_ovs_would_make_them() -> None:
    async with FakeOvsdb() as db, monitoring(db) as snaps:
        db.add_bridge("b1", 1)
        before = await snaps.until(lambda s: s.bridges == {"b1": 1})
        db.add_vm_port("b1", "vnet0", 5, VM1, numbered=False)
        pending = await snaps.until(lambda s: "vnet0" in s.ifaces)
        assert (pending.ifaces["vnet0"].ofport, pending.ifaces["vnet0"].pending) == (5, True)
        db.set_ofport("vnet0", 5)
        up = await snaps.until(lambda s: s.ifaces["vnet0"].link_up)
        db.set_link("vnet0", False)
        down = await snaps.until(lambda s: not s.ifaces["vnet0"].link_up)
        assert [c.change for c in diff_ports(before, pending)] == [Change.ADD]
        assert [c.change for c in diff_ports(up, down)] == [Change.MODIFY]
        db.set_external_ids("vnet0", {"attached-mac": VM2})
        moved = await snaps.until(lambda s: s.ifaces["vnet0"].mac == VM2)
        assert [c.change for c in diff_ports(down, moved)] == [Change.DELETE, Change.ADD]
        db.set_ofport("vnet0", -1, "could not open network device vnet0")
        failed = await snaps.until(lambda s: s.ifaces["vnet0"].error is not None)
        assert failed.ifaces["vnet0"].ofport is None
        db.delete_port("vnet0")
        await snaps.until(lambda s: "vnet0" not in s.ifaces)
        db.set_dpid("b1", 0xB1)
        await snaps.until(lambda s: s.bridges == {"b1": 0xB1})
        db.delete_bridge("b1")
        assert (await snaps.until(lambda s: not s.bridges)).ifaces == {}


async def test_a_patch_port_whose_peer_goes_fails_as_ovs_vswitchd_says() -> None:
    async with FakeOvsdb() as db, monitoring(db) as snaps:
        db.add_bridge("b1", 1, datapath_type="netdev")
        db.add_bridge("b2", 2)
        db.add_patch(("b1", "pa", 10), ("b2", "pb", 20))
        linked = await snaps.until(lambda s: "pb" in s.ifaces)
        assert declared_links([linked]) == {DeclaredLink("b1", 10, "b2", 20)}
        db.delete_port("pb")
        alone = await snaps.until(lambda s: s.ifaces["pa"].error is not None)
        assert alone.ifaces["pa"].error == "No usable peer 'pb' exists in 'netdev' datapath."
        assert declared_links([alone]) == set()
        db.add_port("b2", "pb", 20, type="patch", options={"peer": "pa"})
        await snaps.until(lambda s: s.ifaces["pa"].error is None)


async def test_one_transaction_is_one_snapshot() -> None:
    async with FakeOvsdb() as db, monitoring(db) as snaps:
        db.add_bridge("b1", 1)
        db.add_bridge("b2", 2)
        db.add_vm_port("b2", "v", 3, VM1)
        await snaps.until(lambda s: "v" in s.ifaces)
        count = len(snaps.seen)
        with db.transaction():  # a port moved between bridges, as ovs-vsctl can do at once
            db.delete_port("v")
            db.add_vm_port("b1", "v", 3, VM1)
        snap = await snaps.until(lambda s: s.ifaces["v"].bridge == "b1")
        assert len(snaps.seen) == count + 1
        assert snap.changed == frozenset({"v"})


async def test_a_failed_transaction_changes_nothing() -> None:
    async with FakeOvsdb() as db:
        db.add_bridge("b1", 1)
        rows = json.dumps(db.tables, sort_keys=True)
        with pytest.raises(KeyError), db.transaction():
            db.add_vm_port("b1", "v", 3, VM1)
            db.add_vm_port("nowhere", "w", 4, VM2)
        assert json.dumps(db.tables, sort_keys=True) == rows


async def test_the_monitor_reconnects_and_reads_what_changed_meanwhile(tmp_path: Path) -> None:
    async with FakeOvsdb(unix=tmp_path / "db.sock") as db, monitoring(db) as snaps:
        assert db.remote == f"unix:{tmp_path / 'db.sock'}"
        db.add_bridge("b1", 1)
        db.add_vm_port("b1", "v1", 1, VM1)
        await snaps.until(lambda s: "v1" in s.ifaces)
        db.close_clients()
        db.delete_port("v1")
        db.add_vm_port("b1", "v2", 2, VM2)
        await db.wait_monitored(2)
        snap = await snaps.until(lambda s: "v2" in s.ifaces)
        assert set(snap.ifaces) == {"b1", "v2"}


async def test_the_client_answers_the_servers_echo() -> None:
    async with FakeOvsdb() as db, monitoring(db):
        await db.wait_monitored()
        await db.probe()


# -- on the wire ------------------------------------------------------------------------
class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.framer = reader, writer, Framer()
        self.queue: list[Any] = []

    async def call(self, method: str, params: Any, ident: Any = 1) -> Any:
        self.writer.write(json.dumps({"id": ident, "method": method, "params": params}).encode())
        return await self.next(lambda m: m.get("id") == ident and "method" not in m)

    async def next(self, want: Callable[[dict[str, Any]], bool]) -> Any:
        async with asyncio.timeout(WAIT):
            while True:
                for n, message in enumerate(self.queue):
                    if want(message):
                        return self.queue.pop(n)
                self.queue += self.framer.feed(await self.reader.read(1 << 16))


@contextlib.asynccontextmanager
async def raw(db: FakeOvsdb) -> AsyncIterator[RawClient]:
    reader, writer = await asyncio.open_connection(db.host, db.port)
    try:
        yield RawClient(reader, writer)
    finally:
        writer.close()


async def test_replies_and_errors_are_shaped_as_ovsdb_servers() -> None:
    iface = {"Interface": [{"columns": ["name", "ofport"]}]}
    async with FakeOvsdb() as db, raw(db) as client:
        assert await client.call("echo", ["x", 1]) == {"id": 1, "result": ["x", 1], "error": None}
        assert await client.call("frobnicate", []) == {"id": 1, "error": "unknown method"}
        reply = await client.call("monitor_cond", ["Nope", None, iface])
        assert reply["error"]["error"] == "unknown database"
        reply = await client.call("monitor_cond", ["Open_vSwitch", "m", {"Interface": [
            {"columns": ["statistics"]}]}])  # fmt: skip
        assert reply["error"]["details"].startswith("statistics is not a valid column name")
        assert (await client.call("monitor_cond", ["Open_vSwitch", "m", iface]))["result"] == {}
        reply = await client.call("monitor_cond", ["Open_vSwitch", "m", iface])
        assert reply["error"]["details"] == "duplicate monitor ID"

        db.add_bridge("b1")
        update = await client.next(lambda m: m.get("method") == "update2")
        ((_, row),) = update["params"][1]["Interface"].items()
        assert update["params"][0] == "m"
        assert row == {"insert": {"name": "b1", "ofport": 65534}}


async def test_the_initial_rows_leave_defaults_out_and_encode_sets_maps_and_uuids() -> None:
    async with FakeOvsdb() as db, raw(db) as client:
        db.add_bridge("b1", 1)
        db.set_system_ids({"hostname": "hv1", "vportd-encap-ip": "192.0.2.1"})
        tables = {"Open_vSwitch": [{"columns": ["bridges", "external_ids", "cur_cfg"]}],
                  "Bridge": [{"columns": ["name", "ports", "protocols"]}]}  # fmt: skip
        result = (await client.call("monitor_cond", ["Open_vSwitch", None, tables]))["result"]
        ((root,),) = [list(rows.values()) for rows in [result["Open_vSwitch"]]]
        ((bridge_id, bridge),) = result["Bridge"].items()
        assert root == {"initial": {
            "bridges": ["uuid", bridge_id],
            "external_ids": ["map", [["hostname", "hv1"], ["vportd-encap-ip", "192.0.2.1"]]],
        }}  # fmt: skip
        assert bridge["initial"]["protocols"] == "OpenFlow13"
        assert bridge["initial"]["ports"][0] == "uuid"


# -- the update2 diff against the client's reading of it --------------------------------
def _rows(table: str) -> st.SearchStrategy[Row]:
    columns = {
        "name": st.sampled_from(["a", "b"]), "ofport": st.sampled_from([None, 1, 2]),
        "type": st.sampled_from(["", "patch"]), "link_state": st.sampled_from([None, "up"]),
        "external_ids": st.dictionaries(st.sampled_from("xyz"), st.sampled_from("12"), max_size=3),
        "ports": st.sets(st.sampled_from(["u1", "u2", "u3"])),
    }  # fmt: skip
    held = [c for c in columns if c in SCHEMA[table]]
    return st.fixed_dictionaries({c: columns[c] for c in held}).map(
        lambda values: {**new_row(table), **{c: datum(v) for c, v in values.items()}}
    )


@given(st.sampled_from(["Interface", "Bridge"]).flatmap(lambda t: st.tuples(st.just(t),
       _rows(t), _rows(t))))  # fmt: skip
def test_the_client_applies_each_diff_to_the_row_it_stands_for(case: tuple[str, Row, Row]) -> None:
    table, old, new = case
    columns = tuple(wire.COLUMNS[table])
    row = wire.new_row(table, row_json(old, table, columns))
    wire.modify_row(table, row, modify_json(old, new, table, columns))
    assert row == wire.new_row(table, row_json(new, table, columns))
