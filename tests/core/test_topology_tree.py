"""A tree's shortest steps from its ancestors alone equal a breadth-first search's."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vportd.core.topology import Topology


def searched(topo: Topology, target: str) -> dict[str, int]:
    """The switches whose first port towards `target`, by a breadth-first search from it,
    is not their port towards the root: what `exceptions` must give."""
    topo.default_port(target)
    defaults = topo._defaults or {}
    return {s: p for s, p in topo._steps_towards(target).items() if p != defaults.get(s)}


@st.composite
def graphs(draw: st.DrawFn) -> Topology:
    """A random tree, sometimes with extra links (cycles, a port's link replaced)."""
    topo, n = Topology(), draw(st.integers(1, 25))
    for i in range(n):
        topo.add_switch(f"s{i}", i + 1)
    for i in range(1, n):
        parent = draw(st.integers(0, i - 1))
        topo.add_link(f"s{i}", draw(st.integers(1, 9)), f"s{parent}", draw(st.integers(10, 19)))
    if n > 1:
        for a, b in draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)),
                                  max_size=3)):  # fmt: skip
            if a != b:
                topo.add_link(f"s{a}", draw(st.integers(1, 19)), f"s{b}", draw(st.integers(1, 19)))
    return topo


@given(graphs())
def test_every_targets_exceptions_equal_a_breadth_first_search(topo: Topology) -> None:
    for target in [f"s{i}" for i in range(len(topo._dpids))] + ["unknown"]:
        assert topo.exceptions(target) == searched(topo, target)


def test_a_pod_fabric_is_a_tree_and_a_ring_is_not() -> None:
    topo = Topology()
    for i, name in enumerate(("core", "pod", "hv1", "hv2")):
        topo.add_switch(name, i + 1)
    topo.add_link("pod", 1, "core", 1)
    topo.add_link("hv1", 1, "pod", 2)
    topo.add_link("hv2", 1, "pod", 3)
    assert topo._is_tree()
    assert topo.root == "pod"  # the centre: every other switch steps towards it by default
    assert topo.exceptions("hv1") == {"pod": 2}
    assert topo.exceptions("core") == {"pod": 1}
    topo.add_link("hv1", 2, "hv2", 2)
    assert not topo._is_tree()
    assert topo.exceptions("hv1") == searched(topo, "hv1")
