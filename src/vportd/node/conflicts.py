"""Duplicate MACs as an operator sees them: logged, counted and posted for every API.

The core reports a MAC up on a port of a switch we master while its entry's
port is up too (`core.table.Conflict`). A move without a notify shows that
for a moment (the new port's master hears of the old port going down a few
milliseconds later), so a conflict counts once two looks in a row find it.
"""

from __future__ import annotations

import json
import logging

from vportd.api.service import ConflictView, PortRef
from vportd.core.table import Conflict

log = logging.getLogger("vportd.conflicts")


def describe(view: ConflictView) -> str:
    return (
        f"MAC {view.vm} is up on {_where(view.claimant)} while its vPort is up on "
        f"{_where(view.owner)}"
    )


def _where(ref: PortRef) -> str:
    name = f" ({ref.port_name})" if ref.port_name else ""
    return f"{ref.ovs} port {ref.port}{name}"


def view_of(conflict: Conflict, me: str) -> ConflictView:
    owner, claimant = conflict.owner, conflict.claimant
    return ConflictView(
        conflict.vm,
        PortRef(owner.ovs, owner.port, owner.port_name),
        PortRef(claimant.ovs, claimant.port, claimant.port_name),
        me,
    )


def notice_key(view: ConflictView) -> str:
    return f"conflicts/{view.vm}/{view.claimant.ovs}/{view.claimant.port}"


def encode(view: ConflictView) -> bytes:
    def ref(r: PortRef) -> dict[str, object]:
        return {"ovs": r.ovs, "port": r.port, "port_name": r.port_name}

    body = {"vm": view.vm, "owner": ref(view.owner), "claimant": ref(view.claimant)}
    return json.dumps({**body, "seen_by": view.seen_by}).encode()


def decode(value: bytes) -> ConflictView | None:
    """A posted conflict, or None if it is not one (logged: a foreign key)."""
    try:
        d = json.loads(value)
        owner, claimant = (PortRef(d[k]["ovs"], d[k]["port"], d[k]["port_name"])
                           for k in ("owner", "claimant"))  # fmt: skip
        return ConflictView(str(d["vm"]), owner, claimant, str(d["seen_by"]))
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring a malformed conflict notice: %.200r", value)
        return None


class ConflictWatch:
    """The conflicts this controller sees, confirmed by two looks in a row."""

    def __init__(self, me: str) -> None:
        self.me = me
        self.confirmed: dict[str, ConflictView] = {}  # by notice key
        self._pending: set[str] = set()

    def look(self, found: list[Conflict]) -> bool:
        """What the core reports now; True if the confirmed set changed."""
        now = {notice_key(v): v for v in (view_of(c, self.me) for c in found)}
        changed = False
        for key in [k for k in self.confirmed if k not in now]:
            gone = self.confirmed.pop(key)
            log.info("duplicate MAC resolved: %s no more", describe(gone))
            changed = True
        for key, view in now.items():
            if key in self._pending and key not in self.confirmed:
                self.confirmed[key] = view
                log.error("duplicate MAC: %s; the vPort stays where it is until one of the "
                          "two ports goes down or away", describe(view))  # fmt: skip
                changed = True
        self._pending = set(now) - set(self.confirmed)
        return changed

    def notices(self) -> dict[str, bytes]:
        return {key: encode(view) for key, view in self.confirmed.items()}
