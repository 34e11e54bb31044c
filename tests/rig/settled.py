"""When the rig has settled, and if not, what it is still waiting for.

Settled: every live controller is in a session and has loaded the table; one
leader, the one the store names, that every live controller sees; the members
the store holds are the live controllers; every switch is connected to every
live controller and adopted by the master the store names, whom everyone
agrees on; every controller has read the fabric's VM ports from OVSDB (a
change just made to the fabric is not taken for settled before anyone heard
of it); every runtime is idle; every table equals the store; every switch
holds the flows its master's compiler believes it holds. Each check returns
what is missing (None: nothing), so that a wait that fails says why.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from tests.rig.fabric import Fabric
from tests.rig.member import Member
from vportd.cluster.memory import MemoryServer


def unsettled(live: Sequence[Member], server: MemoryServer | None, fabric: Fabric) -> str | None:
    checks: list[Callable[[], str | None]] = [
        lambda: _sessions(live),
        lambda: _leadership(live, server),
        lambda: _membership(live, server),
        lambda: _connections(live, fabric),
        lambda: _feeds(live, fabric),
        lambda: _mastership(live, server, fabric),
        lambda: _idle(live),
        lambda: _tables(live, server),
        lambda: _flows(live, fabric),
    ]
    for check in checks:
        problem = check()
        if problem is not None:
            return problem
    return None


def _holder(server: MemoryServer, key: str) -> str | None:
    """The controller id a role key (`leader`, `masters/hv0`) names, None if it is not held."""
    held = server.range(key).get(key)
    if held is None or held.value is None:
        return None
    return str(json.loads(held.value)["id"])


def _sessions(live: Sequence[Member]) -> str | None:
    for m in live:
        if m.node is not None and not m.node.in_session:
            return f"{m.id} is not in a session (or has not loaded the table)"
    return None


def _leadership(live: Sequence[Member], server: MemoryServer | None) -> str | None:
    if server is None:
        return None if all(m.core.leading for m in live) else "the lone controller does not lead"
    leader = _holder(server, "leader")
    if leader not in {m.id for m in live}:
        return f"the store's leader is {leader}, not a live controller"
    for m in live:
        assert m.node is not None
        if m.node.leader_id != leader or m.core.leading != (m.id == leader):
            return f"{m.id} sees {m.node.leader_id} lead (leading: {m.core.leading}), not {leader}"
    return None


def _membership(live: Sequence[Member], server: MemoryServer | None) -> str | None:
    if server is None:
        return None
    ids = {m.id for m in live}
    stored = {key.removeprefix("members/") for key in server.range("members/")}
    if stored != ids:
        return f"the store's members are {sorted(stored)}, the live ones {sorted(ids)}"
    for m in live:
        assert m.node is not None
        if set(m.node.members) != ids:
            return f"{m.id} knows members {sorted(m.node.members)}, not {sorted(ids)}"
    return None


def _connections(live: Sequence[Member], fabric: Fabric) -> str | None:
    for m in live:
        missing = set(fabric.names) - set(m.runtime.switches.connected)
        if missing:
            return f"{m.id} has no connection from {sorted(missing)}"
    return None


def _feeds(live: Sequence[Member], fabric: Fabric) -> str | None:
    """Each switch's master has read its VM ports (and their links) from OVSDB (the
    others may not follow its server)."""
    for m in live:
        feed = m.runtime.feed
        for switch in fabric.names:
            if not m.core.mastered(switch):
                continue
            held = {port: feed.vm_row(switch, port) for port in feed.vm_ports(switch)}
            seen = {port: row.link_up for port, row in held.items() if row is not None}
            there = {port: up for (s, port), up in fabric.up.items() if s == switch}
            if seen != there:
                return f"{m.id} has read ports {seen} of {switch} in OVSDB, not {there}"
    return None


def _master_of(switch: str, live: Sequence[Member], server: MemoryServer | None) -> str | None:
    if server is None:
        return live[0].id if live else None
    return _holder(server, f"masters/{switch}")


def _mastership(live: Sequence[Member], server: MemoryServer | None, fabric: Fabric) -> str | None:
    by_id = {m.id: m for m in live}
    for switch in fabric.names:
        master = _master_of(switch, live, server)
        if master not in by_id:
            return f"{switch} is mastered by {master}, not a live controller"
        for m in live:
            if m.core.master_of(switch) != master:
                return f"{m.id} believes {m.core.master_of(switch)} masters {switch}, not {master}"
        switches = by_id[master].runtime.switches
        conn = switches.adopted.get(switch)
        if conn is None or conn.closed or not switches.stats.reconciles[switch]:
            return f"{switch} is not adopted by its master {master}"
    return None


def _idle(live: Sequence[Member]) -> str | None:
    busy = [m.id for m in live if not m.runtime.idle]
    return f"{busy} are busy" if busy else None


def _tables(live: Sequence[Member], server: MemoryServer | None) -> str | None:
    if server is None:
        return None
    stored, _ = server.records()
    for m in live:
        held = {rec.vm: rec for rec in m.core.records()}
        if held != stored:
            differ = sorted(vm for vm in held | stored if held.get(vm) != stored.get(vm))
            return f"{m.id}'s table differs from the store for {differ[:5]}"
    return None


def _flows(live: Sequence[Member], fabric: Fabric) -> str | None:
    for switch in fabric.names:
        masters = [m for m in live if m.core.mastered(switch)]
        if len(masters) != 1:
            return f"{switch} has masters {[m.id for m in masters]}"
        believed = set(masters[0].core.installed(switch))
        held = fabric.switch(switch).table.core_flows()
        if held != believed:
            return (
                f"{switch} holds {len(held - believed)} flows {masters[0].id} does not believe "
                f"and lacks {len(believed - held)} it does"
            )
    return None
