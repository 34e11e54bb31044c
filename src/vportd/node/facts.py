"""What other controllers need of a switch they do not follow: `switches/{name}` in etcd.

The master of a switch follows its OVSDB server and publishes these facts on
its session lease: the datapath id (to name the switch's OpenFlow
connections), the remote that serves it, its inter-switch interfaces (to find
the declared links: patch pairs and `vportd-peer` hints) and, on an overlay
host, its tunnel endpoint. The others read them and take them as their own
OVSDB reads would be (`as_snapshots`, `tunnels`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from vportd.core.tunnels import TunnelEndpoint
from vportd.southbound.ovsdb.snapshot import IfaceRow, Snapshot

Iface = tuple[str, int, str | None]  # (interface name, OpenFlow port, vportd-peer or patch peer)


@dataclass(frozen=True)
class SwitchFacts:
    name: str
    dpid: int
    remote: str
    ifaces: tuple[Iface, ...] = ()
    tunnel: TunnelEndpoint | None = None


def of_snapshot(
    switch: str, remote: str, snap: Snapshot, tunnel: TunnelEndpoint | None
) -> SwitchFacts | None:
    """The facts of `switch` as its server's snapshot shows them (None: not there)."""
    dpid = snap.bridges.get(switch)
    if dpid is None:
        return None
    ifaces = sorted(
        (r.name, r.ofport, r.peer)
        for r in snap.ifaces.values()
        if r.bridge == switch and not r.is_vm and r.ofport
    )
    own = tunnel if tunnel is not None and tunnel.host == switch else None
    return SwitchFacts(switch, dpid, remote, tuple(ifaces), own)


def encode(facts: SwitchFacts) -> bytes:
    data: dict[str, object] = {
        "dpid": facts.dpid, "remote": facts.remote, "bridge": facts.name,
        "links": [list(x) for x in facts.ifaces],
    }  # fmt: skip
    if facts.tunnel is not None:
        t = facts.tunnel
        data |= {"encap_ip": t.ip, "tunnel_port": t.port, "tunnel_kind": t.kind}
    return json.dumps(data, sort_keys=True).encode()


def decode(value: bytes) -> SwitchFacts:
    """ValueError if `value` is not a switch's facts."""
    try:
        data = json.loads(value)
        ifaces = tuple((str(n), int(p), None if x is None else str(x)) for n, p, x in data["links"])
        tunnel = None
        if data.get("encap_ip") is not None:
            port = data.get("tunnel_port")
            tunnel = TunnelEndpoint(
                str(data["bridge"]), str(data["encap_ip"]), None if port is None else int(port),
                str(data.get("tunnel_kind", "geneve")),
            )  # fmt: skip
        return SwitchFacts(str(data["bridge"]), int(data["dpid"]), str(data["remote"]),
                           ifaces, tunnel)  # fmt: skip
    except (LookupError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"not a switch's facts: {err!r}") from None


def as_snapshots(facts: Iterable[SwitchFacts]) -> dict[str, Snapshot]:
    """The published switches as snapshots of their servers (inter-switch interfaces only)."""
    bridges: dict[str, dict[str, int]] = {}
    ifaces: dict[str, dict[str, IfaceRow]] = {}
    for f in facts:
        bridges.setdefault(f.remote, {})[f.name] = f.dpid
        rows = ifaces.setdefault(f.remote, {})
        for name, port, peer in f.ifaces:
            rows[name] = IfaceRow(name, f.name, port, True, peer=peer)
    return {r: Snapshot(bridges[r], ifaces[r]) for r in bridges}
