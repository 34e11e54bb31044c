"""The dashboard in a real browser against a running lab: headless Chromium on the leader's
and a follower's `/ui`, signed in with the lab's northbound token through the login form.

Both pages show the lab's VMs with their hypervisors; then `vportctl lab migrate` moves
vm0 hv0 -> hv1 (a long pre-copy, so that the migration stays open a while) and both
pages, without a reload, show it open, then completed, vm0 on hv1 and the move in
vm0's recent moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cdp import Page, browser
from tests.lab.conftest import lab_up
from tests.lab.test_lab import pytestmark as lab_marks
from tests.lab.test_lab import status
from vportd.ctl.target import read_token

pytestmark = [*lab_marks, pytest.mark.browser]  # root, ovs, skipped unless root

LAYOUT = ("--controllers", "3", "--hypervisors", "3", "--vms", "3")
VPORTCTL = str(Path(sys.executable).parent / "vportctl")
ROWS = "[...document.querySelectorAll('#vports tbody tr[data-vm]')]"
PATIENCE = 30.0  # the lab's controllers on a busy 2-core machine


@pytest.fixture(scope="module")
def lab() -> Iterator[Path]:
    """A 3-controller lab (its directory), up for the module."""
    with lab_up(*LAYOUT) as lab_dir:
        yield lab_dir


def urls(st: dict[str, Any]) -> tuple[str, str]:
    """The leader's API and a follower's."""
    leader = st["cluster"]["leader"]
    apis = {c["id"]: _url(c["api"]) for c in st["controllers"]}
    follower = next(cid for cid in sorted(apis) if cid != leader)
    return apis[leader], apis[follower]


def _url(api: str) -> str:
    """`lab status` names a plain-HTTP API by its host:port (an https one by its URL)."""
    return api if "://" in api else f"http://{api}"


async def sign_in(page: Page, token: str) -> None:
    """Type the token into the login form and submit it, as a person would."""
    await page.evaluate(
        f"document.getElementById('token').value = {json.dumps(token)};"
        "document.getElementById('login-form').requestSubmit()"
    )


async def placed(page: Page) -> dict[str, str]:
    """The vPort table as rendered: each VM's MAC and its Hypervisor cell."""
    rows = await page.evaluate(f"{ROWS}.map(r => [r.dataset.vm, r.cells[2].textContent])")
    assert isinstance(rows, list)
    return {str(vm): str(ovs) for vm, ovs in rows}


@contextlib.asynccontextmanager
async def dashboard(api: str, token: str, profile: Path) -> AsyncIterator[Page]:
    """A browser on `api`'s /ui, signed in."""
    async with browser(profile) as page:
        await page.goto(f"{api}/ui/")
        assert await page.evaluate("document.getElementById('board').hidden") is True
        await sign_in(page, token)
        await page.until(
            "document.getElementById('status').textContent === 'live'", "the feed", PATIENCE
        )
        yield page


def open_row(mac: str) -> str:
    return (
        "[...document.querySelectorAll('#migrations-open tr[data-migration]')]"
        f".some(r => r.cells[1].textContent === {json.dumps(mac)})"
    )


async def test_both_pages_show_the_vms_and_a_lab_migration_live(lab: Path, tmp_path: Path) -> None:
    st = status(lab)
    token = read_token(Path(st["token_file"]))
    expected = {vm["mac"]: vm["hypervisor"] for vm in st["vms"]}
    vm0 = next(vm for vm in st["vms"] if vm["name"] == "vm0")
    mac = vm0["mac"]
    assert vm0["hypervisor"] == "hv0"
    async with contextlib.AsyncExitStack() as stack:
        pages = [
            await stack.enter_async_context(dashboard(api, token, tmp_path / f"profile{n}"))
            for n, api in enumerate(urls(st))
        ]
        for page in pages:
            await page.until(f"{ROWS}.length === {len(expected)}", "the lab's VMs", PATIENCE)
            assert await placed(page) == expected
            await page.evaluate("window.loadedOnce = true")  # gone if the page reloads

        migrating = await asyncio.create_subprocess_exec(
            VPORTCTL, "lab", "migrate", "--dir", str(lab), "vm0", "--to", "hv1", "--precopy", "4",
            "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        for page in pages:
            await page.until(open_row(mac), "vm0's migration to show as open", PATIENCE)
        out, err = await migrating.communicate()
        assert migrating.returncode == 0, err.decode()
        done = json.loads(out)
        assert done["outcome"] == "migrated"
        mid = done["migration_id"]

        row = f"document.querySelector('#migrations-recent tr[data-migration=\"{mid}\"]')"
        for page in pages:
            await page.until(
                f"{row} !== null && {row}.dataset.state === 'completed'",
                "the migration to show completed", PATIENCE,
            )  # fmt: skip
            vport = f"document.querySelector('#vports tr[data-vm=\"{mac}\"]')"
            await page.until(f"{vport}.dataset.ovs === 'hv1'", "vm0 on hv1", PATIENCE)
            assert await placed(page) == expected | {mac: "hv1"}
            move = f"{vport}.querySelector('.move[data-migration=\"{mid}\"]')"
            await page.until(f"{move}?.dataset.state === 'completed'", "vm0's move", PATIENCE)
            assert str(await page.evaluate(f"{move}.textContent")).startswith(
                "hv0 \u2192 hv1 completed "
            )
            assert await page.evaluate("window.loadedOnce") is True
