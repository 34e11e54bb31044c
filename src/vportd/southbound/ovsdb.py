"""OVSDB monitor: which VM each port belongs to, and the declared inter-switch links.

A monitor follows one OVSDB server on the event loop; every time the database
changes, it takes an immutable `Snapshot` of the rows vportd reads and hands
it on. `diff_ports` (pure) turns two snapshots into port changes. Snapshots
are built incrementally (`_Mirror`): only the rows an update touched are read
again, and an unchanged interface keeps its `IfaceRow` object, so that
comparing two snapshots is mostly identity checks.

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

The OVSDB client is our own (`_Session`), not the ovs library's IDL: the IDL
parses JSON in pure Python (its C parser is not in the PyPI wheel) and turns
every column of every row update into `Datum` objects. In a boot storm of
10,000 ports that was most of each controller's CPU time (py-spy: the monitor
thread ~2/3 of the process's samples, half of it in `ovs.json.Parser`), taken
from a GIL the event loop needs. `_Session` decodes with the stdlib's C
`json`, asks only for the columns below (`monitor_cond`, update2 diffs), and
keeps rows as plain dicts of the few values `_Mirror` reads. It runs on the
event loop, not in a thread per server as it first did: a controller follows
every hypervisor's server, and their threads (twenty in the cluster bench,
each polling ten times a second) fought the loop for the GIL; the loop does
the same parsing itself now, between its other work.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
import re
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, NoReturn

log = logging.getLogger("vportd.ovsdb")


class Kind(StrEnum):
    """How a column's value is kept (and how an update2 diff applies to it)."""

    ATOM = "atom"  # exactly one value: replaced
    OPTIONAL = "optional"  # a set of at most one element: replaced, unless it was empty
    SET = "set"  # a set of more: the diff's elements are toggled
    MAP = "map"  # a map: the diff inserts, replaces or (same value) deletes keys


# The columns vportd reads, and nothing else: every other column ovs-vswitchd writes
# (statistics, status, mac_in_use...) is never sent to us.
_COLUMNS: dict[str, dict[str, Kind]] = {
    "Bridge": {"name": Kind.ATOM, "datapath_id": Kind.OPTIONAL, "ports": Kind.SET},
    "Port": {"name": Kind.ATOM, "interfaces": Kind.SET},
    "Interface": {
        "name": Kind.ATOM, "ofport": Kind.OPTIONAL, "ofport_request": Kind.OPTIONAL,
        "error": Kind.OPTIONAL, "external_ids": Kind.MAP, "link_state": Kind.OPTIONAL,
        "type": Kind.ATOM, "options": Kind.MAP,
    },
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


def declared_links(snaps: Iterable[Snapshot]) -> set[DeclaredLink]:
    """Links declared in OVSDB: patch port pairs and `vportd-peer` hints, both ends known.

    A hint `BRIDGE/INTERFACE` may name an interface of another OVSDB server (a
    tunnel to another hypervisor); a bare name, as a patch port's peer, is
    looked up on the same server. Interface names repeat across hypervisors.
    """
    snaps = list(snaps)
    anywhere = {(r.bridge, r.name): r for snap in snaps for r in snap.ifaces.values()}
    links: set[DeclaredLink] = set()
    for snap in snaps:
        for row in snap.ifaces.values():
            if row.peer is None or not row.ofport:
                continue
            bridge, _, iface = row.peer.rpartition("/")
            other = anywhere.get((bridge, iface)) if bridge else snap.ifaces.get(iface)
            if other is None or not other.ofport:
                continue
            ends = sorted([(row.bridge, row.ofport), (other.bridge, other.ofport)])
            links.add(DeclaredLink(ends[0][0], ends[0][1], ends[1][0], ends[1][1]))
    return links


# -- reading rows ------------------------------------------------------------
Row = dict[str, Any]  # column -> value (`_Tables`: atoms, frozensets, dicts)


def _single(value: frozenset[Any]) -> Any:
    """An optional OVSDB column is a set of zero or one element."""
    return next(iter(value)) if value else None


def _iface_row(row: Row, bridge: str) -> IfaceRow:
    ext: dict[str, str] = row["external_ids"]
    options: dict[str, str] = row["options"]
    ofport, pending = _ofport(_single(row["ofport"]), _single(row["ofport_request"]))
    peer = ext.get("vportd-peer") or (options.get("peer") if row["type"] == "patch" else None)
    return IfaceRow(
        name=row["name"], bridge=bridge, ofport=ofport,
        link_up=_single(row["link_state"]) == "up", mac=_mac_or_none(ext.get("attached-mac")),
        iface_id=ext.get("iface-id"), vm_id=ext.get("vm-id"), peer=peer, pending=pending,
        error=_single(row["error"]),
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


UUID = str  # a row's uuid, as OVSDB spells it
Rows = dict[UUID, Row]  # a table's rows
_TABLES = ("Bridge", "Port", "Interface")


@dataclass(frozen=True, slots=True)
class _BridgeFacts:
    name: str
    dpid: int | None
    ports: frozenset[UUID]


class _Mirror:
    """The snapshot, kept up to date from the session's change notices.

    A walk of every bridge, port and interface is Python work on the event
    loop: rebuilt at every change, a snapshot cost 100 ms at 1,000 ports, and
    a walk that only re-read changed rows still several ms. `notice` (called
    for every row an update touches) marks a row changed;
    `snapshot` re-reads the changed rows, re-places the interfaces whose row,
    port or bridge changed, and copies two dicts. An interface that did not
    change keeps its `IfaceRow` object. Rows that left the tables without a
    notice, or came without one, count as changed.

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

    def notice(self, uuid: UUID, table: str) -> None:
        self._changed[uuid] = table

    def snapshot(self, rows: dict[str, Rows]) -> Snapshot:
        changed, self._changed = self._changed, {}
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

    def _bridge(self, uuid: UUID, row: Row | None) -> set[UUID]:
        """Read a bridge again; the interfaces of the ports that joined or left it."""
        old = self._bridges.pop(uuid, None)
        new = None
        if row is not None:
            dpid = _single(row["datapath_id"])
            new = self._bridges[uuid] = _BridgeFacts(
                row["name"], int(dpid, 16) if dpid else None, row["ports"]
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

    def _port(self, uuid: UUID, row: Row | None) -> set[UUID]:
        """Read a port again; its interfaces, before and after."""
        old = self._port_ifaces.pop(uuid, ())
        for iface in old:
            if self._port_of_iface.get(iface) == uuid:
                del self._port_of_iface[iface]
        new: tuple[UUID, ...] = ()
        if row is not None:
            new = self._port_ifaces[uuid] = tuple(row["interfaces"])
            for iface in new:
                self._port_of_iface[iface] = uuid
        return {*old, *new}

    def _place(self, uuid: UUID, row: Row | None, *, reread: bool) -> set[str]:
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
    """Follows one OVSDB server on the event loop; `on_snapshot` gets each snapshot."""

    def __init__(self, remote: str, on_snapshot: Callable[[Snapshot], None]) -> None:
        self.remote = remote
        self.on_snapshot = on_snapshot

    async def run(self) -> NoReturn:
        """Sessions one after the other until cancelled; the mirror outlives them."""
        mirror = _Mirror()
        while True:
            try:
                reader, writer = await _open(self.remote)
            except OSError as err:
                log.warning("OVSDB %s not reachable (%s); retrying", self.remote, err)
                await asyncio.sleep(RETRY)
                continue
            try:
                await _Session(reader, writer, mirror, self.on_snapshot).run()
            except (OSError, OvsdbError) as err:
                log.warning("OVSDB %s: %s; reconnecting", self.remote, err)
                await asyncio.sleep(RETRY)
            finally:
                writer.close()


# -- the OVSDB client (RFC 7047 with ovsdb-server's monitor_cond) --------------
RETRY = 1.0  # s between connection attempts
PROBE = 5.0  # s without a message before we send an echo; twice that: the link is dead
RECV = 1 << 18  # bytes per read: a storm's update is ~100 KB
MAX_MESSAGE = 256 << 20  # an incomplete message longer than this: not OVSDB
_MONITOR_ID = "vportd-monitor"


class OvsdbError(Exception):
    """The server refused a request, sent what is not JSON-RPC, or stopped answering."""


async def _open(remote: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to `unix:PATH` or `tcp:HOST:PORT`."""
    kind, _, where = remote.partition(":")
    if kind == "unix":
        return await asyncio.open_unix_connection(where)
    if kind == "tcp":
        host, _, port = where.rpartition(":")
        async with asyncio.timeout(RETRY):
            reader, writer = await asyncio.open_connection(host.strip("[]"), int(port))
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer
    raise OSError(f"unsupported OVSDB remote {remote!r} (unix:PATH or tcp:HOST:PORT)")


_SPACE = re.compile(r"\s*")
_DECODER = json.JSONDecoder()


class Framer:
    """JSON-RPC messages out of a byte stream: concatenated JSON objects, no separator.

    Each message is decoded by the C `json` once it is complete. A buffer can
    only be complete when it ends with `}`, so a message split over several
    reads is tried only then (rarely more than once).
    """

    def __init__(self) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")()
        self._buf = ""

    def feed(self, data: bytes) -> list[Any]:
        self._buf += self._text.decode(data)
        messages: list[Any] = []
        if not self._buf.rstrip().endswith("}"):
            self._check_size()
            return messages
        pos = 0
        while True:
            pos = _SPACE.match(self._buf, pos).end()  # type: ignore[union-attr]  # \s* matches
            if pos == len(self._buf):
                break
            try:
                message, pos = _DECODER.raw_decode(self._buf, pos)
            except json.JSONDecodeError:
                break  # the rest is not complete yet
            messages.append(message)
        self._buf = self._buf[pos:]
        self._check_size()
        return messages

    def _check_size(self) -> None:
        if len(self._buf) > MAX_MESSAGE:
            raise OvsdbError(f"no complete JSON message in {len(self._buf)} characters")


def _atom(value: Any) -> Any:
    """An OVSDB atom: ["uuid", U] and ["named-uuid", U] are their uuid string."""
    return value[1] if isinstance(value, list) else value


def _elements(value: Any) -> frozenset[Any]:
    """An OVSDB set: ["set", [atoms]], or a single atom standing for itself."""
    if isinstance(value, list) and value[0] == "set":
        return frozenset(_atom(a) for a in value[1])
    return frozenset((_atom(value),))


def _pairs(value: Any) -> dict[Any, Any]:
    """An OVSDB map: ["map", [[key, value], ...]]."""
    return {_atom(k): _atom(v) for k, v in value[1]}


_DEFAULTS: dict[Kind, Callable[[], Any]] = {
    Kind.ATOM: str, Kind.OPTIONAL: frozenset, Kind.SET: frozenset, Kind.MAP: dict,
}  # fmt: skip


def _new_row(table: str, columns: dict[str, Any]) -> Row:
    """A whole row from an update2 `initial`/`insert` (columns at their default are left out).

    Both ATOM columns we read are strings, whose default is "".
    """
    row: Row = {}
    for column, kind in _COLUMNS[table].items():
        value = columns.get(column)
        if value is None:
            row[column] = _DEFAULTS[kind]()
        elif kind is Kind.ATOM:
            row[column] = _atom(value)
        elif kind in (Kind.OPTIONAL, Kind.SET):
            row[column] = _elements(value)
        else:
            row[column] = _pairs(value)
    return row


def _modify(table: str, row: Row, diff: dict[str, Any]) -> None:
    """Apply an update2 `modify` as ovsdb-server means it (and the ovs IDL's `Datum.diff`).

    An atom, or an optional value that was set, is replaced; set elements are
    toggled; map keys are diffed.
    """
    kinds = _COLUMNS[table]
    for column, value in diff.items():
        kind = kinds.get(column)
        if kind is Kind.ATOM:
            row[column] = _atom(value)
        elif kind is Kind.OPTIONAL and row[column]:
            row[column] = _elements(value)
        elif kind in (Kind.OPTIONAL, Kind.SET):
            row[column] = row[column] ^ _elements(value)
        elif kind is Kind.MAP:
            row[column] = _map_diff(row[column], _pairs(value))


def _map_diff(old: dict[Any, Any], diff: dict[Any, Any]) -> dict[Any, Any]:
    """A key with its old value is deleted; any other pair is set."""
    new = dict(old)
    for key, value in diff.items():
        if new.get(key, _ABSENT) == value:
            del new[key]
        else:
            new[key] = value
    return new


_ABSENT = object()


class _Session:
    """One connection: monitor the columns, keep the tables, answer echoes, hand over snapshots."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        mirror: _Mirror,
        hand_over: Callable[[Snapshot], None],
    ) -> None:
        self.reader, self.writer = reader, writer
        self.mirror = mirror
        self.hand_over = hand_over
        self.framer = Framer()
        self.tables: dict[str, Rows] = {t: {} for t in _TABLES}
        self.monitoring = False
        self.heard = time.monotonic()
        self.probed = False

    async def run(self) -> NoReturn:
        request = {t: [{"columns": list(c)}] for t, c in _COLUMNS.items()}
        self._send({"id": _MONITOR_ID, "method": "monitor_cond",
                    "params": ["Open_vSwitch", None, request]})  # fmt: skip
        while True:
            changed = False
            for message in await self._receive():
                changed |= self._handle(message)
            if changed and self.monitoring:
                # One snapshot per read, however many updates it brought.
                self.hand_over(self.mirror.snapshot(self.tables))
            self._keep_alive()
            await self.writer.drain()
            # A read of data already buffered does not yield: let timers and the other
            # servers' sessions run between two updates (a boot storm's come back to back).
            await asyncio.sleep(0)

    async def _receive(self) -> list[Any]:
        try:
            async with asyncio.timeout(PROBE):
                data = await self.reader.read(RECV)
        except TimeoutError:
            return []
        if not data:
            raise OvsdbError("connection closed by the server")
        self.heard, self.probed = time.monotonic(), False
        return self.framer.feed(data)

    def _keep_alive(self) -> None:
        """An echo after PROBE s of silence; no answer within another PROBE: the link is dead."""
        silent = time.monotonic() - self.heard
        if silent > 2 * PROBE:
            raise OvsdbError(f"no message for {silent:.0f} s")
        if silent > PROBE and not self.probed:
            self._send({"id": "vportd-echo", "method": "echo", "params": []})
            self.probed = True

    def _send(self, message: dict[str, Any]) -> None:
        self.writer.write(json.dumps(message).encode())

    def _handle(self, message: Any) -> bool:
        """Act on one message; whether the tables changed."""
        if not isinstance(message, dict):
            raise OvsdbError(f"not a JSON-RPC message: {str(message)[:200]}")
        method = message.get("method")
        if method == "echo":
            self._send({"id": message.get("id"), "result": message.get("params"), "error": None})
        elif method == "update2" and self.monitoring:
            self._apply(message["params"][1])
            return True
        elif message.get("id") == _MONITOR_ID:
            return self._monitored(message)
        return False

    def _monitored(self, reply: dict[str, Any]) -> bool:
        """The monitor's reply: every row, replacing whatever an earlier session showed."""
        if reply.get("error") is not None:
            raise OvsdbError(f"monitor_cond refused: {reply['error']}")
        self.monitoring = True
        self._apply(reply["result"])
        return True

    def _apply(self, updates: dict[str, dict[str, dict[str, Any]]]) -> None:
        """Apply table-updates2 to the tables, noticing every row they touch."""
        for table, rows in updates.items():
            known = self.tables.get(table)
            if known is None:
                continue
            for uuid, update in rows.items():
                self.mirror.notice(uuid, table)
                ((op, columns),) = update.items()
                if op in ("initial", "insert"):
                    known[uuid] = _new_row(table, columns)
                elif op == "modify" and uuid in known:
                    _modify(table, known[uuid], columns)
                elif op == "delete":
                    known.pop(uuid, None)
