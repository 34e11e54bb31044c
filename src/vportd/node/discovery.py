"""Links found by LLDP: a probe leaves every infrastructure port, and comes back elsewhere.

Each `interval`, a probe leaves every port of an adopted switch that is
neither reserved nor a VM's; the flow `switches.LLDP_PUNT` brings probes to
the controller. A link goes when its port is deleted or goes down, or after
`MISSES` intervals without a probe through it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from vportd.core.topology import Link
from vportd.southbound import frames
from vportd.southbound.openflow.connection import SwitchConnection
from vportd.southbound.openflow.errors import SwitchClosed

log = logging.getLogger("vportd.lldp")

MISSES = 3  # a discovered link goes after this many intervals without a probe through it


class LinkDiscovery:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        # The link each receiving port leads over, and when a probe last came through.
        self._heard: dict[tuple[str, int], tuple[Link, float]] = {}

    @property
    def links(self) -> set[Link]:
        return {link for link, _ in self._heard.values()}

    def heard(self, at: tuple[str, int], origin: tuple[str, int], now: float) -> bool:
        """A probe from `origin` (switch, port) arrived at `at`; whether that is news."""
        ends = sorted([at, origin])
        link = Link(ends[0][0], ends[0][1], ends[1][0], ends[1][1])
        known = self._heard.get(at)
        self._heard[at] = (link, now)
        if known is not None and known[0] == link:
            return False
        log.info("LLDP: %s port %d leads to %s port %d", at[0], at[1], origin[0], origin[1])
        return True

    def port_down(self, switch: str, port: int) -> bool:
        """A port went down or away: the links found through it are gone."""
        gone = [
            at for at, (link, _) in self._heard.items()
            if (link.a, link.a_port) == (switch, port) or (link.b, link.b_port) == (switch, port)
        ]  # fmt: skip
        return self._drop(gone, "its port went down or away")

    def expire(self, now: float) -> bool:
        limit = now - MISSES * self.interval
        stale = [at for at, (_, seen) in self._heard.items() if seen < limit]
        return self._drop(stale, f"no probe through it for {MISSES} intervals")

    def _drop(self, where: list[tuple[str, int]], why: str) -> bool:
        for at in where:
            link, _ = self._heard.pop(at)
            log.info("LLDP: link %s port %d - %s port %d gone: %s",
                     link.a, link.a_port, link.b, link.b_port, why)  # fmt: skip
        return bool(where)


async def probe(conn: SwitchConnection, skip: Callable[[int], bool]) -> None:
    """Send a probe out of every port of `conn` that is not reserved nor `skip`ped."""
    assert conn.dpid is not None
    for port in conn.ports.values():
        if port.reserved or skip(port.port_no):
            continue
        try:
            await conn.packet_out(port.port_no, frames.build_lldp(conn.dpid, port.port_no))
        except SwitchClosed:
            return
