"""Which switches we master have had no OpenFlow channel for too long.

A hypervisor that died (or lost its management network) reports nothing: its
VM ports would show up forever, and a VM restarted elsewhere would be a
duplicate of its dead self. After `after` seconds without a channel its ports
count as down (`Controller.switch_down`) until it is back (`switch_back`).
"""

from __future__ import annotations

from collections.abc import Container, Iterable


class Reachability:
    def __init__(self, after: float) -> None:
        self.after = after
        self.down: set[str] = set()  # the switches whose ports count as down
        self._since: dict[str, float] = {}  # mastered, no channel: since when

    def look(
        self, mastered: Iterable[str], connected: Container[str], now: float
    ) -> tuple[list[str], list[str]]:
        """The switches to count as down now, and those back."""
        ours = set(mastered)
        for switch in [s for s in self._since if s not in ours]:
            del self._since[switch]  # another controller answers for it now
        self.down &= ours
        went, back = [], []
        for switch in sorted(ours):
            if switch in connected:
                self._since.pop(switch, None)
                if switch in self.down:
                    self.down.discard(switch)
                    back.append(switch)
                continue
            since = self._since.setdefault(switch, now)
            if switch not in self.down and now - since >= self.after:
                self.down.add(switch)
                went.append(switch)
        return went, back
