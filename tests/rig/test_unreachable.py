"""A master cut from one of its switches while the others still reach it.

After `openflow.unreachable_after` without a channel, a controller posts
`unreachable/{switch}/{id}` on its lease; mastership then goes to a controller
that reaches the switch, and nobody counts the switch's VM ports as down: the
VMs run and forward. A switch that no controller reaches is gone: whoever
masters it counts its VM ports as down. Healed, the notice goes and every
switch has one master again.
"""

from __future__ import annotations

from pathlib import Path

from tests.fakes.switch import Channel
from tests.rig.cluster import Rig, running
from tests.rig.fabric import VmPort
from tests.rig.member import Options

OPTIONS = Options(unreachable_after=0.5)
VMS = [VmPort(f"02:00:00:00:09:{k:02x}", f"hv{k % 3}", 1 + k) for k in range(6)]
ON_HV0 = [vm for vm in VMS if vm.switch == "hv0"]


def channel(rig: Rig, switch: str, cid: str) -> Channel:
    """`switch`'s OpenFlow channel to controller `cid`."""
    port = rig[cid].runtime.openflow.port
    return next(c for c in rig.fabric.switch(switch).channels if c.port == port)


def notices(rig: Rig) -> set[str]:
    assert rig.server is not None
    return {key for key, kv in rig.server.range("unreachable/").items() if kv.value is not None}


def up_everywhere(rig: Rig, vms: list[VmPort]) -> bool:
    for m in rig.live():
        for vm in vms:
            rec = m.core.entry(vm.mac)
            if rec is None or not rec.loc.link_up or rec.loc.ovs != vm.switch:
                return False
    return True


def master_of(rig: Rig, switch: str) -> str | None:
    held = {m.core.master_of(switch) for m in rig.live()}
    return held.pop() if len(held) == 1 else None


async def test_a_master_cut_from_its_switch_hands_it_to_a_controller_that_reaches_it(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, OPTIONS) as rig:
        await rig.boot(*VMS)
        cut = rig.master("hv0").id
        cable = channel(rig, "hv0", cut)
        cable.stop()
        await rig.until(lambda: master_of(rig, "hv0") not in (None, cut), "another master")
        assert notices(rig) == {f"unreachable/hv0/{cut}"}
        # The new master reaches hv0 and holds its role there; hv0's VMs are up everywhere.
        new = master_of(rig, "hv0")
        assert new is not None and channel(rig, "hv0", new).ready
        assert up_everywhere(rig, ON_HV0)

        cable.start()
        await rig.until(lambda: not notices(rig), "the notice withdrawn")
        await rig.settle()  # one master per switch, every table the store's
        assert up_everywhere(rig, VMS)


async def test_a_switch_no_controller_reaches_counts_as_down(tmp_path: Path) -> None:
    async with running(tmp_path, OPTIONS) as rig:
        await rig.boot(*VMS)
        rig.fabric.switch("hv0").disconnect()
        everyone = {f"unreachable/hv0/{m.id}" for m in rig.live()}
        await rig.until(lambda: notices(rig) == everyone, "every controller's notice")

        def down_everywhere() -> bool:
            return all(
                (rec := m.core.entry(vm.mac)) is not None and not rec.loc.link_up
                for m in rig.live()
                for vm in ON_HV0
            )

        await rig.until(down_everywhere, "hv0's VMs down in every table")
        await rig.until(lambda: master_of(rig, "hv0") is not None, "a master of hv0")
        rig.fabric.switch("hv0").reconnect()
        await rig.until(lambda: up_everywhere(rig, VMS), "hv0's VMs up again")
        await rig.settle()
