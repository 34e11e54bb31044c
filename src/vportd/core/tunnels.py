"""The overlay: hypervisors joined over an IP underlay by one flow-based tunnel port each.

An overlay host's OVSDB names it (`Open_vSwitch external_ids:hostname`, which
names its integration bridge, the switch) and its tunnel endpoint
(`external_ids:vportd-encap-ip`); its `br-int` has one Geneve or VXLAN port
with `options:remote_ip=flow options:key=flow`, whose OpenFlow number the
flows output to with `tun_dst` and `tun_id` set per frame. Every overlay host
reaches every other through it: no inter-switch links between them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TunnelEndpoint:
    """An overlay host: its switch's name, its underlay IPv4 address, its tunnel port's
    OpenFlow number (None until ovs-vswitchd has numbered it) and kind."""

    host: str
    ip: str
    port: int | None
    kind: str = "geneve"


class Tunnels:
    """The overlay hosts, by switch name."""

    def __init__(self) -> None:
        self._ends: dict[str, TunnelEndpoint] = {}
        self.version = 0

    def set(self, ends: Iterable[TunnelEndpoint]) -> bool:
        """Take the endpoints known now; whether anything changed."""
        new = {e.host: e for e in ends}
        if new == self._ends:
            return False
        self._ends.clear()  # (in place: `hosts` is held by the flow compiler)
        self._ends.update(new)
        self.version += 1
        return True

    @property
    def hosts(self) -> Mapping[str, TunnelEndpoint]:
        """The overlay hosts' endpoints by name: always the same mapping, kept current."""
        return self._ends

    def get(self, host: str) -> TunnelEndpoint | None:
        return self._ends.get(host)

    def port(self, host: str) -> int | None:
        """The tunnel port of an overlay host that has one numbered."""
        end = self._ends.get(host)
        return None if end is None else end.port

    def joined(self, a: str, b: str) -> bool:
        """Whether `a` reaches `b` through its tunnel: both overlay hosts, `a` with its port."""
        return a != b and self.port(a) is not None and b in self._ends

    def __iter__(self) -> Iterator[TunnelEndpoint]:
        return iter(sorted(self._ends.values(), key=lambda e: e.host))
