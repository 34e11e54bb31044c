"""A controller's Prometheus metrics, in a registry of its own (no global state).

The runtime counts and observes; at each scrape the API's service fills in
the gauges from the controller's state (`Scrape`) and `/metrics` renders.
Names follow Prometheus' conventions: a `vportd_` prefix, base units
(`_seconds`), `_total` on counters; every series carries the `controller`
label, and the other labels take a few values each (states, kinds, peers),
never a VM's MAC or a migration's id. docs/operations.md lists them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

STATES = ("preparing", "ready", "activated", "completed", "aborted", "failed")
FINAL_STATES = ("completed", "aborted", "failed")
# Notify → notify complete takes milliseconds on loopback; seconds means a timeout.
HANDSHAKE_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Notify → the VM active at the destination: the VMM's whole pre-copy, seconds to minutes.
ACTIVATION_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# A direction's longest traffic gap across a migration: tens of ms when the hand-over
# works; seconds when the network learnt of the move late, or never.
DOWNTIME_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# How late the event loop ran a timer: milliseconds when idle; seconds starve the lease
# heartbeat (a TTL is a few seconds), OpenFlow echoes and peer requests.
LOOP_LAG_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class Scrape:
    """The controller's state as a scrape reads it."""

    vports: int
    migrations: Mapping[str, int]  # the leader's, by state (empty on a follower)
    leading: bool
    members: int  # the cluster's members this controller sees, itself included
    switches_connected: int
    switches_mastered: int
    flow_mods_sent: int  # ever, by this controller
    ovsdb_sessions: int  # OVSDB servers followed with a live session


class Metrics:
    def __init__(self, controller: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.controller = controller
        self._migrations()
        self._southbound()
        self._cluster()
        self._loop_lag = Histogram(
            "vportd_event_loop_lag_seconds", "How late the event loop ran a timer, sampled",
            ["controller"], buckets=LOOP_LAG_BUCKETS, registry=self.registry,
        ).labels(controller)  # fmt: skip

    def _gauge(self, name: str, doc: str) -> Gauge:
        return Gauge(name, doc, ["controller"], registry=self.registry).labels(self.controller)

    def _migrations(self) -> None:
        r, c = self.registry, ["controller"]
        finished = Counter(
            "vportd_migrations_total",
            "Migrations this controller led that ended, by their final state", [*c, "state"],
            registry=r,
        )  # fmt: skip
        # Every final state from the start, so that a rate over them is never missing.
        self._finished = {s: finished.labels(self.controller, s) for s in FINAL_STATES}
        # (A child from the start, as for the final states: 0 before the first.)
        self._suppressed = Counter(
            "vportd_migrations_suppressed_total",
            "Notifies this controller refused as leader: the VM moved too often lately "
            "(flap damping)", c, registry=r,
        ).labels(self.controller)  # fmt: skip
        self._handshake = Histogram(
            "vportd_migration_handshake_seconds", "Notify to notify complete, on the leader",
            c, buckets=HANDSHAKE_BUCKETS, registry=r,
        ).labels(self.controller)  # fmt: skip
        self._activation = Histogram(
            "vportd_migration_activation_seconds",
            "Notify to the leader learning that the VM is active at the destination",
            c, buckets=ACTIVATION_BUCKETS, registry=r,
        ).labels(self.controller)  # fmt: skip
        self._downtime = Histogram(
            "vportd_migration_downtime_seconds",
            "A direction's longest traffic gap across a migration, as a VMM or the lab "
            "measured and reported it to the leader (one observation per direction)",
            c, buckets=DOWNTIME_BUCKETS, registry=r,
        ).labels(self.controller)  # fmt: skip
        self._states = Gauge(
            "vportd_leader_migrations",
            "Migrations the leader holds (open, and ended ones it still keeps), by state; "
            "0 on followers", [*c, "state"], registry=r,
        )  # fmt: skip

    def _southbound(self) -> None:
        r, c = self.registry, ["controller"]
        self._port_events = Counter(
            "vportd_port_events_total", "Port events from this controller's own OVS, by kind",
            [*c, "kind"], registry=r,
        )  # fmt: skip
        self._port_event_of: dict[str, Counter] = {}
        self._flow_mods = Counter(
            "vportd_flow_mods_total", "Flow mods this controller wrote to its switches", c,
            registry=r,
        ).labels(self.controller)  # fmt: skip
        self._flow_mods_seen = 0
        self._table = self._gauge("vportd_vports", "vPorts in this controller's table")
        self._connected = self._gauge(
            "vportd_switches_connected", "Switches with an OpenFlow connection to this controller"
        )
        self._mastered = self._gauge(
            "vportd_switches_mastered", "Switches this controller masters, their flows adopted"
        )
        self._ovsdb = self._gauge(
            "vportd_ovsdb_sessions", "OVSDB servers this controller follows with a live session"
        )
        self._conflicts = self._gauge(
            "vportd_mac_conflicts",
            "MACs up on a second port of a switch this controller masters while their vPort's "
            "port is up (duplicate MACs)",
        )
        self._conflicts.set(0)

    def _cluster(self) -> None:
        r, c = self.registry, ["controller"]
        self._leading = self._gauge("vportd_is_leader", "1 if this controller leads the cluster")
        self._members = self._gauge(
            "vportd_cluster_members", "The cluster's members this controller sees, itself included"
        )
        self._leader_changes = Counter(
            "vportd_leader_changes_total", "Leaders this controller has seen take over", c,
            registry=r,
        ).labels(self.controller)  # fmt: skip
        self._peer = Counter(
            "vportd_peer_requests_total", "East-west requests sent, by peer and outcome",
            [*c, "peer", "outcome"], registry=r,
        )  # fmt: skip

    # -- what the runtime counts and observes ---------------------------------
    def migration_ended(self, state: str) -> None:
        self._finished[state].inc()

    def suppressed(self) -> None:
        self._suppressed.inc()

    def handshake(self, seconds: float) -> None:
        self._handshake.observe(seconds)

    def activation(self, seconds: float) -> None:
        self._activation.observe(seconds)

    def downtime(self, seconds: float) -> None:
        self._downtime.observe(seconds)

    def port_event(self, kind: str) -> None:
        # One per port event of a boot storm: the labelled child is looked up once.
        child = self._port_event_of.get(kind)
        if child is None:
            child = self._port_event_of[kind] = self._port_events.labels(self.controller, kind)
        child.inc()

    def loop_lag(self, seconds: float) -> None:
        self._loop_lag.observe(seconds)

    def leader_changed(self) -> None:
        self._leader_changes.inc()

    def mac_conflicts(self, count: int) -> None:
        self._conflicts.set(count)

    def peer_request(self, peer: str, outcome: str) -> None:
        self._peer.labels(self.controller, peer, outcome).inc()

    # -- what a scrape reads ----------------------------------------------------
    def scraped(self, s: Scrape) -> None:
        self._table.set(s.vports)
        for state in STATES:
            self._states.labels(self.controller, state).set(s.migrations.get(state, 0))
        self._leading.set(1 if s.leading else 0)
        self._members.set(s.members)
        self._connected.set(s.switches_connected)
        self._mastered.set(s.switches_mastered)
        self._ovsdb.set(s.ovsdb_sessions)
        # The switches keep the count; the counter follows it by what it grew since.
        self._flow_mods.inc(max(s.flow_mods_sent - self._flow_mods_seen, 0))
        self._flow_mods_seen = max(s.flow_mods_sent, self._flow_mods_seen)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
