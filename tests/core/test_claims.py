"""One test per claim of the seed patent, asserting what the claim says in its terms.

Set-up (see conftest): hv0, hv1, hv2 in a mesh mastered by c0, c1, c2; c0 leads.
VM A is on hv1 port 1, VM B on hv2 port 1, VM C on hv0 port 1.
"""

from __future__ import annotations

from tests.core.support import VM_A, add, delete, first, link, ready_migration
from vportd.cluster.codec import SyncAnswerWire, SyncWire
from vportd.core.flow import FlowCommand, Output
from vportd.core.messages import (
    EventKind,
    Reason,
    SyncComplete,
    SyncRefused,
    VPortSync,
    Write,
)
from vportd.core.model import MigrationState, PortState
from vportd_lab.sim.cluster import InFlight, SimCluster, Stored

UP, DOWN = PortState.UP, PortState.DOWN
MIGRATING, NOT_MIGRATING = MigrationState.MIGRATING, MigrationState.NOT_MIGRATING


def entry_states(sim: SimCluster, vm: str) -> dict[str, tuple[MigrationState, PortState]]:
    out = {}
    for cid, ctl in sim.controllers.items():
        rec = ctl.vport(vm)
        out[cid] = (rec.migration_state, rec.port_state)
    return out


def the_write(writes: list[Write]) -> Write:
    """The one record an own-OVS event wrote to the store of record."""
    (write,) = writes
    assert not write.leader
    return write


def stored_for(sim: SimCluster, write: Write) -> set[str]:
    """The controllers to which the store's watch is bringing the record `write` wrote."""
    return {
        item.to
        for item in sim.queue
        if isinstance(item.message, Stored) and item.message.record == write.record
    }


def is_sync(item: InFlight) -> bool:
    return isinstance(item.message, VPortSync)


def test_claim_1_every_controller_holds_every_vport_and_the_leaders_sync_sets_migrating_up(
    sim: SimCluster,
) -> None:
    # Claim 1: every controller keeps the vPort list of all OVS of the cluster,
    # each entry with the VM address, migration state and port state.
    for ctl in sim.controllers.values():
        assert {r.vm for r in ctl.vports()} == {
            "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c",
        }  # fmt: skip
    sim.port_event(link("hv1", 1, VM_A, up=False))
    sim.deliver_all()
    assert entry_states(sim, VM_A)["c1"] == (NOT_MIGRATING, DOWN)

    sim.notify(VM_A, "hv1", "hv2")
    to_c1 = first(sim, lambda m: m.to == "c1" and is_sync(m))
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
    before = [f for f in source.installed("hv1") if f.match.eth_dst == VM_A]
    assert [f.actions for f in before] == [(Output(1),)]

    out = source.port_event(delete("hv1", 1, VM_A), sim.now)

    rec = source.vport(VM_A)
    # Port state stays up, migration state becomes not-migrating.
    assert (rec.migration_state, rec.port_state) == (NOT_MIGRATING, UP)
    # Its own flows for the VM address are deleted (here overwritten in one flow mod by
    # the flow towards the destination, so that no frame finds a gap)...
    assert [m.switch for m in out.flow_mods if m.flow.key == before[0].key]
    assert before[0] not in source.installed("hv1")
    # ... and the delete goes to the other controllers with reason vm-migration: written
    # to the store of record, whose watch brings it to every controller.
    write = the_write(out.writes)
    assert (write.kind, write.reason) == (EventKind.DELETE, Reason.VM_MIGRATION)
    assert write.record == rec
    sim.run(out)
    assert sim.store[VM_A] == rec
    assert stored_for(sim, write) == {"c0", "c1", "c2"}
    leader = sim.controllers["c0"]
    sim.deliver(first(sim, lambda m: m.to == "c0" and isinstance(m.message, Stored)))
    assert leader.vport(VM_A) == rec


def test_claim_3_peer_delete_with_vm_migration_reason_deletes_flows_and_clears_migrating(
    sim: SimCluster,
) -> None:
    ready_migration(sim, VM_A, "hv1", "hv0")
    # hv2 reaches hv1 over its direct link (port 101): c2 holds a flow for VM A there.
    peer = sim.controllers["c2"]
    stale = [f for f in peer.installed("hv2") if f.match.eth_dst == VM_A]
    assert [f.actions for f in stale] == [(Output(101),)]
    sim.port_event(add("hv0", 7, VM_A))
    sim.deliver_all()
    deleted = sim.controllers["c1"].port_event(delete("hv1", 1, VM_A), sim.now)
    write = the_write(deleted.writes)
    assert write.reason is Reason.VM_MIGRATION
    sim.run(deleted)
    assert entry_states(sim, VM_A)["c2"] == (MIGRATING, UP)

    item = sim.queue.pop(first(sim, lambda m: m.to == "c2"))
    assert isinstance(item.message, Stored) and item.message.record == write.record
    out = peer.stored(item.message.record, sim.now)

    removed = [m.flow for m in out.flow_mods if m.command is FlowCommand.DELETE]
    assert stale[0] in removed
    assert not [f for f in peer.installed("hv2") if f.match.eth_dst == VM_A]
    assert entry_states(sim, VM_A)["c2"] == (NOT_MIGRATING, UP)


def test_claim_4_port_add_and_modify_while_migrating_keep_the_port_up(sim: SimCluster) -> None:
    ready_migration(sim, VM_A, "hv1", "hv2")
    source, dest = sim.controllers["c1"], sim.controllers["c2"]

    source.port_event(link("hv1", 1, VM_A, up=False), sim.now)  # modify: the source link drops
    dest.port_event(add("hv2", 7, VM_A), sim.now)  # add: the destination tap appears
    dest.port_event(link("hv2", 7, VM_A, up=False), sim.now)  # modify: still down there

    for ctl in (source, dest):
        rec = ctl.vport(VM_A)
        assert (rec.migration_state, rec.port_state) == (MIGRATING, UP)


def test_claim_5_port_add_creates_not_migrating_down_and_modify_sets_up_on_every_controller(
    sim: SimCluster,
) -> None:
    vm = "02:00:00:00:00:d5"
    origin = sim.controllers["c2"]

    out = origin.port_event(add("hv2", 5, vm), sim.now)

    rec = origin.vport(vm)
    assert (rec.migration_state, rec.port_state) == (NOT_MIGRATING, DOWN)
    write = the_write(out.writes)  # the add, for the store of record and every controller
    assert (write.kind, write.reason, write.record) == (EventKind.ADD, Reason.PORT, rec)
    sim.run(out)
    assert stored_for(sim, write) == {"c0", "c1", "c2"}
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
    assert set(syncs) == {"c1", "c2"}  # the source's and the destination's controllers
    for msg in syncs.values():
        assert (msg.record.migration_state, msg.record.port_state) == (MIGRATING, UP)
        assert msg.record.mig is not None
        assert (msg.record.mig.source, msg.record.mig.destination) == ("hv1", "hv2")
    # Persist before send: the leader's record of the migration is in the store already.
    assert sim.store[VM_A] == syncs["c1"].record

    # Deliver the syncs; hold back the answers.
    while any(is_sync(m) for m in sim.queue):
        sim.deliver(first(sim, is_sync))
    answers = [m.message for m in sim.queue if isinstance(m.message, SyncComplete)]
    assert {a.controller for a in answers} == {"c1", "c2"}
    sim.deliver(first(sim, lambda m: isinstance(m.message, SyncComplete)))
    assert sim.answer_for(mid) is None  # one sync complete is not enough
    sim.deliver_all()
    answer = sim.answer_for(mid)
    assert answer is not None and answer.ok and answer.migration.state == "ready"


def test_claim_7_the_vport_sync_and_its_answer_have_a_rest_form(sim: SimCluster) -> None:
    sim.notify(VM_A, "hv1", "hv2")
    sync = next(m.message for m in sim.queue if isinstance(m.message, VPortSync))
    assert isinstance(sync, VPortSync)

    body = SyncWire.of(sync).model_dump_json()  # the body of `PUT /v1/peer/vports/{vm}`

    wire = SyncWire.model_validate_json(body)
    assert wire.record.mig is not None and wire.record.mig.phase == "synced"
    assert wire.to_core(VM_A) == sync
    done = SyncComplete(sync.migration_id, VM_A, "c1")
    refused = SyncRefused(sync.migration_id, VM_A, "c2", "VM moved")
    for answer in (done, refused):
        text = SyncAnswerWire.of(answer).model_dump_json()
        assert SyncAnswerWire.model_validate_json(text).to_core() == answer
    assert SyncAnswerWire.of(done).status == "sync-complete"
