"""OVSDB monitor: which VM each port belongs to, and the declared inter-switch links.

The ovs IDL is blocking, so it runs in a thread; every time the database
changes, the thread takes an immutable `Snapshot` of the rows vportd reads and
hands it to the event loop. `diff_ports` (pure) turns two snapshots into port
changes. Snapshots are built incrementally (`_Mirror`): only the rows the IDL
reports changed are read again, and an unchanged interface keeps its
`IfaceRow` object, so that comparing two snapshots is mostly identity checks.

A VM port is an Interface with `external_ids:attached-mac` (libvirt's
and OpenStack's convention, with `iface-id` and `vm-id`); any other port is
infrastructure: a patch port (`options:peer`) or a port with
`external_ids:vportd-peer=BRIDGE/INTERFACE` declares an inter-switch link.

Port numbers, as early as the facts allow: ovs-vswitchd writes `ofport` tens
of ms after the transaction that added the port has committed (it reconfigures
every port of every bridge first). A port added with `ofport_request` (as
libvirt and our lab do) is shown at once with the requested number, marked
`pending`, link down, unless another port of its bridge holds or wants that
number (ovs-vswitchd would number it otherwise). When ovs-vswitchd writes
`ofport`, that number wins: a different one moves the port (`diff_ports`:
delete + add), -1 (it failed the port, see the `error` column) removes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any
from uuid import UUID

log = logging.getLogger("vportd.ovsdb")

_COLUMNS = {
    "Bridge": ["name", "datapath_id", "ports"],
    "Port": ["name", "interfaces"],
    "Interface": [
        "name", "ofport", "ofport_request", "error", "external_ids", "link_state", "type",
        "options",
    ],
}  # fmt: skip


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
    # `ofport` is the requested number, ovs-vswitchd has not confirmed it yet (module doc).
    # Not compared: the confirmation of the same number is no change of the port.
    pending: bool = field(default=False, compare=False)
    error: str | None = field(default=None, compare=False)  # why ovs-vswitchd failed the port

    @property
    def is_vm(self) -> bool:
        return self.mac is not None


@dataclass(frozen=True, slots=True)
class Snapshot:
    bridges: dict[str, int]  # name -> datapath id
    ifaces: dict[str, IfaceRow]
    taken: float = 0.0  # time.monotonic() when the monitor read it (0: not from a monitor)
    # The interface names that may differ from the monitor's previous snapshot (None:
    # unknown, compare everything), and whether every bridge has a datapath id: a boot
    # storm hands over thousands of snapshots, each must cost what changed, not all rows.
    changed: frozenset[str] | None = None
    named: bool = False

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
    """VM port changes between two snapshots; a port counts once it has an ofport.

    A port whose number changed (ovs-vswitchd did not grant the requested one)
    is deleted at the old number and added at the new one: the entry never
    claimed a port the VM was on.
    """
    before, after = old.ifaces, new.ifaces
    # The monitor keeps the object of an unchanged row: identity finds what changed.
    if new.changed is not None:  # (`old` must then be the monitor's previous snapshot)
        gone = [(n, r) for n in new.changed if (r := before.get(n)) is not None
                and after.get(n) is not r]  # fmt: skip
        came = [(n, r) for n in new.changed if (r := after.get(n)) is not None
                and before.get(n) is not r]  # fmt: skip
    else:
        gone = [(n, r) for n, r in before.items() if after.get(n) is not r]
        came = [(n, r) for n, r in after.items() if before.get(n) is not r]
    changes: list[PortChange] = []
    for name, row in gone:
        if row.is_vm and row.ofport and not _same_port(row, after.get(name)):
            changes.append(PortChange(Change.DELETE, row))
    for name, row in came:
        if not row.is_vm or not row.ofport:
            continue
        was = before.get(name)
        if was is None or not was.ofport or not _same_port(was, row):
            changes.append(PortChange(Change.ADD, row))
        elif was != row:
            changes.append(PortChange(Change.MODIFY, row))
    return changes


def _same_port(was: IfaceRow, now: IfaceRow | None) -> bool:
    """Still the same VM port: same VM, same OpenFlow number (and bridge: names are unique)."""
    return now is not None and now.ofport == was.ofport and now.mac == was.mac


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
    ofport, pending = _ofport(_single(row.ofport), _single(row.ofport_request))
    peer = ext.get("vportd-peer") or (options.get("peer") if row.type == "patch" else None)
    return IfaceRow(
        name=row.name, bridge=bridge, ofport=ofport, link_up=_single(row.link_state) == "up",
        mac=_mac_or_none(ext.get("attached-mac")), iface_id=ext.get("iface-id"),
        vm_id=ext.get("vm-id"), peer=peer, pending=pending, error=_single(row.error),
    )  # fmt: skip


def _ofport(assigned: int | None, requested: int | None) -> tuple[int | None, bool]:
    """The port's number and whether it is only requested yet (module doc).

    `ofport` is empty until ovs-vswitchd has numbered the port, and -1 once
    it failed to create it: the request counts only while it is empty.
    """
    if assigned is not None:
        return (assigned if assigned > 0 else None), False
    if requested is not None and requested > 0:
        return requested, True
    return None, False


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


Rows = dict[UUID, Any]  # an IDL table's rows
_TABLES = ("Bridge", "Port", "Interface")


@dataclass(frozen=True, slots=True)
class _BridgeFacts:
    name: str
    dpid: int | None
    ports: frozenset[UUID]


class _Mirror:
    """The snapshot, kept up to date from the IDL's change notices (in the monitor thread).

    Reading a column of an IDL row converts its datum at every access, and a
    walk of every bridge, port and interface is Python work that holds the
    GIL (the event loop waits): rebuilt at every change, a snapshot cost
    100 ms at 1,000 ports, and a walk that only re-read changed rows still
    several ms. `notice` (the IDL's `notify` hook) marks a row changed;
    `snapshot` re-reads the changed rows, re-places the interfaces whose row,
    port or bridge changed, and copies two dicts. An interface that did not
    change keeps its `IfaceRow` object. Rows that left the IDL without a
    notice, or came without one (it reconnected), count as changed.

    A requested number is shown only if no other interface of the bridge
    holds it (`_holders`: who has each number, assigned or requested first);
    a contested request is shown without a number until ovs-vswitchd decides.
    """

    def __init__(self) -> None:
        self._changed: dict[UUID, str] = {}  # row -> its table, since the last snapshot
        self._bridges: dict[UUID, _BridgeFacts] = {}
        self._bridge_of_port: dict[UUID, UUID] = {}
        self._port_ifaces: dict[UUID, tuple[UUID, ...]] = {}
        self._port_of_iface: dict[UUID, UUID] = {}
        self._rows: dict[UUID, IfaceRow] = {}  # interface -> its row in the snapshot
        self._dpids: dict[str, int] = {}  # what the snapshot shows
        self._by_name: dict[str, IfaceRow] = {}
        self._holders: dict[tuple[str, int], UUID] = {}  # (bridge, ofport) -> interface

    def notice(self, row: Any) -> None:
        self._changed[row.uuid] = row._table.name

    def snapshot(self, tables: Any) -> Snapshot:
        changed, self._changed = self._changed, {}
        rows: dict[str, Rows] = {t: tables[t].rows for t in _TABLES}
        known: dict[str, dict[UUID, Any]] = {
            "Bridge": self._bridges, "Port": self._port_ifaces, "Interface": self._rows,
        }  # fmt: skip
        for table in _TABLES:  # C-speed set operations, not a walk
            for uuid in known[table].keys() ^ rows[table].keys():
                changed.setdefault(uuid, table)
        touched: set[UUID] = set()  # interfaces to place again
        for uuid, table in changed.items():
            if table == "Bridge":
                touched |= self._bridge(uuid, rows["Bridge"].get(uuid))
        for uuid, table in changed.items():
            if table == "Port":
                touched |= self._port(uuid, rows["Port"].get(uuid))
        touched.update(u for u, table in changed.items() if table == "Interface")
        names: set[str] = set()
        for uuid in touched:
            names |= self._place(uuid, rows["Interface"].get(uuid), reread=uuid in changed)
        named = all(b.dpid is not None for b in self._bridges.values())
        return Snapshot(
            dict(self._dpids), dict(self._by_name), time.monotonic(), frozenset(names), named
        )

    def _bridge(self, uuid: UUID, row: Any) -> set[UUID]:
        """Read a bridge again; the interfaces of the ports that joined or left it."""
        old = self._bridges.pop(uuid, None)
        new = None
        if row is not None:
            dpid = _single(row.datapath_id)
            ports = frozenset(p.uuid for p in row.ports if p is not None)
            new = self._bridges[uuid] = _BridgeFacts(
                row.name, int(dpid, 16) if dpid else None, ports
            )
        if old is not None:
            self._dpids.pop(old.name, None)
        if new is not None and new.dpid is not None:
            self._dpids[new.name] = new.dpid
        before = old.ports if old is not None else frozenset()
        after = new.ports if new is not None else frozenset()
        renamed = old is not None and new is not None and old.name != new.name
        moved = (before | after) if renamed or new is None else before ^ after
        for port in before - after:
            if self._bridge_of_port.get(port) == uuid:
                del self._bridge_of_port[port]
        for port in after:
            self._bridge_of_port[port] = uuid
        return {iface for port in moved for iface in self._port_ifaces.get(port, ())}

    def _port(self, uuid: UUID, row: Any) -> set[UUID]:
        """Read a port again; its interfaces, before and after."""
        old = self._port_ifaces.pop(uuid, ())
        for iface in old:
            if self._port_of_iface.get(iface) == uuid:
                del self._port_of_iface[iface]
        new: tuple[UUID, ...] = ()
        if row is not None:
            new = self._port_ifaces[uuid] = tuple(i.uuid for i in row.interfaces if i is not None)
            for iface in new:
                self._port_of_iface[iface] = uuid
        return {*old, *new}

    def _place(self, uuid: UUID, row: Any, *, reread: bool) -> set[str]:
        """Put an interface in the snapshot under its bridge, or take it out; the names touched."""
        names = set()
        old = self._rows.pop(uuid, None)
        if old is not None:
            names.add(old.name)
            if self._by_name.get(old.name) is old:
                del self._by_name[old.name]
            self._release(uuid, old)
        port = self._port_of_iface.get(uuid)
        bridge_uuid = None if port is None else self._bridge_of_port.get(port)
        bridge = None if bridge_uuid is None else self._bridges.get(bridge_uuid)
        if row is None or bridge is None:
            return names
        new = old
        if new is None or reread or new.bridge != bridge.name:
            new = _iface_row(row, bridge.name)
            if new.error and (old is None or old.error != new.error):
                log.warning("ovs-vswitchd failed port %s: %s", new.name, new.error)
        new = self._claimed(uuid, new)
        self._rows[uuid] = new
        self._by_name[new.name] = new
        names.add(new.name)
        return names

    def _claimed(self, uuid: UUID, new: IfaceRow) -> IfaceRow:
        """Register the row's number; a request another interface holds shows no number."""
        if new.ofport is None:
            return new
        key = (new.bridge, new.ofport)
        if new.pending and self._holders.get(key, uuid) != uuid:
            return replace(new, ofport=None)
        self._holders[key] = uuid  # an assigned number wins over a request
        return new

    def _release(self, uuid: UUID, old: IfaceRow) -> None:
        key = (old.bridge, old.ofport or 0)
        if self._holders.get(key) == uuid:
            del self._holders[key]


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
        mirror = _Mirror()

        class Idl(ovs.db.idl.Idl):  # type: ignore[misc]  # untyped library
            def notify(self, event: str, row: Any, updates: Any = None) -> None:
                mirror.notice(row)

        idl = Idl(self.remote, helper)
        seen = None
        try:
            while not self._stop.is_set():
                idl.run()
                if idl.change_seqno != seen and idl.has_ever_connected():
                    seen = idl.change_seqno
                    hand_over(mirror.snapshot(idl.tables))
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
