"""Claims 8 and 9 with the VMM vportd ships: `vportctl migrate`'s client on a real cluster.

The VMM names the VM, its source and its destination in the notify (claim 9), and starts
moving the VM only once the leader answered notify complete (claim 8): by then the
destination's switch holds the VM's arrival flow and both controllers show it migrating.
"""

from __future__ import annotations

import asyncio

from tests.api.conftest import VM_A
from tests.rig.cluster import Rig
from tests.rig.http import TOKEN
from vportd.core.model import MigrationState, PortState
from vportd.core.pipeline import arrival_flow
from vportd.ctl.target import Target, connect


async def test_the_vmm_names_the_vm_and_moves_it_only_after_notify_complete(rig: Rig) -> None:
    follower = rig.followers()[0]
    token = rig.tmp_path / "vmm.token"
    token.write_text(TOKEN + "\n")
    target = Target((follower.url,), "the test", token, "the test")

    def migrate() -> tuple[dict[str, object], bool]:
        with connect(target) as vmm:  # a blocking client, as the libvirt hook runs it
            return vmm.migrate(VM_A.mac, "hv0", "hv1")

    migration, created = await asyncio.to_thread(migrate)
    # Claim 9: what the cluster heard is the VM, its source and its destination.
    assert (migration["vm"], migration["source"], migration["destination"]) == (
        VM_A.mac, "hv0", "hv1",
    )  # fmt: skip
    assert created and migration["state"] == "ready"
    # Claim 8: notify complete means the network is ready for the VM to move.
    assert arrival_flow(VM_A.mac) in rig.fabric.switch("hv1").table.core_flows()
    for cid in (rig.master("hv0").id, rig.master("hv1").id):
        entry = rig[cid].core.vport(VM_A.mac)
        assert (entry.migration_state, entry.port_state) == (MigrationState.MIGRATING, PortState.UP)
