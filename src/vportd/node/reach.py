"""Which switches have had no OpenFlow channel to this controller for too long.

A hypervisor that died (or lost its management network) reports nothing: its
VM ports would show up forever, and a VM restarted elsewhere would be a
duplicate of its dead self. After `after` seconds without a channel a switch
is *unreachable* from here. The controller says so in the store (the cluster
then hands its mastership to a controller that still reaches it), and if no
controller reaches it, its master counts its VM ports as down
(`Controller.switch_down`) until it is back (`switch_back`).

The count runs for every switch the controller knows, mastered or not, so that
a controller that takes over a switch it has long not reached knows it at once.
"""

from __future__ import annotations

from collections.abc import Container, Iterable


class Reachability:
    def __init__(self, after: float) -> None:
        self.after = after
        self.down: set[str] = set()  # the mastered switches whose ports count as down
        self._since: dict[str, float] = {}  # known, no channel: since when

    def look(
        self, known: Iterable[str], mastered: Iterable[str], connected: Container[str], now: float
    ) -> tuple[list[str], list[str]]:
        """Of the switches we master, those to count as down now, and those back."""
        self._count(known, connected, now)
        ours = set(mastered)
        self.down &= ours  # another controller answers for the others now
        went, back = [], []
        for switch in sorted(ours):
            if switch in connected:
                if switch in self.down:
                    self.down.discard(switch)
                    back.append(switch)
            elif switch not in self.down and self._gone(switch, now):
                self.down.add(switch)
                went.append(switch)
        return went, back

    def unreachable(self, now: float) -> set[str]:
        """The known switches without a channel for `after` seconds or more."""
        return {switch for switch in self._since if self._gone(switch, now)}

    def _count(self, known: Iterable[str], connected: Container[str], now: float) -> None:
        names = set(known)
        for switch in [s for s in self._since if s not in names or s in connected]:
            del self._since[switch]
        for switch in names:
            if switch not in connected:
                self._since.setdefault(switch, now)

    def _gone(self, switch: str, now: float) -> bool:
        since = self._since.get(switch)
        return since is not None and now - since >= self.after
