"""From OVSDB snapshots to what the core needs: bridges, VM port events, declared links.

One OVSDB server per hypervisor in production: each server's snapshots are
diffed on their own, so that an update costs what changed on it, not every
row of every server. A bridge counts once it has a datapath id; its VM ports
then show up as adds. The feed follows every bridge whether or not its
OpenFlow channel is up, so that a controller that (re)starts knows every VM
before it reconciles the first switch. A server the controller stops following
is `forget`-ten; what its masters publish of the switches of servers not
followed (`published`) counts for the links and tunnel endpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

from vportd.core.messages import EventKind, PortEvent
from vportd.core.topology import Link
from vportd.core.tunnels import TunnelEndpoint
from vportd.node.facts import SwitchFacts, of_snapshot
from vportd.southbound.ovsdb.snapshot import (
    EMPTY,
    Change,
    DeclaredLink,
    IfaceRow,
    Snapshot,
    declared_links,
    diff_ports,
)

_KIND = {
    Change.ADD: EventKind.ADD,
    Change.MODIFY: EventKind.MODIFY,
    Change.DELETE: EventKind.DELETE,
}


def port_events(change: Change, row: IfaceRow) -> list[PortEvent]:
    """The core's events for one VM port change; an add that is already up is add + modify."""
    assert row.mac is not None and row.ofport is not None
    ev = PortEvent(
        _KIND[change], row.bridge, row.ofport, row.mac, row.name, row.link_up,
        (), row.iface_id, row.vm_id, row.segment,
    )  # fmt: skip
    if change is Change.ADD and row.link_up:
        return [ev, replace(ev, kind=EventKind.MODIFY)]
    return [ev]


@dataclass
class Fed:
    """What one snapshot brought."""

    bridges: dict[str, int] = field(default_factory=dict)  # every named bridge, name -> dpid
    events: list[PortEvent] = field(default_factory=list)  # of the wanted bridges
    links_changed: bool = False
    tunnels_changed: bool = False
    fabric_changed: bool = False  # a bridge or a non-VM interface (what `facts` publishes)


class OvsdbFeed:
    def __init__(self) -> None:
        self._snapshots: dict[str, Snapshot] = {}
        self._whole: dict[str, bool] = {}  # whether the last snapshot was fed unfiltered
        # The VM port rows by (bridge, ofport), kept from each diff: a port status must
        # not scan every row (a boot storm brings thousands of each).
        self._vm_ports: dict[tuple[str, int], IfaceRow] = {}
        self._link_names: set[str] = set()  # interfaces that declare a link or are named by one
        self._declared: set[Link] = set()
        self._tunnels: dict[str, TunnelEndpoint] = {}  # per OVSDB server of an overlay host
        # The servers not followed, as their switches' masters publish them (`facts`).
        self._published: dict[str, Snapshot] = {}
        self._published_tunnels: dict[str, TunnelEndpoint] = {}  # by host

    def snapshot(self, remote: str, snap: Snapshot, wanted: Callable[[str], bool]) -> Fed:
        """Take a server's snapshot; port events only for bridges `wanted` (mastered)."""
        old, new = self._snapshots.get(remote, EMPTY), _named_only(snap)
        whole = new is snap
        if new.changed is not None and not (whole and self._whole.get(remote, False)):
            # "What changed" is relative to the monitor's previous snapshot: it holds
            # only if that one, and this one, were fed whole (not filtered).
            new = replace(new, changed=None)
        self._whole[remote] = whole
        self._snapshots[remote] = new
        fed = Fed(dict(new.bridges), fabric_changed=_fabric_changed(old, new))
        for change in diff_ports(old, new):
            self._index(change.change, change.row)
            if wanted(change.row.bridge):  # (skip making the events of others' switches)
                fed.events += port_events(change.change, change.row)
        tunnel = _tunnel(new)
        if self._tunnels.get(remote) != tunnel:
            fed.tunnels_changed = True
            if tunnel is None:
                del self._tunnels[remote]
            else:
                self._tunnels[remote] = tunnel
        if self._links_may_change(new):
            fed.links_changed = self._relink()
        return fed

    def forget(self, remote: str) -> Fed:
        """Stop following `remote`: its snapshot, VM ports, tunnel and links go."""
        old = self._snapshots.pop(remote, None)
        self._whole.pop(remote, None)
        for row in () if old is None else old.ifaces.values():
            if row.is_vm and row.ofport:
                self._index(Change.DELETE, row)
        fed = Fed(tunnels_changed=self._tunnels.pop(remote, None) is not None)
        fed.links_changed = self._relink()
        return fed

    def following(self, remote: str) -> bool:
        """Whether a snapshot of `remote` is in (since it was last forgotten)."""
        return remote in self._snapshots

    def published(self, snaps: dict[str, Snapshot], tunnels: list[TunnelEndpoint]) -> Fed:
        """What the masters publish of their switches (`node.facts`), by remote."""
        old = self.tunnels
        self._published = snaps
        self._published_tunnels = {e.host: e for e in tunnels}
        return Fed(links_changed=self._relink(), tunnels_changed=self.tunnels != old)

    def facts(self, switch: str) -> SwitchFacts | None:
        """What others need of `switch`, if a followed server serves it."""
        for remote, snap in self._snapshots.items():
            if switch in snap.bridges:
                return of_snapshot(switch, remote, snap, self._tunnels.get(remote))
        return None

    def _relink(self) -> bool:
        snaps = [*self._snapshots.values()]
        snaps += [s for r, s in self._published.items() if r not in self._snapshots]
        declared = {_link(x) for x in declared_links(snaps)}
        changed = declared != self._declared
        self._declared = declared
        self._link_names = _link_names(self._snapshots.values())
        return changed

    @property
    def tunnels(self) -> list[TunnelEndpoint]:
        """The overlay hosts' tunnel endpoints, as their OVSDB servers (or, for servers
        not followed, their masters) show them."""
        ends = dict(self._published_tunnels)
        ends.update((e.host, e) for e in self._tunnels.values())
        return sorted(ends.values(), key=lambda e: e.host)

    @property
    def declared(self) -> set[Link]:
        """Links declared in OVSDB: patch port pairs and `vportd-peer` hints."""
        return self._declared

    def vm_row(self, switch: str, port: int) -> IfaceRow | None:
        """The OVSDB row of VM port `port` of `switch`, if it is one."""
        return self._vm_ports.get((switch, port))

    def vm_ports(self, switch: str) -> set[int]:
        return {port for (bridge, port) in self._vm_ports if bridge == switch}

    def ports_of(self, switch: str) -> list[PortEvent]:
        """The VM ports of `switch` as adds (and modifies, if up): what a new master reads."""
        events: list[PortEvent] = []
        for row in self.rows():
            if row.bridge == switch and row.is_vm and row.ofport is not None:
                events += port_events(Change.ADD, row)
        return events

    def rows(self) -> Iterator[IfaceRow]:
        """Every interface row of every OVSDB server."""
        for snap in self._snapshots.values():
            yield from snap.ifaces.values()

    def _index(self, change: Change, row: IfaceRow) -> None:
        assert row.ofport is not None
        at = (row.bridge, row.ofport)
        if change is not Change.DELETE:
            self._vm_ports[at] = row
        elif self._vm_ports.get(at) is row:
            del self._vm_ports[at]

    def _links_may_change(self, new: Snapshot) -> bool:
        """Whether a changed interface declares, or is named by, a link (patch or hint)."""
        if new.changed is None:
            return True
        for name in new.changed:
            row = new.ifaces.get(name)
            if name in self._link_names or (row is not None and row.peer is not None):
                return True
        return False


def _named_only(snap: Snapshot) -> Snapshot:
    """The snapshot without the ports of bridges that have no datapath id yet."""
    if snap.named or all(row.bridge in snap.bridges for row in snap.ifaces.values()):
        return snap
    ifaces = {n: r for n, r in snap.ifaces.items() if r.bridge in snap.bridges}
    return Snapshot(snap.bridges, ifaces, host=snap.host)


def _fabric_changed(old: Snapshot, new: Snapshot) -> bool:
    """Whether a bridge or a non-VM interface differs (cheap when `changed` is known)."""
    if new.bridges != old.bridges:
        return True
    names = new.ifaces.keys() | old.ifaces.keys() if new.changed is None else new.changed
    for name in names:
        was, now = old.ifaces.get(name), new.ifaces.get(name)
        if was != now and not (was is not None and was.is_vm) and not (now and now.is_vm):
            return True
    return False


def _tunnel(snap: Snapshot) -> TunnelEndpoint | None:
    """An overlay host's tunnel endpoint (its port's number, once it has one)."""
    host = snap.host
    if host is None or host.name not in snap.bridges:
        return None
    port = snap.tunnel_port()
    kind = next((r.tunnel for r in snap.ifaces.values() if r.ofport == port and r.tunnel), None)
    return TunnelEndpoint(host.name, host.encap_ip, port, kind or "geneve")


def _link_names(snaps: Iterable[Snapshot]) -> set[str]:
    names = set()
    for snap in snaps:
        for row in snap.ifaces.values():
            if row.peer is not None:
                names |= {row.name, row.peer.rpartition("/")[2]}
    return names


def _link(x: DeclaredLink) -> Link:
    return Link(x.a, x.a_port, x.b, x.b_port)
