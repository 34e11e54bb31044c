"""A controller's metrics: each its own registry, every series renders in Prometheus text."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from vportd.node.metrics import Metrics, Scrape


def families(m: Metrics) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = m.render()[0].decode()
    return {  # (without the `_created` series: times, not values)
        f.name: [(dict(s.labels), s.value) for s in f.samples if not s.name.endswith("_created")]
        for f in text_string_to_metric_families(text)
    }


def scrape(flow_mods: int) -> Scrape:
    return Scrape(7, {"ready": 2}, True, 3, 2, 1, flow_mods, 4)


def test_every_metric_renders_with_the_controller_label() -> None:
    m = Metrics("c1")
    m.migration_ended("completed")
    m.handshake(0.004)
    m.activation(7.0)
    m.port_event("add")
    m.leader_changed()
    m.peer_request("c2", "ok")
    m.loop_lag(1.5)
    m.scraped(scrape(40))
    got = families(m)
    assert ({"controller": "c1"}, 7.0) in got["vportd_vports"]
    assert ({"controller": "c1", "state": "ready"}, 2.0) in got["vportd_leader_migrations"]
    assert ({"controller": "c1", "state": "failed"}, 0.0) in got["vportd_leader_migrations"]
    assert ({"controller": "c1"}, 1.0) in got["vportd_is_leader"]
    assert ({"controller": "c1"}, 3.0) in got["vportd_cluster_members"]
    assert ({"controller": "c1"}, 2.0) in got["vportd_switches_connected"]
    assert ({"controller": "c1"}, 1.0) in got["vportd_switches_mastered"]
    assert ({"controller": "c1"}, 4.0) in got["vportd_ovsdb_sessions"]
    handshake = dict((s[0].get("le"), s[1]) for s in got["vportd_migration_handshake_seconds"])
    assert handshake["0.005"] == 1.0 and handshake["0.002"] == 0.0
    activation = dict((s[0].get("le"), s[1]) for s in got["vportd_migration_activation_seconds"])
    assert activation["10.0"] == 1.0 and activation["5.0"] == 0.0
    lag = dict((s[0].get("le"), s[1]) for s in got["vportd_event_loop_lag_seconds"])
    assert lag["2.0"] == 1.0 and lag["1.0"] == 0.0
    for name in ("vportd_port_events", "vportd_leader_changes", "vportd_peer_requests"):
        assert got[name] and all(labels["controller"] == "c1" for labels, _ in got[name])


def test_every_final_state_is_counted_from_zero() -> None:
    m = Metrics("c1")
    m.migration_ended("aborted")
    ended = {labels["state"]: v for labels, v in families(m)["vportd_migrations"]}
    assert ended == {"completed": 0.0, "aborted": 1.0, "failed": 0.0}


def test_flow_mods_follow_the_switches_count() -> None:
    m = Metrics("c1")
    for sent in (40, 40, 55):
        m.scraped(scrape(sent))
    assert families(m)["vportd_flow_mods"] == [({"controller": "c1"}, 55.0)]


def test_two_controllers_in_one_process_do_not_share_a_registry() -> None:
    a, b = Metrics("a"), Metrics("b")
    a.port_event("add")
    assert families(b)["vportd_port_events"] == []
