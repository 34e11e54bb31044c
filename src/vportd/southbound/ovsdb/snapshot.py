"""What the OVSDB monitor hands on: interface rows in a `Snapshot`, and what follows from them.

`diff_ports` turns two snapshots into VM port changes; `declared_links` finds
the inter-switch links the snapshots of every server declare. Both are pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


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
    # `ofport` is the requested number, ovs-vswitchd has not confirmed it yet (`mirror`).
    # Not compared: the confirmation of the same number is no change of the port.
    pending: bool = field(default=False, compare=False)
    error: str | None = field(default=None, compare=False)  # why ovs-vswitchd failed the port
    segment: int = 0  # its port's VLAN `tag` (0: untagged)
    tunnel: str | None = None  # "geneve" or "vxlan" for a flow-based tunnel port

    @property
    def is_vm(self) -> bool:
        return self.mac is not None


@dataclass(frozen=True, slots=True)
class Host:
    """An overlay hypervisor as its OVSDB says (`Open_vSwitch external_ids`): its name
    (`hostname`), which names its integration bridge, and its tunnel endpoint."""

    name: str
    encap_ip: str


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
    host: Host | None = None  # an overlay hypervisor: its one bridge is named after it

    def tunnel_port(self) -> int | None:
        """The OpenFlow number of the host's flow-based tunnel port, if it has one."""
        if self.host is None:
            return None
        ports = sorted(r.ofport for r in self.ifaces.values() if r.tunnel and r.ofport)
        return ports[0] if ports else None


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
    """Still the same VM port: same VM, bridge and OpenFlow number. (An interface keeps
    its name when one transaction moves it to another bridge, where its number may be
    the same: `del-port b1 p -- add-port b2 p`.)"""
    return (
        now is not None
        and now.ofport == was.ofport
        and now.mac == was.mac
        and now.bridge == was.bridge
    )


@dataclass(frozen=True, slots=True)
class DeclaredLink:
    a: str
    a_port: int
    b: str
    b_port: int


def declared_links(snaps: Iterable[Snapshot]) -> set[DeclaredLink]:
    """Links declared in OVSDB: patch port pairs and `vportd-peer` hints, both ends known
    and on two bridges.

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
            if other is None or not other.ofport or other.bridge == row.bridge:
                continue  # (a patch pair on one bridge is a loop, not an inter-switch link)
            ends = sorted([(row.bridge, row.ofport), (other.bridge, other.ofport)])
            links.add(DeclaredLink(ends[0][0], ends[0][1], ends[1][0], ends[1][1]))
    return links
