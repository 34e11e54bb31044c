"""Which mastered switches count as down: no OpenFlow channel for `after` seconds."""

from __future__ import annotations

from vportd.node.reach import Reachability


def test_a_switch_without_a_channel_for_long_counts_as_down_once_until_it_is_back() -> None:
    reach = Reachability(after=30)
    assert reach.look(["hv0", "hv1"], {"hv0"}, now=0) == ([], [])
    assert reach.look(["hv0", "hv1"], {"hv0"}, now=29) == ([], [])
    assert reach.look(["hv0", "hv1"], {"hv0"}, now=30) == (["hv1"], [])
    assert reach.look(["hv0", "hv1"], {"hv0"}, now=60) == ([], [])  # said once
    assert reach.look(["hv0", "hv1"], {"hv0", "hv1"}, now=61) == ([], ["hv1"])
    assert reach.look(["hv0", "hv1"], {"hv0"}, now=62) == ([], [])  # a new count starts


def test_a_switch_another_controller_masters_now_is_forgotten() -> None:
    reach = Reachability(after=30)
    reach.look(["hv1"], set(), now=0)
    assert reach.look(["hv1"], set(), now=30) == (["hv1"], [])
    assert reach.look([], set(), now=31) == ([], [])
    assert reach.down == set()
    assert reach.look(["hv1"], set(), now=32) == ([], [])  # ours again: counted anew
    assert reach.look(["hv1"], set(), now=62) == (["hv1"], [])
