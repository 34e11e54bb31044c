"""A controller's metrics: each its own registry, every series renders in Prometheus text."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from vportd.node.metrics import Metrics


def families(m: Metrics) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = m.render()[0].decode()
    return {
        f.name: [(dict(s.labels), s.value) for s in f.samples]
        for f in text_string_to_metric_families(text)
    }


def test_every_metric_renders_with_the_controller_label() -> None:
    m = Metrics("c1")
    m.migration("completed")
    m.handshake(0.004)
    m.port_event("add")
    m.table_size(7)
    m.leader_changed()
    m.peer_request("c2", "ok")
    m.migration_states({"ready": 2})
    m.loop_lag(1.5)
    got = families(m)
    assert ({"controller": "c1"}, 7.0) in got["vportd_vports"]
    assert ({"controller": "c1", "state": "ready"}, 2.0) in got["vportd_migrations_by_state"]
    assert ({"controller": "c1", "state": "failed"}, 0.0) in got["vportd_migrations_by_state"]
    handshake = dict((s[0].get("le"), s[1]) for s in got["vportd_handshake_seconds"])
    assert handshake["0.005"] == 1.0 and handshake["0.002"] == 0.0
    lag = dict((s[0].get("le"), s[1]) for s in got["vportd_event_loop_lag_seconds"])
    assert lag["2.0"] == 1.0 and lag["1.0"] == 0.0
    for name in ("vportd_migrations", "vportd_port_events", "vportd_leader_changes"):
        assert name in got


def test_two_controllers_in_one_process_do_not_share_a_registry() -> None:
    a, b = Metrics("a"), Metrics("b")
    a.port_event("add")
    assert families(b)["vportd_port_events"] == []
