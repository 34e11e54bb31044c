"""An overlay hypervisor's OVSDB through the real monitor and feed: `Open_vSwitch
external_ids` (hostname, vportd-encap-ip) name its switch and its tunnel endpoint, its
flow-based tunnel port is found by type and `remote_ip=flow`, and a VM port's tag is its
segment."""

from __future__ import annotations

from tests.fakes.ovsdb import FakeOvsdb
from tests.fakes.test_ovsdb import VM1, monitoring
from vportd.core.messages import EventKind
from vportd.core.tunnels import TunnelEndpoint
from vportd.node.feed import OvsdbFeed
from vportd.southbound.ovsdb.snapshot import Host

FLOW_BASED = {"remote_ip": "flow", "key": "flow"}


def hypervisor(db: FakeOvsdb) -> None:
    db.add_bridge("br-int", 0x11)
    db.add_bridge("br-phy", 0x12)  # the underlay's bridge: no switch of ours
    db.add_port("br-int", "vportd-tun", 9, type="geneve", options=FLOW_BASED)
    db.add_port("br-int", "vxlan-fixed", 10, type="vxlan", options={"remote_ip": "192.0.2.9"})
    db.add_vm_port("br-int", "vnet0", 5, VM1, tag=10)


async def test_an_overlay_host_is_named_by_its_hostname_with_its_tunnel() -> None:
    async with FakeOvsdb() as db:
        hypervisor(db)
        db.set_system_ids({"hostname": "compute-1", "vportd-encap-ip": "192.0.2.1"})
        async with monitoring(db) as snaps:
            snap = await snaps.until(lambda s: s.host is not None and "vnet0" in s.ifaces)
    assert snap.host == Host("compute-1", "192.0.2.1")
    assert snap.bridges == {"compute-1": 0x11}
    assert snap.tunnel_port() == 9
    assert {r.bridge for r in snap.ifaces.values()} == {"compute-1"}
    feed = OvsdbFeed()
    fed = feed.snapshot("tcp:h1", snap, lambda switch: True)
    assert fed.tunnels_changed
    assert feed.tunnels == [TunnelEndpoint("compute-1", "192.0.2.1", 9, "geneve")]
    (ev,) = [e for e in fed.events if e.kind is EventKind.ADD]
    assert (ev.ovs, ev.port, ev.segment) == ("compute-1", 5, 10)


async def test_a_host_without_an_encap_ip_keeps_its_bridge_names() -> None:
    async with FakeOvsdb() as db:
        hypervisor(db)
        db.set_system_ids({"hostname": "compute-1"})
        async with monitoring(db) as snaps:
            snap = await snaps.until(lambda s: "vnet0" in s.ifaces)
            assert snap.host is None and snap.bridges == {"br-int": 0x11, "br-phy": 0x12}
            assert OvsdbFeed().snapshot("tcp:h1", snap, lambda s: True).tunnels_changed is False
            # The endpoint comes later: the switch is renamed after its host.
            db.set_system_ids({"vportd-encap-ip": "192.0.2.1"})
            snap = await snaps.until(lambda s: s.host is not None)
            assert snap.bridges == {"compute-1": 0x11}
            assert snap.ifaces["vnet0"].bridge == "compute-1"
            db.set_system_ids({"vportd-encap-ip": "not-an-ip"})  # refused: a bridge again
            snap = await snaps.until(lambda s: s.host is None)
            assert snap.bridges == {"br-int": 0x11, "br-phy": 0x12}
