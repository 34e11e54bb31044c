"""The runtime fed by several OVSDB servers, one per hypervisor, as in production.

Snapshots are handed to `Runtime._on_snapshot` as the monitors would; no I/O.
What is checked is the outcome: the vPort table and the topology.
"""

from __future__ import annotations

from pathlib import Path

from vportd.core.model import PortState
from vportd.node.config import Config
from vportd.node.runtime import Runtime
from vportd.southbound.ovsdb.snapshot import IfaceRow, Snapshot

VM1, VM2, VM3 = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"


def runtime(tmp_path: Path) -> Runtime:
    config = Config.model_validate({"controller": {"id": "c0"}, "ovsdb": {"remotes": []}})
    return Runtime(config)


def vm(name: str, bridge: str, ofport: int, mac: str) -> IfaceRow:
    return IfaceRow(name, bridge, ofport, True, mac)


def tunnel(bridge: str, ofport: int, peer: str) -> IfaceRow:
    return IfaceRow(f"{bridge}-tun", bridge, ofport, True, peer=peer)


def snap(bridge: str, dpid: int | None, *rows: IfaceRow, changed: set[str] | None) -> Snapshot:
    bridges = {} if dpid is None else {bridge: dpid}
    names = None if changed is None else frozenset(changed)
    return Snapshot(bridges, {r.name: r for r in rows}, 0.0, names, dpid is not None)


def where(rt: Runtime, mac: str) -> tuple[str | None, int | None, PortState] | None:
    rec = rt.core.record(mac)
    return None if rec is None or not rec.present else (rec.loc.ovs, rec.loc.port, rec.port_state)


async def test_the_same_interface_name_on_two_hypervisors_is_two_vms(tmp_path: Path) -> None:
    """libvirt names a VM's tap vnet0 on every host: the servers' rows never mix."""
    rt = runtime(tmp_path)
    await rt._on_snapshot("a", snap("hv1", 1, vm("vnet0", "hv1", 1, VM1), changed=None))
    await rt._on_snapshot("b", snap("hv2", 2, vm("vnet0", "hv2", 1, VM2), changed=None))
    assert where(rt, VM1) == ("hv1", 1, PortState.UP)
    assert where(rt, VM2) == ("hv2", 1, PortState.UP)
    await rt._on_snapshot("b", snap("hv2", 2, changed={"vnet0"}))
    assert where(rt, VM1) == ("hv1", 1, PortState.UP)
    assert where(rt, VM2) is None


async def test_a_link_declared_to_another_server_joins_the_two_switches(tmp_path: Path) -> None:
    """`vportd-peer=BRIDGE/INTERFACE` names an interface another server holds (a tunnel)."""
    rt = runtime(tmp_path)
    await rt._on_snapshot("a", snap("hv1", 1, tunnel("hv1", 9, "hv2/hv2-tun"), changed=None))
    assert not rt.core.is_link("hv1", 9)
    await rt._on_snapshot("b", snap("hv2", 2, tunnel("hv2", 7, "hv1/hv1-tun"), changed=None))
    assert rt.core.is_link("hv1", 9)
    assert rt.core.is_link("hv2", 7)


async def test_what_changed_is_trusted_only_after_a_whole_snapshot(tmp_path: Path) -> None:
    """A monitor's `changed` names what differs from its previous snapshot. The runtime
    relies on it (a boot storm hands over thousands of snapshots: each must cost what
    changed, not every row), but only when the previous one was fed whole. The last
    snapshot here misstates what changed on purpose, to show it is relied on: a
    regression in which every snapshot was compared in full went unnoticed once."""
    rt = runtime(tmp_path)
    first = vm("vnet0", "hv1", 1, VM1)
    await rt._on_snapshot("a", snap("hv1", None, first, changed={"vnet0"}))  # no datapath id yet
    assert where(rt, VM1) is None
    await rt._on_snapshot("a", snap("hv1", 1, first, changed=set()))  # after a filtered one: all
    assert where(rt, VM1) == ("hv1", 1, PortState.UP)
    second = vm("vnet1", "hv1", 2, VM2)
    await rt._on_snapshot("a", snap("hv1", 1, first, second, changed={"vnet1"}))
    assert where(rt, VM2) == ("hv1", 2, PortState.UP)
    third = vm("vnet2", "hv1", 3, VM3)
    await rt._on_snapshot("a", snap("hv1", 1, first, second, third, changed=set()))
    assert where(rt, VM3) is None
