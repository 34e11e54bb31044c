"""Measures the dashboard with a big table: a rig controller with N vPorts (10,000 by
default), what one `GET /v1/events` snapshot weighs and costs the controller's loop to build,
and what the page takes to parse and render one (headless Chromium).

The rig's fabric holds fewer VM ports than that (99 a switch), so the vPorts are written
to the store of record as another controller's would be (on 100 hypervisors the rig's
switches are not), and reach every controller's table through its watch.

    .venv/bin/python -m tests.dashboard_measure [N]

Prints one JSON line. A measurement for the docs, not a test: tests never assert times.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from tests.cdp import Page, browser
from tests.rig.cluster import Rig, running
from tests.rig.http import AUTH, TOKEN
from vportd.api.dashboard import Feed
from vportd.api.vport_page import TableView
from vportd.core.model import Location, VPortRecord

BATCH = 1000  # records per store transaction
HYPERVISORS = 100
ROUNDS = 5  # repeats of each timing; the median is reported

RENDER = """(() => {
  const frame = JSON.stringify(latest);
  const t0 = performance.now();
  const snap = JSON.parse(frame);
  const t1 = performance.now();
  render(snap);
  document.body.offsetHeight;  // the layout too
  const t2 = performance.now();
  return [t1 - t0, t2 - t1, document.querySelectorAll('#vports tbody tr').length];
})()"""


def record(k: int) -> VPortRecord:
    mac = f"52:54:00:{k >> 16 & 255:02x}:{k >> 8 & 255:02x}:{k & 255:02x}"
    ovs, port = f"hw{k % HYPERVISORS}", 10 + k // HYPERVISORS
    ip = f"10.{k >> 16 & 255}.{k >> 8 & 255}.{k & 255}"
    loc = Location(ovs, port, f"tap{k}", True, 1, 0, "c9", (ip,), f"iface-{k}", f"vm-{k}")
    return VPortRecord(mac, loc)


async def seed(rig: Rig, n: int) -> None:
    """`n` vPorts in the store, then in every controller's table."""
    server = rig.server
    assert server is not None
    records = [record(k) for k in range(n)]
    async with server.client() as store:
        for k in range(0, n, BATCH):
            await store.merge(records[k : k + BATCH])
    await rig.until(
        lambda: all(len(m.service.vports()) >= n for m in rig.live()), "the tables", 120
    )


def median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


async def feed_cost(rig: Rig, view: TableView) -> tuple[int, float, object]:
    """One snapshot's size in bytes, the median ms to build and serialise it, and the
    vPort count it gives."""
    member = rig.followers()[0]
    feed = Feed(member.service, member.forwarder, AUTH["Authorization"], view)
    spent, snap = [], {}
    for _ in range(ROUNDS):
        began = time.perf_counter()
        snap = await feed.snapshot()
        body = json.dumps(snap, separators=(",", ":"))
        spent.append((time.perf_counter() - began) * 1000)
    total = snap["vports"]["total"]  # type: ignore[index]
    return len(f"event: snapshot\ndata: {body}\n\n".encode()), median(spent), total


async def page_cost(page: Page, url: str, rows: int) -> tuple[float, float, int]:
    await page.goto(f"{url}/ui/")
    await page.evaluate(f"sessionStorage.setItem('vportd.token', '{TOKEN}')")
    await page.goto(f"{url}/ui/")
    await page.until(
        f"latest !== null && latest.vports.rows.length >= {min(rows, 1)}", "a snapshot", 120
    )
    runs = []
    for _ in range(ROUNDS):
        value = await page.evaluate(RENDER)
        assert isinstance(value, list)
        runs.append(value)
    return median([r[0] for r in runs]), median([r[1] for r in runs]), int(runs[0][2])


async def measure(n: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        async with running(Path(tmp)) as rig:
            await seed(rig, n)
            size, build_ms, total = await feed_cost(rig, TableView())
            _, find_ms, _ = await feed_cost(rig, TableView(ovs="hw7", find="10.0.3"))
            async with browser(Path(tmp) / "profile") as page:
                parse_ms, render_ms, shown = await page_cost(page, rig.followers()[0].url, n)
    return {
        "vports": n, "snapshot_vports_total": total, "snapshot_bytes": size,
        "snapshot_build_ms": round(build_ms, 1), "filtered_build_ms": round(find_ms, 1),
        "page_parse_ms": round(parse_ms, 1), "page_render_ms": round(render_ms, 1),
        "rows_rendered": shown,
    }  # fmt: skip


if __name__ == "__main__":
    print(json.dumps(asyncio.run(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000))))
