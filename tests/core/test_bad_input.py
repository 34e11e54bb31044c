"""Bad input to the core is refused with a typed error and leaves every table as it was."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.core.support import VM_A, VM_B, add, link, ready_migration
from vportd.core.errors import (
    AlreadyMigrating,
    CoreError,
    InvalidMac,
    InvalidRequest,
    NotLeader,
    NotOnSource,
    StaleEvent,
    UnknownMigration,
    UnknownSwitch,
    UnknownVM,
)
from vportd.core.messages import EventKind, PortEvent
from vportd.core.model import VPortRecord, parse_mac
from vportd.core.wire import RestCall, from_rest
from vportd_lab.sim.cluster import SimCluster

UNKNOWN = "02:00:00:00:00:99"


def state(sim: SimCluster) -> list[dict[str, VPortRecord]]:
    return [ctl.table.snapshot() for ctl in sim.controllers.values()]


def refused(sim: SimCluster, error: type[CoreError], attempt: Callable[[], object]) -> CoreError:
    before = state(sim)
    queued = list(sim.queue)
    with pytest.raises(error) as caught:
        attempt()
    assert state(sim) == before, "a refused input changed a table"
    assert sim.queue == queued, "a refused input sent a message"
    assert caught.value.detail
    return caught.value


def test_unknown_vm_is_refused(sim: SimCluster) -> None:
    err = refused(sim, UnknownVM, lambda: sim.leader.notify(UNKNOWN, "hv1", "hv2", 0.0))
    assert err.status == 404
    c1 = sim.controllers["c1"]
    refused(sim, UnknownVM, lambda: c1.port_event(link("hv1", 9, UNKNOWN, up=True), 0.0))
    refused(
        sim, UnknownVM, lambda: c1.port_event(PortEvent(EventKind.DELETE, "hv1", 9, UNKNOWN), 0)
    )


def test_unknown_ovs_is_refused(sim: SimCluster) -> None:
    c1 = sim.controllers["c1"]
    err = refused(sim, UnknownSwitch, lambda: c1.port_event(add("hv9", 1, UNKNOWN), 0.0))
    assert err.status == 404 and "hv9" in err.detail
    refused(sim, UnknownSwitch, lambda: sim.leader.notify(VM_A, "hv1", "hv9", 0.0))
    refused(sim, UnknownSwitch, lambda: sim.leader.notify(VM_A, "0x77", "hv2", 0.0))


def test_the_ovs_can_be_named_by_its_datapath_id(sim: SimCluster) -> None:
    view, created, _ = sim.leader.notify(VM_A, "0x2", "0000000000000003", 0.0)
    assert created and (view.source, view.destination) == ("hv1", "hv2")


def test_a_notify_for_a_vm_already_migrating_elsewhere_is_refused(sim: SimCluster) -> None:
    ready_migration(sim, VM_A, "hv1", "hv2")
    err = refused(sim, AlreadyMigrating, lambda: sim.leader.notify(VM_A, "hv1", "hv0", 0.0))
    assert err.status == 409


def test_a_notify_for_a_vm_not_on_that_source_is_refused(sim: SimCluster) -> None:
    err = refused(sim, NotOnSource, lambda: sim.leader.notify(VM_A, "hv0", "hv2", 0.0))
    assert "hv1" in err.detail and err.status == 409


def test_source_equal_to_destination_is_refused(sim: SimCluster) -> None:
    refused(sim, InvalidRequest, lambda: sim.leader.notify(VM_A, "hv1", "hv1", 0.0))


def test_an_update_with_an_older_sequence_number_is_refused(sim: SimCluster) -> None:
    c2 = sim.controllers["c2"]
    old = c2.table.require(VM_A)
    ready_migration(sim, VM_A, "hv1", "hv2")
    sim.port_event(add("hv2", 7, VM_A))
    sim.port_event(link("hv2", 7, VM_A, up=True))
    sim.deliver_all()
    assert c2.table.require(VM_A).seq > old.seq

    err = refused(sim, StaleEvent, lambda: c2.table.merge(old))
    assert str(old.seq) in err.detail


@pytest.mark.parametrize(
    "bad", ["zz:00:00:00:00:01", "02:00:00:00:01", "02-00-00-00-00", "", "01:00:5e:00:00:01"]
)
def test_a_malformed_mac_is_refused(sim: SimCluster, bad: str) -> None:
    c1 = sim.controllers["c1"]
    err = refused(sim, InvalidMac, lambda: c1.port_event(add("hv1", 4, bad), 0.0))
    assert err.status == 400
    refused(sim, InvalidMac, lambda: sim.leader.notify(bad, "hv1", "hv2", 0.0))


def test_mac_spellings_are_normalised() -> None:
    assert parse_mac("02-AA-bb-00-00-01") == "02:aa:bb:00:00:01"
    with pytest.raises(InvalidMac):
        parse_mac(42)


def test_unknown_migration_and_not_leader_are_refused(sim: SimCluster) -> None:
    refused(sim, UnknownMigration, lambda: sim.leader.abort("nope", 0.0))
    follower = sim.controllers["c1"]
    err = refused(sim, NotLeader, lambda: follower.notify(VM_B, "hv2", "hv0", 0.0))
    assert err.status == 503


@pytest.mark.parametrize(
    "call",
    [
        RestCall("PUT", f"/v1/peer/vports/{VM_A}", {}),
        RestCall("POST", "/v1/peer/port-events", {"kind": "explode", "record": {}}),
        RestCall("GET", "/v1/peer/elsewhere", {}),
        RestCall("PUT", f"/v1/peer/vports/{VM_B}", {"record": {"vm": "nonsense"}}),
    ],
)
def test_a_malformed_peer_message_is_refused(call: RestCall) -> None:
    with pytest.raises(InvalidRequest):
        from_rest(call)
