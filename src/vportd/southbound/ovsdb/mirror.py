"""The monitor's `Snapshot`, kept up to date row by row (`Mirror`).

Only the rows an update touched are read again, and an unchanged interface
keeps its `IfaceRow` object, so that comparing two snapshots
(`snapshot.diff_ports`) is mostly identity checks.

Port numbers, as early as the facts allow: ovs-vswitchd writes `ofport` some
time after the transaction that added the port has committed (it
reconfigures every port of every bridge first). A port added with
`ofport_request` (as libvirt and our lab do) is shown at once with the
requested number, marked `pending`, link down, unless another port of its
bridge holds or wants that number (ovs-vswitchd would number it otherwise).
When ovs-vswitchd writes `ofport`, that number wins: a different one moves
the port (`diff_ports`: delete + add), -1 (it failed the port, see the
`error` column) removes it.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from vportd.core.errors import InvalidMac
from vportd.core.model import parse_mac
from vportd.southbound.ovsdb.snapshot import Host, IfaceRow, Snapshot
from vportd.southbound.ovsdb.wire import TABLES, UUID, Row, Rows

log = logging.getLogger("vportd.ovsdb")

# An overlay hypervisor's one bridge for VMs (as OpenStack's and OVN's), named after its host.
INTEGRATION_BRIDGE = "br-int"
TUNNEL_TYPES = ("geneve", "vxlan")


def _single(value: frozenset[Any]) -> Any:
    """An optional OVSDB column is a set of zero or one element."""
    return next(iter(value)) if value else None


def _iface_row(row: Row, bridge: str, segment: int = 0) -> IfaceRow:
    ext: dict[str, str] = row["external_ids"]
    options: dict[str, str] = row["options"]
    ofport, pending = _ofport(_single(row["ofport"]), _single(row["ofport_request"]))
    peer = ext.get("vportd-peer") or (options.get("peer") if row["type"] == "patch" else None)
    flow_based = row["type"] in TUNNEL_TYPES and options.get("remote_ip") == "flow"
    return IfaceRow(
        name=row["name"], bridge=bridge, ofport=ofport,
        link_up=_single(row["link_state"]) == "up", mac=_mac_or_none(ext.get("attached-mac")),
        iface_id=ext.get("iface-id"), vm_id=ext.get("vm-id"), peer=peer, pending=pending,
        error=_single(row["error"]), segment=segment,
        tunnel=row["type"] if flow_based else None,
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


def _ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        log.warning("ignoring external_ids:vportd-encap-ip=%r: not an IPv4 address", text)
        return False
    return True


def _mac_or_none(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return parse_mac(text)
    except InvalidMac as err:
        log.warning("ignoring attached-mac: %s", err.detail)
        return None


@dataclass(frozen=True, slots=True)
class _BridgeFacts:
    name: str
    dpid: int | None
    ports: frozenset[UUID]


class Mirror:
    """The snapshot, kept up to date from the session's change notices.

    A walk of every bridge, port and interface at each change would be Python
    work on the event loop growing with the number of ports. `notice` (called
    for every row an update touches) marks a row changed; `snapshot` re-reads
    the changed rows, re-places the interfaces whose row, port or bridge
    changed, and copies two dicts. An interface that did not change keeps its
    `IfaceRow` object. Rows that left the tables without a notice, or came
    without one, count as changed.

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
        self._port_tags: dict[UUID, int] = {}  # of the ports that have a VLAN tag
        self._rows: dict[UUID, IfaceRow] = {}  # interface -> its row in the snapshot
        self._dpids: dict[str, int] = {}  # what the snapshot shows
        self._by_name: dict[str, IfaceRow] = {}
        self._holders: dict[tuple[str, int], UUID] = {}  # (bridge, ofport) -> interface
        self._system: dict[UUID, dict[str, str]] = {}  # the Open_vSwitch row's external_ids
        self._host: Host | None = None

    def notice(self, uuid: UUID, table: str) -> None:
        self._changed[uuid] = table

    def snapshot(self, rows: dict[str, Rows]) -> Snapshot:
        changed, self._changed = self._changed, {}
        known: dict[str, dict[UUID, Any]] = {
            "Open_vSwitch": self._system, "Bridge": self._bridges, "Port": self._port_ifaces,
            "Interface": self._rows,
        }  # fmt: skip
        for table in TABLES:  # C-speed set operations, not a walk
            for uuid in known[table].keys() ^ rows[table].keys():
                changed.setdefault(uuid, table)
        touched: set[UUID] = set()  # interfaces to place again
        if any(table == "Open_vSwitch" for table in changed.values()) and self._rehost(rows):
            touched |= rows["Interface"].keys() | self._rows.keys()
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
            dict(self._dpids), dict(self._by_name), time.monotonic(), frozenset(names), named,
            self._host,
        )  # fmt: skip

    def _rehost(self, rows: dict[str, Rows]) -> bool:
        """Read the Open_vSwitch row again; whether the host's facts changed (then every
        bridge's name may have: an overlay host's integration bridge is named after it)."""
        self._system = {u: dict(r["external_ids"]) for u, r in rows["Open_vSwitch"].items()}
        ids = next(iter(self._system.values()), {})
        name, ip = ids.get("hostname"), ids.get("vportd-encap-ip")
        host = Host(name, ip) if name and ip and _ipv4(ip) else None
        if host == self._host:
            return False
        self._host = host
        self._dpids = {}
        for bridge in self._bridges.values():
            alias = self._alias(bridge.name)
            if alias is not None and bridge.dpid is not None:
                self._dpids[alias] = bridge.dpid
        return True

    def _alias(self, bridge: str) -> str | None:
        """The switch a bridge is: itself, or on an overlay host its integration bridge
        is the host (and its other bridges, the underlay's, are none)."""
        host = self._host
        if host is None:
            return bridge
        return host.name if bridge == INTEGRATION_BRIDGE else None

    def _bridge(self, uuid: UUID, row: Row | None) -> set[UUID]:
        """Read a bridge again; the interfaces of the ports that joined or left it."""
        old = self._bridges.pop(uuid, None)
        new = None
        if row is not None:
            dpid = _single(row["datapath_id"])
            new = self._bridges[uuid] = _BridgeFacts(
                row["name"], int(dpid, 16) if dpid else None, row["ports"]
            )
        if old is not None and (alias := self._alias(old.name)) is not None:
            self._dpids.pop(alias, None)
        if new is not None and new.dpid is not None and (alias := self._alias(new.name)):
            self._dpids[alias] = new.dpid
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
        self._port_tags.pop(uuid, None)
        new: tuple[UUID, ...] = ()
        if row is not None:
            tag = _single(row["tag"])
            if tag:
                self._port_tags[uuid] = tag
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
        switch = None if bridge is None else self._alias(bridge.name)
        if row is None or switch is None:
            return names
        new = old
        segment = 0 if port is None else self._port_tags.get(port, 0)
        if new is None or reread or new.bridge != switch or new.segment != segment:
            new = _iface_row(row, switch, segment)
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
