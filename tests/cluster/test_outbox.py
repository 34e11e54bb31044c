"""A batch of port-event syncs for one peer drops the plain port changes a later sync of
the same VM replaces; what the peer's table ends up holding is the same either way."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.cluster.support import at, mac
from vportd.cluster.node import latest_entries
from vportd.core.errors import CoreError
from vportd.core.messages import EventKind, PortEvent, PortEventSync, Reason
from vportd.core.table import VPortTable

VMS = [mac(n) for n in range(1, 4)]


def sync(n: int, rev: int, reason: Reason = Reason.PORT, origin: str = "c0") -> PortEventSync:
    return PortEventSync(EventKind.MODIFY, reason, at(mac(n), 0, rev, origin), origin)


def test_a_boot_is_sent_as_its_last_entry() -> None:
    """A VM's add (down) and modify (up) leave as one sync, in the place of the later."""
    add, up, other = sync(1, 0), sync(1, 1), sync(2, 0)
    assert latest_entries([add, other, up]) == [other, up]


def test_syncs_of_a_migration_and_of_other_controllers_all_go() -> None:
    moved = sync(1, 1, Reason.VM_MIGRATION)
    relayed = sync(1, 2, origin="c2")
    batch = [moved, sync(1, 2), relayed, sync(1, 3)]
    assert latest_entries(batch) == [moved, relayed, sync(1, 3)]


# A VM's life on c0's switches, as its OVS reports it: (which VM, kind, port, link up).
Step = tuple[str, EventKind, int, bool]
steps = st.lists(
    st.tuples(
        st.sampled_from(VMS),
        st.sampled_from(list(EventKind)),
        st.sampled_from([1, 2]),
        st.booleans(),
    ),
    max_size=30,
)


@given(steps)
def test_the_peer_holds_what_every_sync_would_have_given_it(life: list[Step]) -> None:
    sender = VPortTable("c0")
    syncs: list[PortEventSync] = []
    for vm, kind, port, up in life:
        try:
            change = sender.port_event(PortEvent(kind, "hv1", port, vm, f"tap{port}", up))
        except CoreError:
            continue  # a modify or delete of a port the table never heard of
        if change is not None:
            syncs.append(change)
    every, latest = VPortTable("c1"), VPortTable("c1")
    for msg in syncs:
        every.apply_copy(msg.record)
    for kept in latest_entries(syncs):
        assert isinstance(kept, PortEventSync)
        latest.apply_copy(kept.record)
    assert sorted(every, key=str) == sorted(latest, key=str)
    assert [every.get(vm) for vm in VMS] == [latest.get(vm) for vm in VMS]
