"""Which switches are unreachable (no OpenFlow channel for `after` seconds), and which of
the mastered ones count as down."""

from __future__ import annotations

from vportd.node.reach import Reachability

BOTH = ["hv0", "hv1"]


def test_a_switch_without_a_channel_for_long_counts_as_down_once_until_it_is_back() -> None:
    reach = Reachability(after=30)
    assert reach.look(BOTH, BOTH, {"hv0"}, now=0) == ([], [])
    assert reach.look(BOTH, BOTH, {"hv0"}, now=29) == ([], [])
    assert reach.unreachable(29) == set()
    assert reach.look(BOTH, BOTH, {"hv0"}, now=30) == (["hv1"], [])
    assert reach.unreachable(30) == {"hv1"}
    assert reach.look(BOTH, BOTH, {"hv0"}, now=60) == ([], [])  # said once
    assert reach.look(BOTH, BOTH, {"hv0", "hv1"}, now=61) == ([], ["hv1"])
    assert reach.unreachable(61) == set()
    assert reach.look(BOTH, BOTH, {"hv0"}, now=62) == ([], [])  # a new count starts
    assert reach.look(BOTH, BOTH, {"hv0"}, now=92) == (["hv1"], [])


def test_switches_we_do_not_master_are_counted_too() -> None:
    reach = Reachability(after=30)
    reach.look(["hv1"], [], set(), now=0)
    assert reach.look(["hv1"], [], set(), now=30) == ([], [])  # not ours: nothing to write
    assert reach.unreachable(30) == {"hv1"}  # but the cluster is told
    # Ours now (handed over to us): we have long not reached it, so down at once.
    assert reach.look(["hv1"], ["hv1"], set(), now=31) == (["hv1"], [])


def test_a_switch_another_controller_masters_now_leaves_the_down_set() -> None:
    reach = Reachability(after=30)
    reach.look(["hv1"], ["hv1"], set(), now=0)
    assert reach.look(["hv1"], ["hv1"], set(), now=30) == (["hv1"], [])
    assert reach.look(["hv1"], [], set(), now=31) == ([], [])
    assert reach.down == set()


def test_a_switch_no_longer_known_is_forgotten() -> None:
    reach = Reachability(after=30)
    reach.look(["hv1"], [], set(), now=0)
    reach.look([], [], set(), now=10)
    reach.look(["hv1"], [], set(), now=20)  # known again: counted anew
    assert reach.unreachable(45) == set()
    assert reach.unreachable(50) == {"hv1"}
