"""Tenant segments through the real runtime: OVSDB's port tags become the vPorts'
segments, frames stay in their segment across the patch links, and a link change on a
tagged port keeps the VM's segment."""

from __future__ import annotations

from tests.rig.cluster import Rig
from tests.rig.fabric import VmPort

T1 = VmPort("02:00:00:00:02:01", "hv0", 1, tag=10)
T2 = VmPort("02:00:00:00:02:02", "hv1", 2, tag=10)
U = VmPort("02:00:00:00:02:03", "hv2", 3)
V = VmPort("02:00:00:00:02:04", "hv1", 4, tag=20)


async def test_tagged_vms_reach_their_segment_only(rig: Rig) -> None:
    await rig.boot(T1, T2, U, V)
    for member in rig.live():
        assert {m: member.core.vport(m).loc.segment for m in (T1.mac, T2.mac, U.mac, V.mac)} == {
            T1.mac: 10, T2.mac: 10, U.mac: 0, V.mac: 20,
        }  # fmt: skip
    assert rig.fabric.deliveries(T2.mac, T1.switch, T1.port, src=T1.mac) == {("hv1", 2)}
    assert rig.fabric.deliveries(T1.mac, T2.switch, T2.port, src=T2.mac) == {("hv0", 1)}
    for sender, dst in [(U, T1.mac), (V, T1.mac), (T1, U.mac), (T1, V.mac), (V, T2.mac)]:
        assert rig.fabric.deliveries(dst, sender.switch, sender.port, src=sender.mac) == set()
    broadcast = "ff:ff:ff:ff:ff:ff"
    assert rig.fabric.deliveries(broadcast, T1.switch, T1.port, src=T1.mac) == {("hv1", 2)}
    assert rig.fabric.deliveries(broadcast, V.switch, V.port, src=V.mac) == set()


async def test_a_link_change_keeps_the_segment(rig: Rig) -> None:
    await rig.boot(T1, T2)
    master = rig.master(T1.switch)
    rig.fabric.set_link(T1, False)
    await rig.until(lambda: not master.core.vport(T1.mac).loc.link_up, "the port down")
    rig.fabric.set_link(T1, True)
    await rig.until(lambda: master.core.vport(T1.mac).loc.link_up, "the port up")
    await rig.settle()
    assert master.core.vport(T1.mac).loc.segment == 10
    assert rig.fabric.deliveries(T1.mac, T2.switch, T2.port, src=T2.mac) == {("hv0", 1)}
