"""Who is in the cluster, who leads it, and which controller masters which switch."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from vportd.core.errors import NoController


@dataclass
class Membership:
    members: list[str]
    leader: str | None = None
    masters: dict[str, str] = field(default_factory=dict)

    def master_of(self, switch: str) -> str:
        master = self.masters.get(switch)
        if master is None or master not in self.members:
            raise NoController(f"no controller masters OVS {switch!r}")
        return master

    def switches_of(self, member: str) -> list[str]:
        return [s for s, m in self.masters.items() if m == member]

    def peers(self, me: str) -> list[str]:
        return [m for m in self.members if m != me]

    def spread(self, switches: Iterable[str]) -> None:
        """Give switches to members round robin (a static placement for tests)."""
        for i, switch in enumerate(sorted(switches)):
            self.masters[switch] = self.members[i % len(self.members)]
