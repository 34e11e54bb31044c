"""One test per claim of the seed patent, asserting what the claim says in its terms.

Set-up (see conftest): hv0, hv1, hv2 in a mesh mastered by c0, c1, c2; c0 leads.
VM A is on hv1 port 1, VM B on hv2 port 1, VM C on hv0 port 1.
"""

from __future__ import annotations

from collections.abc import Sequence

from tests.core.support import VM_A, add, delete, link, ready_migration
from vportd.core.flow import FlowCommand, FlowMod, Output
from vportd.core.messages import (
    EventKind,
    NotifyAnswer,
    PortEventSync,
    Reason,
    Send,
    SyncComplete,
    VPortSync,
)
from vportd.core.model import MigrationState, PortState
from vportd.core.vmm import SendNotify, StartLiveMigration, VmmMigration
from vportd.core.wire import (
    NotifyRequest,
    RestCall,
    answer_from_rest,
    answer_to_rest,
    from_rest,
    notify_to_rest,
    to_rest,
)
from vportd_lab.sim.cluster import SimCluster

UP, DOWN = PortState.UP, PortState.DOWN
MIGRATING, NOT_MIGRATING = MigrationState.MIGRATING, MigrationState.NOT_MIGRATING


def sends(effects: Sequence[object]) -> list[Send]:
    return [e for e in effects if isinstance(e, Send)]


def entry_states(sim: SimCluster, vm: str) -> dict[str, tuple[MigrationState, PortState]]:
    out = {}
    for cid, ctl in sim.controllers.items():
        rec = ctl.table.get(vm)
        assert rec is not None, f"{cid} has no entry for {vm}"
        out[cid] = (rec.migration_state, rec.port_state)
    return out


def test_claim_1_every_controller_holds_every_vport_and_the_leaders_sync_sets_migrating_up(
    sim: SimCluster,
) -> None:
    # Claim 1: every controller keeps the vPort list of all OVS of the cluster,
    # each entry with the VM address, migration state and port state.
    for ctl in sim.controllers.values():
        assert {r.vm for r in ctl.table} == {
            "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c",
        }  # fmt: skip
    sim.port_event(link("hv1", 1, VM_A, up=False))
    sim.deliver_all()
    assert entry_states(sim, VM_A)["c1"] == (NOT_MIGRATING, DOWN)

    sim.notify(VM_A, "hv1", "hv2")
    to_c1 = next(i for i, m in enumerate(sim.queue) if m.to == "c1")
    sync = sim.queue[to_c1].message
    assert isinstance(sync, VPortSync)
    assert (sync.record.migration_state, sync.record.port_state) == (MIGRATING, UP)
    sim.deliver(to_c1)
    # ... and a controller that receives the leader's sync takes migrating/up.
    assert entry_states(sim, VM_A)["c1"] == (MIGRATING, UP)


def test_claim_2_source_port_delete_while_migrating_keeps_up_deletes_flows_and_forwards(
    sim: SimCluster,
) -> None:
    ready_migration(sim, VM_A, "hv1", "hv2")
    source = sim.controllers["c1"]
    before = [f for f in source.flows.installed["hv1"].values() if f.match.eth_dst == VM_A]
    assert [f.actions for f in before] == [(Output(1),)]

    effects = source.port_event(delete("hv1", 1, VM_A), sim.now)

    rec = source.table.get(VM_A)
    assert rec is not None
    # Port state stays up, migration state becomes not-migrating.
    assert (rec.migration_state, rec.port_state) == (NOT_MIGRATING, UP)
    # Its own flows for the VM address are deleted (here overwritten in one flow mod by
    # the flow towards the destination, so that no frame finds a gap)...
    assert [m.switch for m in effects if isinstance(m, FlowMod) and m.flow.key == before[0].key]
    assert before[0] not in source.flows.installed["hv1"].values()
    # ... and the delete goes to every other controller with reason vm-migration.
    forwarded = {s.to: s.message for s in sends(effects)}
    assert set(forwarded) == {"c0", "c2"}
    for msg in forwarded.values():
        assert isinstance(msg, PortEventSync)
        assert (msg.kind, msg.reason) == (EventKind.DELETE, Reason.VM_MIGRATION)


def test_claim_3_peer_delete_with_vm_migration_reason_deletes_flows_and_clears_migrating(
    sim: SimCluster,
) -> None:
    ready_migration(sim, VM_A, "hv1", "hv0")
    # hv2 reaches hv1 over its direct link (port 101): c2 holds a flow for VM A there.
    peer = sim.controllers["c2"]
    stale = [f for f in peer.flows.installed["hv2"].values() if f.match.eth_dst == VM_A]
    assert [f.actions for f in stale] == [(Output(101),)]
    sim.port_event(add("hv0", 7, VM_A))
    sim.deliver_all()
    effects = sim.controllers["c1"].port_event(delete("hv1", 1, VM_A), sim.now)
    delete_msg = next(s.message for s in sends(effects) if s.to == "c2")
    assert isinstance(delete_msg, PortEventSync) and delete_msg.reason is Reason.VM_MIGRATION
    assert entry_states(sim, VM_A)["c2"] == (MIGRATING, UP)

    answer = peer.receive(delete_msg, sim.now)

    removed = [e.flow for e in answer if isinstance(e, FlowMod) and e.command is FlowCommand.DELETE]
    assert stale[0] in removed
    assert not [f for f in peer.flows.installed["hv2"].values() if f.match.eth_dst == VM_A]
    assert entry_states(sim, VM_A)["c2"] == (NOT_MIGRATING, UP)


def test_claim_4_port_add_and_modify_while_migrating_keep_the_port_up(sim: SimCluster) -> None:
    ready_migration(sim, VM_A, "hv1", "hv2")
    source, dest = sim.controllers["c1"], sim.controllers["c2"]

    source.port_event(link("hv1", 1, VM_A, up=False), sim.now)  # modify: the source link drops
    dest.port_event(add("hv2", 7, VM_A), sim.now)  # add: the destination tap appears
    dest.port_event(link("hv2", 7, VM_A, up=False), sim.now)  # modify: still down there

    for ctl in (source, dest):
        rec = ctl.table.get(VM_A)
        assert rec is not None
        assert (rec.migration_state, rec.port_state) == (MIGRATING, UP)


def test_claim_5_port_add_creates_not_migrating_down_and_modify_sets_up_on_every_controller(
    sim: SimCluster,
) -> None:
    vm = "02:00:00:00:00:d5"
    origin = sim.controllers["c2"]

    effects = origin.port_event(add("hv2", 5, vm), sim.now)

    rec = origin.table.get(vm)
    assert rec is not None and (rec.migration_state, rec.port_state) == (NOT_MIGRATING, DOWN)
    synced = sends(effects)
    assert {s.to for s in synced} == {"c0", "c1"}
    assert all(isinstance(s.message, PortEventSync) and s.message.kind is EventKind.ADD
               for s in synced)  # fmt: skip
    sim.run(effects)
    sim.deliver_all()
    assert set(entry_states(sim, vm).values()) == {(NOT_MIGRATING, DOWN)}

    sim.port_event(link("hv2", 5, vm, up=True))
    sim.deliver_all()
    assert set(entry_states(sim, vm).values()) == {(NOT_MIGRATING, UP)}


def test_claim_6_leader_syncs_source_and_destination_and_answers_only_after_both(
    sim: SimCluster,
) -> None:
    mid = sim.notify(VM_A, "hv1", "hv2")
    syncs = {m.to: m.message for m in sim.queue if isinstance(m.message, VPortSync)}
    waited = {to for to, msg in syncs.items() if msg.answer}
    assert waited == {"c1", "c2"}  # the source's and the destination's controllers
    for msg in syncs.values():
        assert (msg.record.migration_state, msg.record.port_state) == (MIGRATING, UP)
        assert msg.record.mig is not None
        assert (msg.record.mig.source, msg.record.mig.destination) == ("hv1", "hv2")

    # Deliver the syncs; hold back the answers.
    while any(isinstance(m.message, VPortSync) for m in sim.queue):
        sim.deliver(next(i for i, m in enumerate(sim.queue) if isinstance(m.message, VPortSync)))
    answers = [m.message for m in sim.queue if isinstance(m.message, SyncComplete)]
    assert {a.controller for a in answers} == {"c1", "c2"}
    sim.deliver(next(i for i, m in enumerate(sim.queue) if isinstance(m.message, SyncComplete)))
    assert sim.answer_for(mid) is None  # one sync complete is not enough
    sim.deliver_all()
    answer = sim.answer_for(mid)
    assert answer is not None and answer.ok and answer.migration.state == "ready"


def test_claim_7_the_vport_sync_is_a_rest_call(sim: SimCluster) -> None:
    sim.notify(VM_A, "hv1", "hv2")
    sync = next(m.message for m in sim.queue if isinstance(m.message, VPortSync))
    assert isinstance(sync, VPortSync)

    call = to_rest(sync)

    assert (call.method, call.path) == ("PUT", f"/v1/peer/vports/{VM_A}")
    assert call.body["record"]["mig"]["phase"] == "synced"
    assert from_rest(RestCall(call.method, call.path, call.body)) == sync
    done = SyncComplete(sync.migration_id, VM_A, "c1")
    assert answer_to_rest(done).status == 200
    assert answer_from_rest(answer_to_rest(done)) == done


def test_claim_8_the_vmm_notifies_first_and_migrates_only_after_notify_complete(
    sim: SimCluster,
) -> None:
    vmm = VmmMigration(VM_A, "hv1", "hv2")
    (notify,) = vmm.start()
    assert isinstance(notify, SendNotify)
    assert notify.request == NotifyRequest(VM_A, "hv1", "hv2")  # VM, source and destination

    mid = sim.notify(notify.request.vm, notify.request.source, notify.request.destination)
    assert sim.answer_for(mid) is None
    assert vmm.state == "notifying"  # nothing to start before the answer
    sim.deliver_all()
    answer = sim.answer_for(mid)
    assert isinstance(answer, NotifyAnswer)

    assert vmm.answered(answer) == [StartLiveMigration(mid)]
    assert vmm.state == "migrating"


def test_claim_9_the_migration_notify_is_a_rest_call() -> None:
    call = notify_to_rest(NotifyRequest(VM_A, "hv1", "hv2"))

    assert (call.method, call.path) == ("POST", "/v1/migrations")
    assert call.body == {"vm": VM_A, "source": "hv1", "destination": "hv2"}
