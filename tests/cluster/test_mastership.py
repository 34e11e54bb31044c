"""Who masters each switch: bounded loads, reach first, the same answer everywhere."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from vportd.cluster.mastership import chosen_masters, everywhere

names = st.lists(st.text("abcdefgh0123456789", min_size=1, max_size=6), unique=True)


@given(names.filter(bool), st.integers(1, 6))
def test_no_member_masters_more_than_its_share(switches: list[str], k: int) -> None:
    members = [f"c{i}" for i in range(k)]
    loads = Counter(everywhere(switches, members).values())
    assert max(loads.values()) <= -(-len(switches) // k)
    assert set(loads) <= set(members)


@given(names, st.permutations(["c0", "c1", "c2", "c3"]))
def test_every_controller_computes_the_same_masters(switches: list[str], order: list[str]) -> None:
    assert everywhere(list(reversed(switches)), order) == everywhere(
        sorted(switches), sorted(order)
    )


def test_twenty_hypervisors_spread_seven_seven_six() -> None:
    masters = everywhere([f"hv{i}" for i in range(20)], ["c0", "c1", "c2"])
    assert sorted(Counter(masters.values()).values()) == [6, 7, 7]


def test_a_switch_goes_only_to_a_member_that_reaches_it_even_when_that_one_is_full() -> None:
    members = ["c0", "c1"]
    switches = [f"hv{i}" for i in range(6)]
    reach = {s: members for s in switches} | {"hv0": ["c1"], "hv1": ["c1"], "hv2": ["c1"]}
    reach |= {"hv3": ["c1"]}  # four switches only c1 reaches: over its cap of three
    masters = chosen_masters(reach, members)
    assert all(masters[s] == "c1" for s in ("hv0", "hv1", "hv2", "hv3"))
    assert masters["hv4"] == masters["hv5"] == "c0"


def test_a_switch_no_member_reaches_has_no_master() -> None:
    assert chosen_masters({"hv0": []}, ["c0"]) == {"hv0": None}
    assert everywhere(["hv0"], []) == {"hv0": None}


def test_a_member_leaving_moves_its_own_switches_and_few_others() -> None:
    switches = [f"hv{i}" for i in range(100)]
    before = everywhere(switches, ["c0", "c1", "c2"])
    after = everywhere(switches, ["c0", "c2"])
    moved = [s for s in switches if before[s] != after[s]]
    assert {s for s in switches if before[s] == "c1"} <= set(moved)
    assert len(moved) <= 1.5 * Counter(before.values())["c1"]
