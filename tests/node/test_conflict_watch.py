"""Duplicate MACs as the controller reports them: confirmed by two looks in a row."""

from __future__ import annotations

from vportd.core.messages import EventKind, PortEvent
from vportd.core.model import Location
from vportd.core.table import Conflict
from vportd.node.conflicts import ConflictWatch, decode

MAC = "02:00:00:00:00:0a"
CONFLICT = Conflict(
    MAC,
    Location("hv1", 1, "tap1", True, 0, 1, "c1"),
    PortEvent(EventKind.MODIFY, "hv2", 7, MAC, "tap7", link_up=True),
)


def test_a_conflict_seen_once_is_not_reported() -> None:
    watch = ConflictWatch("c2")
    assert not watch.look([CONFLICT])
    assert not watch.look([])  # a move without a notify, seen mid-way
    assert watch.confirmed == {}


def test_a_conflict_seen_twice_is_reported_and_posted_until_it_ends() -> None:
    watch = ConflictWatch("c2")
    watch.look([CONFLICT])
    assert watch.look([CONFLICT])
    [(key, value)] = watch.notices().items()
    assert key == f"conflicts/{MAC}/hv2/7"
    view = decode(value)
    assert view is not None and (view.vm, view.seen_by) == (MAC, "c2")
    assert (view.owner.ovs, view.owner.port, view.claimant.port_name) == ("hv1", 1, "tap7")
    assert not watch.look([CONFLICT])
    assert watch.look([])
    assert watch.notices() == {}


def test_a_malformed_notice_is_ignored() -> None:
    assert decode(b"{not json") is None
    assert decode(b'{"vm": "x"}') is None
