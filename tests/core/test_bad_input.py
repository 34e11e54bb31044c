"""Bad input to the core is refused with a typed error and leaves every table as it was."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.core.support import VM_A, VM_B, add, link, ready_migration, switch_over, table
from vportd.core.controller import Controller
from vportd.core.errors import (
    AlreadyMigrating,
    CoreError,
    InvalidMac,
    InvalidRequest,
    NotLeader,
    NotOnSource,
    UnknownMigration,
    UnknownSwitch,
    UnknownVM,
)
from vportd.core.messages import EventKind, Notified, NotifyRequest, Output, PortEvent
from vportd.core.model import VPortRecord, parse_mac
from vportd_lab.sim.cluster import SimCluster

UNKNOWN = "02:00:00:00:00:99"


def state(sim: SimCluster) -> list[dict[str, VPortRecord]]:
    return [table(ctl) for ctl in sim.controllers.values()]


def refused(sim: SimCluster, error: type[CoreError], attempt: Callable[[], object]) -> CoreError:
    before, stored = state(sim), dict(sim.store)
    queued = list(sim.queue)
    with pytest.raises(error) as caught:
        attempt()
    assert state(sim) == before, "a refused input changed a table"
    assert sim.store == stored, "a refused input wrote to the store"
    assert sim.queue == queued, "a refused input sent a message"
    assert caught.value.detail
    return caught.value


def notify(sim: SimCluster, vm: str, source: str, destination: str) -> Output[Notified]:
    """The leader's notify, its output not carried out."""
    return sim.leader.notify(NotifyRequest(vm, source, destination), sim.now)


def test_unknown_vm_is_refused(sim: SimCluster) -> None:
    refused(sim, UnknownVM, lambda: notify(sim, UNKNOWN, "hv1", "hv2"))
    c1 = sim.controllers["c1"]
    refused(sim, UnknownVM, lambda: c1.port_event(link("hv1", 9, UNKNOWN, up=True), 0.0))
    refused(
        sim, UnknownVM, lambda: c1.port_event(PortEvent(EventKind.DELETE, "hv1", 9, UNKNOWN), 0)
    )
    refused(sim, UnknownVM, lambda: c1.vport(UNKNOWN))


def test_unknown_ovs_is_refused(sim: SimCluster) -> None:
    c1 = sim.controllers["c1"]
    err = refused(sim, UnknownSwitch, lambda: c1.vm_announced("hv9", 1, VM_A, 0.0))
    assert "hv9" in err.detail
    refused(sim, UnknownSwitch, lambda: c1.gain_switch("hv9", [add("hv9", 1, UNKNOWN)], 0.0))
    refused(sim, UnknownSwitch, lambda: c1.flows_read("hv9", []))
    refused(sim, UnknownSwitch, lambda: notify(sim, VM_A, "hv1", "hv9"))
    refused(sim, UnknownSwitch, lambda: notify(sim, VM_A, "0x77", "hv2"))


def test_a_port_event_of_a_switch_we_do_not_master_changes_nothing(sim: SimCluster) -> None:
    """Another controller's switch, or one nobody has named: not ours to report on."""
    before, stored = state(sim), dict(sim.store)
    c1 = sim.controllers["c1"]
    for ev in (add("hv2", 4, UNKNOWN), add("hv9", 1, UNKNOWN), link("hv2", 1, VM_B, up=False)):
        assert not c1.port_event(ev, 0.0)
    assert state(sim) == before and sim.store == stored


def test_the_ovs_can_be_named_by_its_datapath_id(sim: SimCluster) -> None:
    reply = notify(sim, VM_A, "0x2", "0000000000000003").reply
    assert reply is not None and reply.new
    assert (reply.migration.source, reply.migration.destination) == ("hv1", "hv2")


def test_a_notify_for_a_vm_already_migrating_elsewhere_is_refused(sim: SimCluster) -> None:
    ready_migration(sim, VM_A, "hv1", "hv2")
    err = refused(sim, AlreadyMigrating, lambda: notify(sim, VM_A, "hv1", "hv0"))
    assert "hv2" in err.detail


def test_a_notify_for_a_vm_not_on_that_source_is_refused(sim: SimCluster) -> None:
    err = refused(sim, NotOnSource, lambda: notify(sim, VM_A, "hv0", "hv2"))
    assert "hv1" in err.detail


def test_source_equal_to_destination_is_refused(sim: SimCluster) -> None:
    refused(sim, InvalidRequest, lambda: notify(sim, VM_A, "hv1", "hv1"))


def test_an_update_with_an_older_sequence_number_changes_nothing(sim: SimCluster) -> None:
    c2 = sim.controllers["c2"]
    old = c2.vport(VM_A)
    ready_migration(sim, VM_A, "hv1", "hv2")
    switch_over(sim, VM_A, ("hv1", 1), ("hv2", 7))
    now = c2.vport(VM_A)
    assert now.seq > old.seq
    before, stored = state(sim), dict(sim.store)

    for ctl in sim.controllers.values():  # the late copy, as a lagging watch brings it
        assert not ctl.stored(old, sim.now)

    assert state(sim) == before and sim.store == stored
    assert c2.vport(VM_A) == now


@pytest.mark.parametrize(
    "bad", ["zz:00:00:00:00:01", "02:00:00:00:01", "02-00-00-00-00", "", "01:00:5e:00:00:01"]
)
def test_a_malformed_mac_is_refused(sim: SimCluster, bad: str) -> None:
    c1 = sim.controllers["c1"]
    refused(sim, InvalidMac, lambda: c1.port_event(add("hv1", 4, bad), 0.0))
    refused(sim, InvalidMac, lambda: c1.vm_announced("hv1", 4, bad, 0.0))
    refused(sim, InvalidMac, lambda: c1.vport(bad))
    refused(sim, InvalidMac, lambda: notify(sim, bad, "hv1", "hv2"))


def test_mac_spellings_are_normalised() -> None:
    assert parse_mac("02-AA-bb-00-00-01") == "02:aa:bb:00:00:01"
    with pytest.raises(InvalidMac):
        parse_mac(42)


def test_unknown_migration_and_not_leader_are_refused(sim: SimCluster) -> None:
    refused(sim, UnknownMigration, lambda: sim.leader.abort("nope", 0.0))
    refused(sim, UnknownMigration, lambda: sim.leader.migration("nope"))
    follower = sim.controllers["c1"]
    refused(sim, NotLeader, lambda: follower.notify(NotifyRequest(VM_B, "hv2", "hv0"), 0.0))
    refused(sim, NotLeader, lambda: follower.abort("nope", 0.0))
    refused(sim, NotLeader, follower.migrations)


def test_the_not_leader_error_of_a_former_leader_does_not_contradict_itself() -> None:
    """F-f: a restarted former leader, while the store still names it, said
    `controller c2 is not the leader (c2)`."""
    ctl = Controller("c2")
    ctl.leader_is("c2")  # its old leader key, not yet expired
    with pytest.raises(NotLeader) as refused:
        ctl.notify(NotifyRequest(VM_A, "hv0", "hv1"), 0.0)
    assert "(c2)" not in refused.value.detail and "c2 leads" not in refused.value.detail
    assert "previous leadership" in refused.value.detail
    ctl.leader_is("c0")
    with pytest.raises(NotLeader, match="c0 leads"):
        ctl.notify(NotifyRequest(VM_A, "hv0", "hv1"), 0.0)
