"""What other controllers need of a switch they do not follow: `switches/{name}` in etcd.

The master of a switch follows its OVSDB server and publishes these facts on
its session lease: the datapath id (to name the switch's OpenFlow
connections), the remote that serves it, its inter-switch interfaces (to find
the declared links: patch pairs and `vportd-peer` hints) and, on an overlay
host, its tunnel endpoint. The others read them and take them as their own
OVSDB reads would be (`as_snapshots`, `tunnels`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from vportd.cluster.codec import IP, Name, OfPort, Strict
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


class FactsWire(Strict):
    """`switches/{name}` as stored."""

    bridge: Name
    dpid: Annotated[int, Field(ge=0, le=2**64 - 1)]
    remote: Name
    links: Annotated[list[tuple[Name, OfPort, Name | None]], Field(max_length=65_536)]
    encap_ip: IP | None = None
    tunnel_port: OfPort | None = None
    tunnel_kind: Literal["geneve", "vxlan"] = "geneve"


def encode(facts: SwitchFacts) -> bytes:
    t = facts.tunnel
    tunnel: dict[str, Any] = {}
    if t is not None:
        tunnel = {"encap_ip": t.ip, "tunnel_port": t.port, "tunnel_kind": t.kind}
    wire = FactsWire.model_construct(
        bridge=facts.name, dpid=facts.dpid, remote=facts.remote, links=list(facts.ifaces), **tunnel
    )
    return wire.model_dump_json(exclude_none=True).encode()


def decode(value: bytes) -> SwitchFacts:
    """ValueError if `value` is not a switch's facts."""
    try:
        w = FactsWire.model_validate_json(value)
    except ValidationError as err:
        raise ValueError(f"not a switch's facts: {err.error_count()} errors") from None
    tunnel = None
    if w.encap_ip is not None:
        tunnel = TunnelEndpoint(w.bridge, w.encap_ip, w.tunnel_port, w.tunnel_kind)
    return SwitchFacts(w.bridge, w.dpid, w.remote, tuple(w.links), tunnel)


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
