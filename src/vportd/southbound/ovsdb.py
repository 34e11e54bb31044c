"""OVSDB monitor: which VM each port belongs to, and the declared inter-switch links.

The ovs IDL is blocking, so it runs in a thread; every time the database
changes, the thread takes an immutable `Snapshot` of the rows vportd reads and
hands it to the event loop. `diff_ports` (pure) turns two snapshots into port
changes. A VM port is an Interface with `external_ids:attached-mac` (libvirt's
and OpenStack's convention, with `iface-id` and `vm-id`); any other port is
infrastructure: a patch port (`options:peer`) or a port with
`external_ids:vportd-peer=BRIDGE/INTERFACE` declares an inter-switch link.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

log = logging.getLogger("vportd.ovsdb")

_COLUMNS = {
    "Bridge": ["name", "datapath_id", "ports"],
    "Port": ["name", "interfaces"],
    "Interface": ["name", "ofport", "external_ids", "link_state", "type", "options"],
}


@dataclass(frozen=True, slots=True)
class IfaceRow:
    name: str
    bridge: str
    ofport: int | None
    link_up: bool
    mac: str | None = None
    iface_id: str | None = None
    vm_id: str | None = None
    peer: str | None = None  # BRIDGE/INTERFACE or, for a patch port, INTERFACE

    @property
    def is_vm(self) -> bool:
        return self.mac is not None


@dataclass(frozen=True, slots=True)
class Snapshot:
    bridges: dict[str, int]  # name -> datapath id
    ifaces: dict[str, IfaceRow]

    def bridge_of(self, iface: str) -> str | None:
        row = self.ifaces.get(iface)
        return None if row is None else row.bridge


EMPTY = Snapshot({}, {})


class Change(StrEnum):
    ADD = "add"
    MODIFY = "modify"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class PortChange:
    change: Change
    row: IfaceRow


def diff_ports(old: Snapshot, new: Snapshot) -> list[PortChange]:
    """VM port changes between two snapshots; a port counts once it has an ofport."""
    changes: list[PortChange] = []
    for name, row in old.ifaces.items():
        now = new.ifaces.get(name)
        if row.is_vm and row.ofport and (now is None or not now.ofport or now.mac != row.mac):
            changes.append(PortChange(Change.DELETE, row))
    for name, row in new.ifaces.items():
        if not row.is_vm or not row.ofport:
            continue
        before = old.ifaces.get(name)
        if before is None or not before.ofport or before.mac != row.mac:
            changes.append(PortChange(Change.ADD, row))
        elif before != row:
            changes.append(PortChange(Change.MODIFY, row))
    return changes


@dataclass(frozen=True, slots=True)
class DeclaredLink:
    a: str
    a_port: int
    b: str
    b_port: int


def declared_links(snap: Snapshot) -> set[DeclaredLink]:
    """Links declared in OVSDB: patch port pairs and `vportd-peer` hints, both ends known."""
    links: set[DeclaredLink] = set()
    for row in snap.ifaces.values():
        if row.peer is None or not row.ofport:
            continue
        bridge, _, iface = row.peer.rpartition("/")
        other = snap.ifaces.get(iface)
        if other is None or not other.ofport or (bridge and other.bridge != bridge):
            continue
        ends = sorted([(row.bridge, row.ofport), (other.bridge, other.ofport)])
        links.add(DeclaredLink(ends[0][0], ends[0][1], ends[1][0], ends[1][1]))
    return links


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


# -- reading rows out of the IDL (runs in the monitor thread) --------------
def _single(value: Any) -> Any:
    """An optional OVSDB column is a list of zero or one element in the IDL."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _iface_row(row: Any, bridge: str) -> IfaceRow:
    ext = dict(row.external_ids)
    options = dict(row.options)
    ofport = _single(row.ofport)
    peer = ext.get("vportd-peer") or (options.get("peer") if row.type == "patch" else None)
    return IfaceRow(
        name=row.name, bridge=bridge, ofport=ofport if ofport and ofport > 0 else None,
        link_up=_single(row.link_state) == "up", mac=_mac_or_none(ext.get("attached-mac")),
        iface_id=ext.get("iface-id"), vm_id=ext.get("vm-id"), peer=peer,
    )  # fmt: skip


def _mac_or_none(text: str | None) -> str | None:
    from vportd.core.errors import InvalidMac  # noqa: PLC0415
    from vportd.core.model import parse_mac  # noqa: PLC0415

    if text is None:
        return None
    try:
        return parse_mac(text)
    except InvalidMac as err:
        log.warning("ignoring attached-mac: %s", err.detail)
        return None


def _snapshot(tables: Any) -> Snapshot:
    bridges: dict[str, int] = {}
    ifaces: dict[str, IfaceRow] = {}
    for br in tables["Bridge"].rows.values():
        dpid = _single(br.datapath_id)
        if dpid:
            bridges[br.name] = int(dpid, 16)
        for port in br.ports:
            for iface in port.interfaces:
                ifaces[iface.name] = _iface_row(iface, br.name)
    return Snapshot(bridges, ifaces)


class OvsdbMonitor:
    """Follows one OVSDB server; `on_snapshot` runs on the event loop."""

    def __init__(self, remote: str, on_snapshot: Callable[[Snapshot], None]) -> None:
        self.remote = remote
        self.on_snapshot = on_snapshot
        self._stop = threading.Event()

    async def run(self) -> None:
        """Until cancelled; the thread stops within a poll interval after that.

        A daemon thread of its own rather than the loop's executor: a stuck
        OVSDB connection must never keep the process from exiting.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def hand_over(snap: Snapshot) -> None:
            loop.call_soon_threadsafe(self.on_snapshot, snap)

        def body() -> None:
            error: BaseException | None = None
            try:
                self._follow(hand_over)
            except BaseException as exc:
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                loop.call_soon_threadsafe(_settle, done, error)

        self._stop.clear()
        threading.Thread(target=body, name=f"ovsdb {self.remote}", daemon=True).start()
        try:
            await done
        finally:
            self._stop.set()

    def stop(self) -> None:
        self._stop.set()

    def _follow(self, hand_over: Callable[[Snapshot], None]) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ovs.poller imports eventlet to probe for it
            import ovs.db.idl  # noqa: PLC0415
            import ovs.poller  # noqa: PLC0415
            from ovsdbapp.backend.ovs_idl import idlutils  # noqa: PLC0415
        helper = self._schema(idlutils)
        if helper is None:
            return
        for table, columns in _COLUMNS.items():
            helper.register_columns(table, columns)
        idl = ovs.db.idl.Idl(self.remote, helper)
        seen = None
        try:
            while not self._stop.is_set():
                idl.run()
                if idl.change_seqno != seen and idl.has_ever_connected():
                    seen = idl.change_seqno
                    hand_over(_snapshot(idl.tables))
                poller = ovs.poller.Poller()
                idl.wait(poller)
                poller.timer_wait(100)
                poller.block()
        finally:
            idl.close()

    def _schema(self, idlutils: Any) -> Any:
        while not self._stop.is_set():
            try:
                return idlutils.get_schema_helper(self.remote, "Open_vSwitch")
            except Exception as err:
                log.warning("OVSDB %s not reachable (%s); retrying", self.remote, err)
                self._stop.wait(1.0)
        return None
