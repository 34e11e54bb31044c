"""Takes the dashboard's screenshot (docs/dashboard.png) from a running lab (as root):
`vportctl lab up`, then `vportctl lab migrate VM --to HV --probe` (which reports the
probe's measured downtime to the cluster), then this, which opens the newest migration's
timeline and downtime plot on the leader's page.

    .venv/bin/python -m tests.dashboard_lab_shot docs/dashboard.png
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.cdp import browser
from vportd.ctl.target import read_token

VPORTCTL = str(Path(sys.executable).parent / "vportctl")


def lab_status() -> dict[str, object]:
    out = subprocess.run([VPORTCTL, "lab", "--json", "status"], capture_output=True, check=True)
    status = json.loads(out.stdout)
    assert isinstance(status, dict)
    return status


def leader_api(status: dict[str, object]) -> str:
    cluster, controllers = status["cluster"], status["controllers"]
    assert isinstance(cluster, dict) and isinstance(controllers, list)
    api = next(c["api"] for c in controllers if c["id"] == cluster["leader"])
    return str(api if "://" in api else f"http://{api}")


async def shoot(out: Path) -> None:
    status = lab_status()
    token = read_token(Path(str(status["token_file"])))
    with tempfile.TemporaryDirectory() as tmp:
        async with browser(Path(tmp) / "profile", size=(1280, 1300)) as page:
            await page.goto(f"{leader_api(status)}/ui/")
            await page.evaluate(
                f"sessionStorage.setItem('vportd.token', {json.dumps(token)}); location.reload()"
            )
            newest = "document.querySelector('#migrations-recent tr[data-migration]')"
            await page.until(f"{newest} !== null", "a finished migration to show")
            await page.evaluate(f"{newest}.click()")
            await page.until("document.querySelector('svg') !== null", "its plot to show")
            await asyncio.sleep(0.5)  # (the next snapshot redraws it: let it settle)
            await page.screenshot(out)


if __name__ == "__main__":
    asyncio.run(shoot(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/dashboard.png")))
