"""A controller's Prometheus metrics, in a registry of its own (no global state).

The runtime counts; the API's `/metrics` renders. Names follow Prometheus'
conventions (`_total` counters, `_seconds` histograms).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

# Notify → notify complete takes milliseconds on loopback; seconds means a timeout.
STATES = ("preparing", "ready", "activated", "completed", "aborted", "failed")
HANDSHAKE_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# How late the event loop ran a timer: milliseconds when idle; seconds starve the lease
# heartbeat (a TTL is a few seconds), OpenFlow echoes and peer requests.
LOOP_LAG_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)


class Metrics:
    def __init__(self, controller: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r, c = self.registry, ["controller"]
        self.controller = controller
        self._migrations = Counter(
            "vportd_migrations_total", "Migrations this controller led, by the state they reached",
            [*c, "state"], registry=r,
        )  # fmt: skip
        self._suppressed = Counter(
            "vportd_migrations_suppressed_total",
            "Notifies this controller refused as leader: the VM moved too often lately "
            "(flap damping)", c, registry=r,
        )  # fmt: skip
        self._suppressed.labels(controller)  # 0 from the start, for rate()
        self._handshake = Histogram(
            "vportd_handshake_seconds", "Notify to notify complete, on the leader",
            c, buckets=HANDSHAKE_BUCKETS, registry=r,
        )  # fmt: skip
        self._port_events = Counter(
            "vportd_port_events_total", "Port events from this controller's own OVS, by kind",
            [*c, "kind"], registry=r,
        )  # fmt: skip
        self._port_event_of: dict[str, Counter] = {}
        self._states = Gauge(
            "vportd_migrations_by_state", "Migrations the leader holds, by state (0 on followers)",
            [*c, "state"], registry=r,
        )  # fmt: skip
        self._table = Gauge("vportd_vports", "vPorts in this controller's table", c, registry=r)
        self._loop_lag = Histogram(
            "vportd_event_loop_lag_seconds", "How late the event loop ran a timer, sampled",
            c, buckets=LOOP_LAG_BUCKETS, registry=r,
        )  # fmt: skip
        self._leader_changes = Counter(
            "vportd_leader_changes_total", "Leaders this controller has seen take over", c,
            registry=r,
        )  # fmt: skip
        self._conflicts = Gauge(
            "vportd_mac_conflicts",
            "MACs up on a second port of a switch this controller masters while their vPort's "
            "port is up (duplicate MACs)", c, registry=r,
        )  # fmt: skip
        self._conflicts.labels(controller).set(0)
        self._peer = Counter(
            "vportd_peer_requests_total", "East-west requests sent, by peer and outcome",
            [*c, "peer", "outcome"], registry=r,
        )  # fmt: skip

    def migration(self, state: str) -> None:
        self._migrations.labels(self.controller, state).inc()

    def suppressed(self) -> None:
        self._suppressed.labels(self.controller).inc()

    def handshake(self, seconds: float) -> None:
        self._handshake.labels(self.controller).observe(seconds)

    def port_event(self, kind: str) -> None:
        # One per port event of a boot storm: the labelled child is looked up once.
        child = self._port_event_of.get(kind)
        if child is None:
            child = self._port_event_of[kind] = self._port_events.labels(self.controller, kind)
        child.inc()

    def migration_states(self, counts: dict[str, int]) -> None:
        for state in STATES:
            self._states.labels(self.controller, state).set(counts.get(state, 0))

    def table_size(self, vports: int) -> None:
        self._table.labels(self.controller).set(vports)

    def loop_lag(self, seconds: float) -> None:
        self._loop_lag.labels(self.controller).observe(seconds)

    def leader_changed(self) -> None:
        self._leader_changes.labels(self.controller).inc()

    def mac_conflicts(self, count: int) -> None:
        self._conflicts.labels(self.controller).set(count)

    def peer_request(self, peer: str, outcome: str) -> None:
        self._peer.labels(self.controller, peer, outcome).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
