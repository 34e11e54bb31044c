"""The table's compact forms keep the merge rules: tombstones and own-port facts."""

from __future__ import annotations

from tests.core.support import VM_A, add, delete, link
from vportd.core.controller import Controller
from vportd.core.model import Location, VPortRecord
from vportd.core.table import VPortTable

VM_B = "02:00:00:00:00:0b"


def peer() -> Controller:
    """A controller that masters nothing and applies records from the store."""
    ctl = Controller("c2")
    ctl.switch_seen("hv1", 1)
    return ctl


def booted(table: VPortTable, mac: str, port: int) -> VPortRecord:
    table.port_event(add("hv1", port, mac))
    change = table.port_event(link("hv1", port, mac, up=True))
    assert change is not None
    return change.record


def test_a_bare_tombstone_still_outranks_the_late_copies_of_the_live_entry() -> None:
    table = VPortTable("c1")
    live = booted(table, VM_A, 3)
    change = table.port_event(delete("hv1", 3, VM_A))
    assert change is not None
    gone = change.record.loc
    # Only its version is left: the removed VM's name, addresses and ids are not.
    assert gone == Location(None, None, None, False, live.loc.seq, live.loc.rev + 1, "c1")
    c2 = peer()
    c2.stored(change.record, 0.0)
    assert c2.record(VM_A) == change.record
    for late in (live, VPortRecord(VM_A, live.loc)):
        assert not c2.stored(late, 0.0)  # a late copy changes nothing
        assert c2.record(VM_A) == change.record
    # A new life of the VM goes on from the tombstone's seq.
    again = booted(table, VM_A, 4)
    assert again.loc.seq == gone.seq + 1
    c2.stored(again, 0.0)
    assert c2.vport(VM_A) == again


def test_tombstones_of_one_version_share_their_location() -> None:
    table = VPortTable("c1")
    for mac, port in ((VM_A, 3), (VM_B, 4)):
        booted(table, mac, port)
        table.port_event(delete("hv1", port, mac))
    a, b = table.record(VM_A), table.record(VM_B)
    assert a is not None and b is not None
    assert a.loc is b.loc  # same (seq, rev, writer)
    c2 = peer()
    copy = VPortRecord(VM_B, Location(None, None, None, False, b.loc.seq, b.loc.rev, "c1"))
    c2.stored(VPortRecord(VM_A, a.loc), 0.0)
    c2.stored(copy, 0.0)
    held = c2.record(VM_B)
    assert held == copy and held is not None and held.loc is a.loc


def test_own_port_facts_keep_each_ports_last_event_and_release_drops_a_switchs() -> None:
    table = VPortTable("c1")
    booted(table, VM_A, 3)
    table.port_event(add("hv2", 5, VM_A))  # a second port with the MAC, on another switch
    table.port_event(add("hv1", 3, VM_A))  # an add again does not undo the link state
    facts = {(f.ovs, f.port): f.link_up for f in table._facts(VM_A)}
    assert facts == {("hv1", 3): True, ("hv2", 5): False}
    table.release("hv1")
    assert [(f.ovs, f.port) for f in table._facts(VM_A)] == [("hv2", 5)]
    table.port_event(delete("hv2", 5, VM_A))
    assert table._facts(VM_A) == ()
