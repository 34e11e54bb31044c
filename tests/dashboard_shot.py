"""Takes the dashboard's screenshot (docs/dashboard.png) from a rig with a few VMs: one
migration completed, one aborted, one open.

    .venv/bin/python -m tests.dashboard_shot docs/dashboard.png
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from tests.cdp import browser
from tests.rig.cluster import Rig, running
from tests.rig.fabric import VmPort
from tests.rig.http import TOKEN, notify_body

VMS = [VmPort(f"52:54:00:12:34:{n:02x}", f"hv{n % 3}", 10 + n) for n in range(7)]


async def history(rig: Rig) -> None:
    leader = rig.client(rig.leader.id)
    moved, aborted, open_ = VMS[0], VMS[1], VMS[2]
    done = await leader.post("/v1/migrations", json=notify_body(moved.mac, "hv0", "hv2"))
    assert done.status_code == 201, done.text
    await rig.live_migrate(moved, VmPort(moved.mac, "hv2", 30))
    gone = await leader.post("/v1/migrations", json=notify_body(aborted.mac, "hv1", "hv0"))
    assert (await leader.delete(f"/v1/migrations/{gone.json()['id']}")).status_code == 200
    ready = await leader.post("/v1/migrations", json=notify_body(open_.mac, "hv2", "hv1"))
    assert ready.status_code == 201, ready.text
    await rig.settle()


async def shoot(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with running(Path(tmp)) as rig:
            await rig.boot(*VMS)
            await history(rig)
            async with browser(Path(tmp) / "profile") as page:
                await page.goto(f"{rig.followers()[0].url}/ui/")
                await page.evaluate(
                    f"sessionStorage.setItem('vportd.token', '{TOKEN}'); location.reload()"
                )
                await page.until(
                    "document.querySelectorAll('#migrations-recent tr[data-migration]').length"
                    " === 2",
                    "the migrations to show",
                )
                await page.screenshot(out)


if __name__ == "__main__":
    asyncio.run(shoot(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/dashboard.png")))
