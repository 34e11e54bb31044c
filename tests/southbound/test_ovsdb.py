"""The OVSDB monitor against a real ovsdb-server: its incremental snapshot equals a full read.

After each change (bridges, VM and patch ports, external_ids, link state,
deletes, a port moved between bridges, an ovsdb-server restart), the latest
snapshot handed over must equal the one built from `ovs-vsctl list` output.
With ovs-vswitchd stopped, a port shows its requested number (pending) unless
another port holds it, and ovs-vswitchd's numbering or failure then wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from vportd.southbound.ovsdb.monitor import OvsdbMonitor
from vportd.southbound.ovsdb.snapshot import IfaceRow, Snapshot
from vportd_lab.bed.ovs import PrivateOVS, temporary_ovs

pytestmark = [
    pytest.mark.ovs,
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="Open vSwitch not installed"),
]

WAIT = 10.0


@pytest.fixture
def ovs() -> Iterator[PrivateOVS]:
    with temporary_ovs() as switch:
        yield switch


def _set(value: Any) -> list[Any]:
    """An OVSDB set as `ovs-vsctl --format=json` shows it (one element: the element)."""
    return value if isinstance(value, list) else [value]


def full_read(ovs: PrivateOVS) -> Snapshot:
    """The snapshot the monitor should hold, read afresh with ovs-vsctl."""
    ifaces = {r["_uuid"]: r for r in ovs.rows(
        "Interface", "_uuid", "name", "ofport", "ofport_request", "external_ids", "link_state",
        "type", "options",
    )}  # fmt: skip
    ports = {r["_uuid"]: _set(r["interfaces"]) for r in ovs.rows("Port", "_uuid", "interfaces")}
    bridges: dict[str, int] = {}
    rows: dict[str, IfaceRow] = {}
    for br in ovs.rows("Bridge", "name", "datapath_id", "ports"):
        dpid = _set(br["datapath_id"])
        if dpid:
            bridges[br["name"]] = int(dpid[0], 16)
        for port in _set(br["ports"]):
            for uuid in ports.get(port, []):
                i = ifaces[uuid]
                ext, opts = i["external_ids"], i["options"]
                # Until ovs-vswitchd numbers a port, the monitor shows the requested number.
                ofport = _set(i["ofport"]) or _set(i["ofport_request"])
                peer = ext.get("vportd-peer") or (
                    opts.get("peer") if i["type"] == "patch" else None
                )
                rows[i["name"]] = IfaceRow(
                    i["name"], br["name"], ofport[0] if ofport and ofport[0] > 0 else None,
                    _set(i["link_state"]) == ["up"], ext.get("attached-mac"), ext.get("iface-id"),
                    ext.get("vm-id"), peer,
                )  # fmt: skip
    return Snapshot(bridges, rows)


@contextlib.asynccontextmanager
async def monitor(ovs: PrivateOVS) -> AsyncIterator[list[Snapshot]]:
    seen: list[Snapshot] = []
    task = asyncio.create_task(OvsdbMonitor(ovs.db, seen.append).run())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def agrees(ovs: PrivateOVS, seen: list[Snapshot], step: str) -> None:
    """Poll until the latest snapshot equals a full read (both re-read at each try)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        want = await asyncio.to_thread(full_read, ovs)
        got = seen[-1] if seen else None
        if got is not None and (got.bridges, got.ifaces) == (want.bridges, want.ifaces):
            return
        if loop.time() > deadline:
            raise AssertionError(f"after {step}: snapshot {got} != full read {want}")
        await asyncio.sleep(0.05)


async def test_the_incremental_snapshot_equals_a_full_read(ovs: PrivateOVS) -> None:
    def vsctl(*args: str) -> Any:
        return asyncio.to_thread(ovs.vsctl, *args)

    def dummy(bridge: str, name: str, port: int, *extra: str) -> list[str]:
        return ["--", "add-port", bridge, name, "--", "set", "Interface", name, "type=dummy",
                f"ofport_request={port}", *extra]  # fmt: skip

    mac = "external_ids:attached-mac=02:00:00:00:00:01"
    async with monitor(ovs) as seen:
        await agrees(ovs, seen, "start")
        await asyncio.to_thread(ovs.add_bridge, "b1", 1)
        await asyncio.to_thread(ovs.add_bridge, "b2", 2)
        await agrees(ovs, seen, "two bridges")
        await vsctl(*dummy("b1", "v1", 1, mac, "external_ids:iface-id=i1", "external_ids:vm-id=m1"))
        await vsctl(*dummy("b2", "v2", 1), *dummy("b2", "v3", 2, "external_ids:vportd-peer=b1/v1"))
        await vsctl(
            "--", "add-port", "b1", "pa", "--", "set", "Interface", "pa", "type=patch",
            "options:peer=pb", "--", "add-port", "b2", "pb", "--", "set", "Interface", "pb",
            "type=patch", "options:peer=pa",
        )  # fmt: skip
        await agrees(ovs, seen, "VM, plain, hinted and patch ports")
        await vsctl("set", "Interface", "v2", "external_ids:attached-mac=02:00:00:00:00:02")
        await agrees(ovs, seen, "a plain port becoming a VM port")
        await asyncio.to_thread(ovs.appctl, "netdev-dummy/set-admin-state", "v1", "down")
        await agrees(ovs, seen, "link down")
        await vsctl("del-port", "b2", "v3", "--", *dummy("b1", "v3", 3)[1:])
        await agrees(ovs, seen, "a port moved from b2 to b1")
        await vsctl("del-port", "b1", "v1")
        await agrees(ovs, seen, "a VM port deleted")
        names = set(seen[-1].ifaces)
        await asyncio.to_thread(ovs.stop_ovsdb)
        await asyncio.to_thread(ovs.start_ovsdb)
        await vsctl(*dummy("b2", "v4", 4, mac))
        await agrees(ovs, seen, "ovsdb-server restarted, a port added")
        assert set(seen[-1].ifaces) == names | {"v4"}
        await vsctl("del-br", "b2")
        await agrees(ovs, seen, "a bridge deleted")
        assert set(seen[-1].bridges) == {"b1"}
        assert all(row.bridge == "b1" for row in seen[-1].ifaces.values())


def _dummy(bridge: str, name: str, port: int, *extra: str) -> list[str]:
    return ["--", "add-port", bridge, name, "--", "set", "Interface", name, "type=dummy",
            f"ofport_request={port}", *extra]  # fmt: skip


async def shows(seen: list[Snapshot], name: str, want: Callable[[IfaceRow], bool]) -> IfaceRow:
    """Poll until the latest snapshot's row `name` satisfies `want`; that row."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        row = seen[-1].ifaces.get(name) if seen else None
        if row is not None and want(row):
            return row
        if loop.time() > deadline:
            raise AssertionError(f"row {name} never as wanted; last {row}")
        await asyncio.sleep(0.02)


async def test_a_requested_number_is_shown_until_ovs_vswitchd_numbers_the_port(
    ovs: PrivateOVS,
) -> None:
    """With ovs-vswitchd stopped the committed rows are all there is: what they show."""

    def vsctl(*args: str) -> Any:  # ovs-vswitchd is down: nobody to wait for
        return asyncio.to_thread(ovs.vsctl, "--no-wait", *args)

    mac = "external_ids:attached-mac=02:00:00:00:00:01"
    await asyncio.to_thread(ovs.add_bridge, "b1", 1)
    async with monitor(ovs) as seen:
        await vsctl(*_dummy("b1", "held", 3))
        await shows(seen, "held", lambda r: r.ofport == 3 and not r.pending)
        await asyncio.to_thread(ovs.stop_vswitchd)
        await vsctl(*_dummy("b1", "v1", 5, mac), *_dummy("b1", "v2", 3, mac))
        await vsctl(*_dummy("b1", "bad", 7, mac), "--", "set", "Interface", "bad", "type=nowhere")
        v1 = await shows(seen, "v1", lambda r: r.pending)
        assert (v1.ofport, v1.link_up, v1.mac) == (5, False, "02:00:00:00:00:01")
        v2 = await shows(seen, "v2", lambda r: True)
        assert v2.ofport is None  # 3 is held: ovs-vswitchd will number it otherwise
        assert (await shows(seen, "bad", lambda r: True)).ofport == 7

        await asyncio.to_thread(ovs.start_vswitchd)
        v1 = await shows(seen, "v1", lambda r: not r.pending and r.link_up)
        assert v1.ofport == 5
        v2 = await shows(seen, "v2", lambda r: not r.pending and r.ofport is not None)
        assert v2.ofport != 3
        bad = await shows(seen, "bad", lambda r: r.error is not None)
        assert bad.ofport is None and not bad.pending
        assert seen[-1].ifaces["held"].ofport == 3
