"""What a live cluster exports on `/metrics`, after one completed and one aborted migration:
the migration metrics, Prometheus' naming conventions, and every metric the Grafana
dashboard (contrib/grafana/vportd.json) asks for."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import VM_A, VM_B
from tests.rig.cluster import Rig
from tests.rig.fabric import VmPort
from tests.rig.http import notify_body

DASHBOARD = Path(__file__).parents[2] / "contrib" / "grafana" / "vportd.json"
NAME = re.compile(r"(?<![\w:])vportd_[A-Za-z0-9_:]*")
# Every label and the few values each takes; never a VM's MAC or a migration's id.
BOUNDED_LABELS = {"controller", "state", "kind", "peer", "outcome", "le"}
TIME_WORDS = {"lag", "latency", "duration", "age", "delay", "time", "timeout", "uptime"}
OTHER_UNITS = {"ms", "milliseconds", "us", "microseconds", "minutes", "hours", "kb", "mb"}


async def migrate_then_abort(rig: Rig, leader: httpx.AsyncClient) -> None:
    """VM_A moves hv0 → hv1 (completed); VM_B's move hv1 → hv2 is aborted."""
    done = await leader.post("/v1/migrations", json=notify_body(VM_A.mac, "hv0", "hv1"))
    assert done.status_code == 201
    await rig.live_migrate(VM_A, VmPort(VM_A.mac, "hv1", 3))
    mid = done.json()["id"]
    await rig.until(lambda: rig.leader.core.migration(mid).state == "completed", "completion")
    stopped = await leader.post("/v1/migrations", json=notify_body(VM_B.mac, "hv1", "hv2"))
    assert stopped.status_code == 201
    aborted = await leader.delete(f"/v1/migrations/{stopped.json()['id']}")
    assert aborted.json()["state"] == "aborted"


def ended(rig: Rig) -> float:
    """The migrations the leader counted as ended, from its registry (what `/metrics` shows:
    the runtime looks at the migrations after each input, the next at most a tick later)."""
    registry, me = rig.leader.runtime.metrics.registry, rig.leader.id
    return sum(
        registry.get_sample_value("vportd_migrations_total", {"controller": me, "state": s}) or 0.0
        for s in ("completed", "aborted", "failed")
    )


@pytest.fixture
async def scraped(rig: Rig, leader: httpx.AsyncClient) -> dict[str, list[Metric]]:
    """Each controller's metric families, by controller id, once both migrations ended."""
    await migrate_then_abort(rig, leader)
    await rig.until(lambda: ended(rig) == 2.0, "both migrations counted on the leader")
    texts = {m.id: (await rig.client(m.id, auth=False).get("/metrics")).text for m in rig.live()}
    return {cid: list(text_string_to_metric_families(t)) for cid, t in texts.items()}


def values(families: list[Metric], sample: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for f in families
        for s in f.samples
        if s.name == sample
    }


async def test_the_leader_counts_migrations_by_final_state_and_times_them(
    rig: Rig, scraped: dict[str, list[Metric]]
) -> None:
    mine = scraped[rig.leader.id]
    c = ("controller", rig.leader.id)
    ended = values(mine, "vportd_migrations_total")
    assert {dict(k)["state"]: v for k, v in ended.items()} == {
        "completed": 1.0, "aborted": 1.0, "failed": 0.0,
    }  # fmt: skip
    # Both notifies were answered (notify complete); one VM ran at its destination.
    assert values(mine, "vportd_migration_handshake_seconds_count") == {(c,): 2.0}
    assert values(mine, "vportd_migration_activation_seconds_count") == {(c,): 1.0}
    held = {dict(k)["state"]: v for k, v in values(mine, "vportd_leader_migrations").items()}
    assert (held["completed"], held["aborted"], held["ready"]) == (1.0, 1.0, 0.0)
    assert values(mine, "vportd_is_leader") == {(c,): 1.0}
    for follower in rig.followers():
        assert values(scraped[follower.id], "vportd_is_leader") == {
            (("controller", follower.id),): 0.0
        }
        assert sum(values(scraped[follower.id], "vportd_migrations_total").values()) == 0.0


def exprs(node: object) -> Iterator[str]:
    """Every PromQL expression of a dashboard: its panels' and its variables' queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"expr", "query", "definition"} and isinstance(value, str):
                yield value
            else:
                yield from exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from exprs(item)


def test_the_dashboard_asks_prometheus_through_its_datasource_input() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    assert dashboard["schemaVersion"] >= 39
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            assert panel["targets"], panel["title"]


async def test_every_metric_the_dashboard_uses_is_exported(
    scraped: dict[str, list[Metric]],
) -> None:
    used = {name for e in exprs(json.loads(DASHBOARD.read_text())) for name in NAME.findall(e)}
    # Series as they are scraped: a histogram's `_bucket`, `_sum`, `_count`, a counter's
    # `_total`; from every controller (a peer's requests are counted where they leave).
    exported = {s.name for fams in scraped.values() for f in fams for s in f.samples}
    assert used, "no vportd_ metric in the dashboard"
    assert used - exported == set()


async def test_names_follow_prometheus_conventions(scraped: dict[str, list[Metric]]) -> None:
    for families in scraped.values():
        # (Without prometheus_client's `_created` gauges: when each counter and histogram
        # started, in the text format as families of their own, as every such exporter has.)
        for f in (f for f in families if not f.name.endswith("_created")):
            assert f.name.startswith("vportd_"), f.name
            words = set(f.name.split("_"))
            assert not words & OTHER_UNITS, f"{f.name}: base units only (seconds, bytes)"
            series = [s for s in f.samples if not s.name.endswith("_created")]
            if f.type == "counter":
                assert all(s.name.endswith("_total") for s in series), f.name
            if f.type == "histogram" or words & TIME_WORDS:
                assert f.name.endswith(("_seconds", "_bytes")), f"{f.name}: unit suffix"
            labels = {k for s in series for k in s.labels}
            assert labels <= BOUNDED_LABELS, f"{f.name}: unbounded labels {labels}"
