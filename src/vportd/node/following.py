"""OVSDB sessions by mastership: which servers a controller follows, and what it learns
of the switches of the others from etcd.

In a cluster (`ovsdb.follow = "mastered"`) a controller follows a hypervisor's
OVSDB server while it masters a switch that server serves, or while it does
not know yet which switches the server serves, or one of them has no master
(`sessions`). A switch gained
on a server not followed is adopted once that server's first snapshot is in:
the reconcile needs every port of it. The master of a switch publishes what
the others need of it (`facts`: `switches/{name}` on its lease); the others
take it as their own reads of that server would be.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

from vportd.cluster.node import ClusterNode
from vportd.core.controller import Controller
from vportd.node.facts import SwitchFacts, as_snapshots, decode, encode
from vportd.node.feed import Fed, OvsdbFeed
from vportd.node.sessions import Sessions
from vportd.southbound.ovsdb.monitor import OvsdbMonitor

log = logging.getLogger("vportd.runtime")


class Following:
    """The runtime's OVSDB sessions by mastership (module docstring)."""

    def __init__(
        self,
        monitors: Sequence[OvsdbMonitor],
        core: Controller,
        feed: OvsdbFeed,
        cluster: ClusterNode,
        *,
        gain: Callable[[str], None],  # adopt a switch we master, its server read
        learn: Callable[[dict[str, int]], bool],  # switches' names and datapath ids
        apply: Callable[[Fed], None],  # tunnel endpoints or links that changed
    ) -> None:
        self.sessions = Sessions(monitors, self._closed)
        self.core, self.feed, self.cluster = core, feed, cluster
        self._gain, self._learn, self._apply = gain, learn, apply
        self.gaining: set[str] = set()  # mastered, adopted once their server's snapshot is in
        self._facts: dict[str, SwitchFacts] = {}  # what the masters published, by switch

    def snapshot_in(self, remote: str, fed: Fed, learnt: bool) -> None:
        """After a snapshot: adopt the switches that waited for it, follow what we master."""
        if self.sessions.saw(remote, fed.bridges):
            self.cluster.switches_changed()
        for switch in sorted(self.gaining & fed.bridges.keys()):
            self.gaining.discard(switch)
            self._gain(switch)
        self.refollow()
        if learnt or fed.fabric_changed:
            self.publish()

    def gained(self, switch: str) -> bool:
        """We master `switch` now; whether it can be adopted now (else once read)."""
        remote = self.sessions.serving(switch)
        if remote is None or self.feed.following(remote):
            return True
        log.info("%s: mastered; adopted once OVSDB %s is read", switch, remote)
        self.gaining.add(switch)
        self.refollow()
        return False

    def changed(self, switch: str) -> None:
        """We gained or lost `switch`: follow and publish accordingly."""
        if not self.core.mastered(switch):
            self.gaining.discard(switch)
        self.refollow()
        self.publish()

    def refollow(self) -> None:
        """Follow the servers of the switches we master (or are about to), and of those
        nobody masters yet: whoever gains one then has its server read already (at
        start, and while a dead master's lease lapses), not read twice."""
        me = self.core.me
        mine = {s.name for s in self.core.switches() if s.master in (me, None)}
        self.sessions.want(mine | self.gaining)

    def masterable(self, names: Iterable[str]) -> list[str]:
        """Of `names`, those a configured server serves (not those only published)."""
        served = self.sessions.switches()
        return [name for name in names if name in served]

    def _closed(self, remote: str) -> None:
        """We no longer follow `remote`: its snapshot goes, its facts come from etcd."""
        log.info("OVSDB %s: not followed (no switch of it mastered here)", remote)
        self._apply(self.feed.forget(remote))

    def publish(self) -> None:
        """Publish the facts of the switches we master (`switches/{name}`) for the others."""
        me, posts = self.core.me, {}
        for s in self.core.switches():
            facts = self.feed.facts(s.name) if s.master == me else None
            if facts is not None:
                posts[f"switches/{s.name}"] = encode(facts)
        self.cluster.facts.post(posts)

    def published(self, read: dict[str, bytes]) -> None:
        """What the masters publish: their switches' names, links and tunnel endpoints.

        A withdrawn entry (its master gone) is kept until a new master publishes
        it again: a switch's facts do not go with its master."""
        for key, value in read.items():
            try:
                facts = decode(value)
            except ValueError as err:
                log.error("store record %s unreadable, ignored: %s", key, err)
                continue
            self._facts[facts.name] = facts
        self._learn({f.name: f.dpid for f in self._facts.values()})
        tunnels = [f.tunnel for f in self._facts.values() if f.tunnel is not None]
        self._apply(self.feed.published(as_snapshots(self._facts.values()), tunnels))
