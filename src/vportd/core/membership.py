"""Who is in the cluster, who leads it, and which controller masters which switch."""

from __future__ import annotations

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
