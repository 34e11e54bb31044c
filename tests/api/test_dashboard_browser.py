"""The dashboard in a real browser (headless Chromium over the DevTools protocol), against a
rig controller over real HTTP: signing in, the vPorts, the filters, and a migration that
shows up live (no reload)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.api.conftest import VM_A, VM_B
from tests.cdp import Page, browser
from tests.rig.cluster import Rig
from tests.rig.fabric import VmPort
from tests.rig.http import TOKEN, notify_body

pytestmark = pytest.mark.browser

ROWS = "[...document.querySelectorAll('#vports tbody tr[data-vm]')].map(r => r.dataset.vm)"


async def shown(page: Page) -> list[str]:
    rows = await page.evaluate(ROWS)
    assert isinstance(rows, list)
    return sorted(str(r) for r in rows)


async def sign_in(page: Page, token: str) -> None:
    await page.evaluate(
        f"document.getElementById('token').value = {json.dumps(token)};"
        "document.getElementById('login-form').requestSubmit()"
    )


async def test_the_page_shows_the_vports_and_a_migration_live(rig: Rig, tmp_path: Path) -> None:
    follower = rig.followers()[0]  # a follower: its migrations are the leader's, relayed
    async with browser(tmp_path / "profile") as page:
        await page.goto(f"{follower.url}/ui/")
        assert await page.evaluate("document.getElementById('board').hidden") is True
        await sign_in(page, "not-the-token")
        await page.until(
            "!document.getElementById('login-error').hidden", "the wrong token to be refused"
        )
        assert await page.evaluate("sessionStorage.getItem('vportd.token')") is None

        await sign_in(page, TOKEN)
        await page.until(f"{ROWS}.length === 2", "both vPorts to show")
        assert await shown(page) == sorted([VM_A.mac, VM_B.mac])
        assert await page.evaluate("sessionStorage.getItem('vportd.token')") == TOKEN
        assert await page.evaluate("document.getElementById('leader').textContent") == (
            rig.leader.id
        )
        await page.evaluate("window.loadedOnce = true")  # gone if the page reloads

        await page.evaluate(
            "const f = document.getElementById('filter-ovs'); f.value = 'hv1';"
            "f.dispatchEvent(new Event('change'))"
        )  # the controller filters: the stream starts again with ?ovs=hv1
        await page.until(f"{ROWS}.length === 1", "the hypervisor filter")
        assert await shown(page) == [VM_B.mac]
        await page.evaluate(
            "const g = document.getElementById('filter-ovs'); g.value = '';"
            "g.dispatchEvent(new Event('change'))"
        )
        await page.until(f"{ROWS}.length === 2", "every vPort again")

        leader = rig.client(rig.leader.id)
        started = await leader.post("/v1/migrations", json=notify_body(VM_A.mac, "hv0", "hv1"))
        assert started.status_code == 201, started.text
        mid = started.json()["id"]
        row = f"document.querySelector('#migrations-open tr[data-migration=\"{mid}\"]')"
        await page.until(f"{row} !== null", "the migration to show as open")
        assert await page.evaluate(f"{row}.dataset.state") == "ready"
        assert await page.evaluate("window.loadedOnce") is True
        cell = f"document.querySelector('#vports tr[data-vm=\"{VM_A.mac}\"]').cells[6].textContent"
        await page.until(f"{cell} === 'to hv1'", "VM_A to show as migrating to hv1")


async def test_a_migration_opens_its_timeline_and_its_reported_downtime(
    rig: Rig, tmp_path: Path
) -> None:
    leader = rig.client(rig.leader.id)
    done = await leader.post("/v1/migrations", json=notify_body(VM_A.mac, "hv0", "hv1"))
    mid = done.json()["id"]
    await rig.live_migrate(VM_A, VmPort(VM_A.mac, "hv1", 3))
    await rig.until(lambda: rig.leader.core.migration(mid).state == "completed", "completion")
    notified = done.json()["timeline"][0]["at"]
    # A packet a ms but for 40 ms after the notify, both ways.
    arrivals = [notified + i / 1000 for i in range(-200, 300) if not 0 <= i < 40]
    report = {
        "directions": [
            {"name": "vm -> peer", "gap_s": 0.041, "lost": 40, "arrivals": arrivals},
            {"name": "peer -> vm", "gap_s": 0.041, "lost": 40, "arrivals": arrivals},
        ]
    }
    put = await leader.put(f"/v1/migrations/{mid}/downtime", json=report)
    assert put.status_code == 200, put.text

    async with browser(tmp_path / "profile") as page:
        await page.goto(f"{rig.followers()[0].url}/ui/")
        await sign_in(page, TOKEN)
        row = f"document.querySelector('#migrations-recent tr[data-migration=\"{mid}\"]')"
        await page.until(f"{row} !== null", "the migration to show as recent")
        await page.evaluate(f"{row}.click()")
        detail = f"document.querySelector('tr[data-timeline-for=\"{mid}\"]')"
        await page.until(f"{detail} !== null", "its timeline to open")
        steps = await page.evaluate(
            f"[...{detail}.querySelectorAll('ol.timeline li')].map(li => li.dataset.step)"
        )
        assert isinstance(steps, list)
        assert steps[0] == "notify" and steps[-1] == "completed" and "ready" in steps
        plots = f"{detail}.querySelectorAll('svg.downtime-plot')"
        await page.until(f"{plots}.length === 2", "the whole plot and its close-up")
        lanes = await page.evaluate(
            f"[...{plots}[0].querySelectorAll('path.arrivals')].map(p => p.dataset.direction)"
        )
        assert lanes == ["vm -> peer", "peer -> vm"]
        assert await page.evaluate(f"{plots}[0].querySelectorAll('rect.gap').length") == 2
        marked = await page.evaluate(
            f"[...{plots}[0].querySelectorAll('g.step-mark')].map(g => g.dataset.step)"
        )
        assert isinstance(marked, list) and "notify" in marked

        # It stays open across the next snapshots, and a second click closes it.
        await page.evaluate(f"{row}.click()")
        await page.until(f"{detail} === null", "its timeline to close")
