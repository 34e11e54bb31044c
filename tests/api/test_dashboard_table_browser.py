"""The dashboard's vPort table in a real browser (headless Chromium) on a rig with more
vPorts than a page holds: previous/next, the filters and the search box (the controller
applies them before paging), and a VM's recent moves, all without a reload."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.api.test_dashboard_browser import ROWS, shown, sign_in
from tests.api.test_dashboard_table import MACS, VMS, rig
from tests.cdp import Page, browser
from tests.rig.cluster import Rig
from tests.rig.http import TOKEN, notify_body

pytestmark = pytest.mark.browser
__all__ = ["rig"]  # the fixture: 250 VMs on hv0..hv2

TEXT = "document.getElementById({!r}).textContent"
FIRST = f"{ROWS}[0]"  # the first row's MAC


async def choose(page: Page, select: str, value: str) -> None:
    await page.evaluate(
        f"(() => {{ const s = document.getElementById({select!r}); s.value = {value!r};"
        "s.dispatchEvent(new Event('change')); })()"
    )


async def find(page: Page, text: str) -> None:
    await page.evaluate(
        "(() => { const f = document.getElementById('filter-find');"
        f"f.value = {json.dumps(text)}; f.dispatchEvent(new Event('input')); }})()"
    )


async def click(page: Page, button: str) -> None:
    await page.evaluate(f"document.getElementById({button!r}).click()")


def moves_of(mac: str) -> str:
    """The states listed in `mac`'s Recent moves cell."""
    return (
        f"[...document.querySelectorAll('#vports tr[data-vm=\"{mac}\"] .move')]"
        ".map(m => m.dataset.state).join(',')"
    )


async def test_paging_through_a_big_table(rig: Rig, tmp_path: Path) -> None:
    async with browser(tmp_path / "profile") as page:
        await page.goto(f"{rig.followers()[0].url}/ui/")
        await sign_in(page, TOKEN)
        await page.until(f"{ROWS}.length === 100", "the first page")
        assert await shown(page) == MACS[:100]
        assert (
            await page.evaluate(TEXT.format("vport-shown"))
            == "1\u2013100 of 250 matching (250 vPorts)"
        )
        assert await page.evaluate(TEXT.format("page-info")) == "page 1 of 3"
        assert await page.evaluate("document.getElementById('page-prev').disabled") is True
        await page.evaluate("window.loadedOnce = true")  # gone if the page reloads

        await click(page, "page-next")
        await page.until(f"{FIRST} === {MACS[100]!r}", "the second page")
        await click(page, "page-next")
        await page.until(f"{ROWS}.length === 50", "the last page")
        assert await shown(page) == MACS[200:]
        assert await page.evaluate(TEXT.format("page-info")) == "page 3 of 3"
        assert await page.evaluate("document.getElementById('page-next').disabled") is True
        await click(page, "page-prev")
        await page.until(f"{FIRST} === {MACS[100]!r}", "back to the second page")

        # A filter starts again at the first page, of the VMs it lets through.
        await choose(page, "filter-ovs", "hv1")
        on_hv1 = sorted(vm.mac for vm in VMS if vm.switch == "hv1")
        await page.until(f"{ROWS}.length === {len(on_hv1)}", "hv1's VMs")
        assert await shown(page) == on_hv1
        assert await page.evaluate(TEXT.format("page-info")) == "page 1 of 1"
        vm = next(v for v in VMS if v.switch == "hv1")
        await find(page, vm.mac[-5:])
        await page.until(f"{ROWS}.length === 1", "the search")
        assert await shown(page) == [vm.mac]
        await find(page, "")
        await choose(page, "filter-ovs", "")
        await page.until(f"{ROWS}.length === 100", "the whole table again")

        # The segment filter offers the table's segments; segment 10's VMs are a page.
        options = "[...document.getElementById('filter-segment').options].map(o => o.value)"
        assert await page.evaluate(options) == ["", "0", "10"]
        await choose(page, "filter-segment", "10")
        tagged = sorted(vm.mac for vm in VMS if vm.tag == 10)
        await page.until(f"{ROWS}.length === {len(tagged)}", "segment 10's VMs")
        assert await shown(page) == tagged
        await choose(page, "filter-segment", "")
        await page.until(f"{ROWS}.length === 100", "every segment again")
        assert await page.evaluate("window.loadedOnce") is True


async def test_a_vms_moves_show_in_its_row(rig: Rig, tmp_path: Path) -> None:
    vm = VMS[7]
    leader = rig.client(rig.leader.id)
    async with browser(tmp_path / "profile") as page:
        await page.goto(f"{rig.leader.url}/ui/")
        await sign_in(page, TOKEN)
        await choose(page, "filter-state", "migrating")
        await page.until(TEXT.format("vport-shown") + ".startsWith('0 of 0')", "none migrating")
        started = await leader.post("/v1/migrations", json=notify_body(vm.mac, vm.switch, "hv0"))
        assert started.status_code == 201, started.text
        await page.until(f"{ROWS}.length === 1", "the migrating VM")
        assert await shown(page) == [vm.mac]
        await page.until(f"{moves_of(vm.mac)} === 'ready'", "the open move in its row")
        mid = started.json()["id"]
        assert (await leader.delete(f"/v1/migrations/{mid}")).status_code == 200
        await page.until(f"{ROWS}.length === 0", "no VM migrating")

        await choose(page, "filter-state", "")
        await find(page, vm.mac)
        await page.until(f"{moves_of(vm.mac)} === 'aborted'", "the aborted move in its row")
        cell = f"document.querySelector('#vports tr[data-vm=\"{vm.mac}\"] .move').textContent"
        assert str(await page.evaluate(cell)).startswith(f"{vm.switch} → hv0 aborted ")
