"""A master the switch takes for a slave reads its role again (F-b).

A switch can demote a controller that still believes it masters the switch: a
role reply applied after a hand-over, a new master's request seen only by the
switch. The flow mods of such a controller fail with IS_SLAVE; it must not go
on sending them forever, but claim its role again with the mastership's
current generation (or stand down if another controller masters the switch).
"""

from __future__ import annotations

import logging

import pytest

from tests.fakes.switch import Channel, FakeSwitch
from tests.rig.cluster import Rig
from tests.rig.fabric import VmPort
from vportd.southbound.openflow import wire


def channel_of(switch: FakeSwitch, port: int) -> Channel:
    return next(c for c in switch.channels if c.port == port and c.connected)


async def test_a_master_demoted_behind_its_back_claims_its_role_again(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="vportd")
    master, switch = rig.master("hv2"), rig.fabric.switch("hv2")
    channel = channel_of(switch, master.runtime.openflow.port)
    assert channel.role is wire.Role.MASTER
    channel.role = wire.Role.SLAVE  # demoted, and nobody told it

    vm = VmPort("02:00:00:04:00:01", "hv2", 4)
    await rig.boot(vm)  # its flows go to hv2: refused as from a slave at first
    await rig.settle()
    assert channel_of(switch, master.runtime.openflow.port).role is wire.Role.MASTER
    assert rig.fabric.deliveries(vm.mac, "hv0", 99) == {("hv2", 4)}
    assert set(master.core.installed("hv2")) == switch.table.core_flows()
    slaves = [r for r in caplog.records if "IS_SLAVE" in r.getMessage()]
    assert slaves, "the refusal is logged"
    caplog.clear()
    await rig.boot(VmPort("02:00:00:04:00:02", "hv2", 5))  # and the next flows just go
    await rig.settle()
    assert not [r for r in caplog.records if "IS_SLAVE" in r.getMessage()]
