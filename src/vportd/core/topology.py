"""Switches, the links between them, and the paths the flow compiler uses.

Unicast follows shortest paths. To keep flow tables small, each switch gets a
*default port*, its shortest-path step towards the root (the best-connected
switch); a VM's MAC needs a flow on a switch only where the step towards the
VM differs from that default. Since a switch that uses its default is still on
a shortest path, every hop gets strictly closer to the VM: no loops. On a
leaf-spine fabric or a tree, a hypervisor thus holds flows for its own VMs only.
Those exceptions come from a breadth-first search from the VM's switch, or,
on a tree, from the walk up to the root alone (its ancestors are the only
switches that step down towards it).

Broadcast follows a spanning tree (breadth-first from the root), so floods
never loop either.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from vportd.core.errors import InvalidRequest, UnknownSwitch


@dataclass(frozen=True, slots=True)
class Link:
    """An inter-switch link: port `a_port` of `a` leads to port `b_port` of `b`."""

    a: str
    a_port: int
    b: str
    b_port: int


@dataclass(frozen=True, slots=True)
class LinkEnd:
    switch: str
    port: int


# One switch of a path: (switch, the port the path enters it by (0 at the source),
# the port it leaves it by (0 at the target)). A plain tuple of a str and ints,
# which the cyclic GC stops tracking: the path cache holds many, for long.
Hop = tuple[str, int, int]

# Paths cached at most (then the cache starts again): one per (source,
# destination) pair a migration used, which over a daemon's life is unbounded.
PATH_CACHE_SIZE = 16_384


class Topology:
    """The graph of switches; paths are computed lazily and cached per version."""

    def __init__(self) -> None:
        self._dpids: dict[str, int] = {}
        self._names: dict[int, str] = {}
        self._links: dict[str, dict[int, LinkEnd]] = {}
        self.version = 0
        self._reset_cache()

    def _reset_cache(self) -> None:
        self._root: str | None = None
        self._defaults: dict[str, int | None] | None = None
        self._exceptions: dict[str, dict[str, int]] = {}
        self._tree_shaped: bool | None = None
        self._tree: dict[str, frozenset[int]] | None = None
        self._beyond: dict[tuple[str, int], frozenset[str]] = {}
        self._ends: dict[str, list[LinkEnd]] | None = None
        self._paths: dict[tuple[str, str], tuple[Hop, ...]] = {}

    def _changed(self) -> None:
        self.version += 1
        self._reset_cache()

    # -- the graph -------------------------------------------------------
    def add_switch(self, name: str, dpid: int) -> None:
        if not name:
            raise InvalidRequest("a switch needs a name")
        if self._names.get(dpid, name) != name:
            raise InvalidRequest(f"dpid {dpid:#x} already belongs to {self._names[dpid]}")
        old = self._dpids.get(name)
        if old is not None and old != dpid:
            del self._names[old]
        self._dpids[name] = dpid
        self._names[dpid] = name
        self._links.setdefault(name, {})
        self._changed()

    def add_link(self, a: str, a_port: int, b: str, b_port: int) -> None:
        self.require(a)
        self.require(b)
        if a == b:
            raise InvalidRequest(f"a link from {a} to itself is not an inter-switch link")
        self._links[a][a_port] = LinkEnd(b, b_port)
        self._links[b][b_port] = LinkEnd(a, a_port)
        self._changed()

    def remove_link(self, switch: str, port: int) -> None:
        end = self._links.get(switch, {}).pop(port, None)
        if end is not None:
            self._links[end.switch].pop(end.port, None)
            self._changed()

    def require(self, name: str) -> str:
        if name not in self._dpids:
            raise UnknownSwitch(f"unknown OVS {name!r}")
        return name

    def resolve(self, name_or_dpid: str) -> str:
        """An OVS named by its name or its datapath id (hex, with or without 0x)."""
        if name_or_dpid in self._dpids:
            return name_or_dpid
        try:
            dpid = int(name_or_dpid, 16)
        except ValueError:
            raise UnknownSwitch(f"unknown OVS {name_or_dpid!r}") from None
        name = self._names.get(dpid)
        if name is None:
            raise UnknownSwitch(f"unknown OVS {name_or_dpid!r}")
        return name

    def named(self, dpid: int) -> str | None:
        """The switch with datapath id `dpid`, if any."""
        return self._names.get(dpid)

    def dpid(self, name: str) -> int:
        return self._dpids[self.require(name)]

    @property
    def switches(self) -> list[str]:
        return list(self._dpids)

    def __contains__(self, name: object) -> bool:
        return name in self._dpids

    def link_ports(self, switch: str) -> dict[int, LinkEnd]:
        return self._links.get(switch, {})

    def is_link(self, switch: str, port: int) -> bool:
        return port in self._links.get(switch, {})

    # -- paths -----------------------------------------------------------
    @property
    def root(self) -> str | None:
        """The middle of a longest shortest path: the centre of a tree, near it otherwise.

        Two breadth-first sweeps find such a path in linear time; on a mesh,
        where every switch is as central as another, the best connected wins.
        """
        if self._root is None and self._dpids:
            start = min(self._dpids, key=lambda s: (-len(self._links[s]), s))
            far = self._farthest(start)[-1]
            path = self._farthest(far)
            self._root = path[len(path) // 2] if len(path) > 2 else start  # noqa: PLR2004
        return self._root

    def _farthest(self, start: str) -> list[str]:
        """A path from `start` to a switch farthest from it (ties: by name)."""
        parent: dict[str, str | None] = {start: None}
        queue = deque([start])
        last = start
        while queue:
            last = queue.popleft()
            for end in sorted(e.switch for e in self._links[last].values()):
                if end not in parent:
                    parent[end] = last
                    queue.append(end)
        path: list[str] = []
        node: str | None = last
        while node is not None:
            path.append(node)
            node = parent[node]
        return path[::-1]

    def _steps_towards(self, target: str) -> dict[str, int]:
        """For every switch that reaches `target`, its first port on a shortest path."""
        steps: dict[str, int] = {}
        seen = {target}
        queue = deque([target])
        ends = self._neighbours()
        while queue:
            here = queue.popleft()
            # A peer's entry may name a switch our OVSDB has not shown yet: no path to it.
            for end in ends.get(here, ()):
                if end.switch not in seen:
                    seen.add(end.switch)
                    steps[end.switch] = end.port
                    queue.append(end.switch)
        return steps

    def _neighbours(self) -> dict[str, list[LinkEnd]]:
        """Per switch, the far ends of its links in port order, sorted once for every BFS."""
        if self._ends is None:
            self._ends = {
                s: [end for _, end in sorted(links.items())] for s, links in self._links.items()
            }
        return self._ends

    def step(self, switch: str, target: str) -> int | None:
        """The port of `switch` on a shortest path towards `target` (None: no path)."""
        port = self.exceptions(target).get(switch)
        return self.default_port(switch) if port is None else port

    def path(self, source: str, target: str) -> tuple[Hop, ...]:
        """A shortest path from `source` to `target`, one hop per switch, both ends included.

        Empty when there is none (unknown switch, no link, or a change in flight).
        """
        cached = self._paths.get((source, target))
        if cached is None:
            if len(self._paths) >= PATH_CACHE_SIZE:
                self._paths.clear()
            cached = self._paths[source, target] = tuple(self._walk(source, target))
        return cached

    def _walk(self, source: str, target: str) -> list[Hop]:
        if source not in self._dpids or target not in self._dpids:
            return []
        hops, here, entered = [], source, 0
        for _ in range(len(self._dpids)):
            if here == target:
                hops.append((here, entered, 0))
                return hops
            port = self.step(here, target)
            end = None if port is None else self._links[here].get(port)
            if port is None or end is None:
                return []
            hops.append((here, entered, port))
            here, entered = end.switch, end.port
        return []

    def default_port(self, switch: str) -> int | None:
        if self._defaults is None:
            root = self.root
            steps = self._steps_towards(root) if root is not None else {}
            self._defaults = {s: steps.get(s) for s in self._dpids}
        return self._defaults.get(switch)

    def exceptions(self, target: str) -> dict[str, int]:
        """Switches whose step towards `target` is not their default, with that step."""
        cached = self._exceptions.get(target)
        if cached is None:
            self.default_port(target)
            if self._is_tree():
                cached = self._ancestors_down(target)
            else:
                defaults = self._defaults or {}
                steps = self._steps_towards(target)
                cached = {s: p for s, p in steps.items() if p != defaults.get(s)}
            self._exceptions[target] = cached
        return cached

    def _is_tree(self) -> bool:
        """Connected, every link seen from both ends, and one link fewer than switches."""
        if self._tree_shaped is None:
            defaults = self._defaults or {}
            ends = [(s, p, e) for s, links in self._links.items() for p, e in links.items()]
            self._tree_shaped = (
                len(ends) == 2 * (len(self._dpids) - 1)
                and sum(port is None for port in defaults.values()) <= 1  # the root's only
                and all(self._links.get(e.switch, {}).get(e.port) == LinkEnd(s, p)
                        for s, p, e in ends)
            )  # fmt: skip
        return self._tree_shaped

    def _ancestors_down(self, target: str) -> dict[str, int]:
        """In a tree, the only switches that do not step towards the root to reach
        `target` are its ancestors: each steps down, towards it. A walk up from
        `target` finds them in O(depth), where a breadth-first search visits every
        switch (1,000-switch fabrics: most of a cold cache's cost)."""
        found: dict[str, int] = {}
        defaults = self._defaults or {}
        here = target
        for _ in range(len(self._dpids)):
            up = defaults.get(here)
            if up is None:
                break  # the root
            parent = self._links[here][up]
            found[parent.switch] = parent.port
            here = parent.switch
        return found

    def precompute(self) -> None:
        """Fill every cache now rather than on the first event that needs it."""
        for switch in self._dpids:
            self.exceptions(switch)
        self.tree_ports(next(iter(self._dpids), ""))

    def tree_ports(self, switch: str) -> frozenset[int]:
        """The inter-switch ports of `switch` that belong to the flooding tree."""
        if self._tree is None:
            self._tree = self._spanning_tree()
        return self._tree.get(switch, frozenset())

    def towards_root(self, switch: str) -> list[str]:
        """The switches from `switch` (excluded) to the root by default ports: the flood
        tree's path (both are breadth-first from the root, ports in order)."""
        hops: list[str] = []
        here = switch
        for _ in range(len(self._dpids)):
            port = self.default_port(here)
            end = None if port is None else self._links[here].get(port)
            if end is None:
                break
            here = end.switch
            hops.append(here)
        return hops

    def tree_beyond(self, switch: str, port: int) -> frozenset[str]:
        """The switches a flood leaving `switch` by tree port `port` reaches."""
        cached = self._beyond.get((switch, port))
        if cached is None:
            end = self._links.get(switch, {}).get(port)
            reached: set[str] = set()
            if end is not None and port in self.tree_ports(switch):
                reached.add(end.switch)
                stack = [(end.switch, end.port)]
                while stack:
                    here, entered = stack.pop()
                    for out in self.tree_ports(here) - {entered}:
                        far = self._links[here][out]
                        reached.add(far.switch)
                        stack.append((far.switch, far.port))
            cached = self._beyond[switch, port] = frozenset(reached)
        return cached

    def _spanning_tree(self) -> dict[str, frozenset[int]]:
        ports: dict[str, set[int]] = {s: set() for s in self._dpids}
        seen: set[str] = set()
        for start in sorted(self._dpids, key=lambda s: (s != self.root, s)):
            if start in seen:
                continue
            seen.add(start)
            queue = deque([start])
            while queue:
                here = queue.popleft()
                for port, end in sorted(self._links[here].items()):
                    if end.switch not in seen:
                        seen.add(end.switch)
                        ports[here].add(port)
                        ports[end.switch].add(end.port)
                        queue.append(end.switch)
        return {s: frozenset(p) for s, p in ports.items()}
