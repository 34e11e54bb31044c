"""A headless Chromium for the tests, driven over the Chrome DevTools Protocol (aiohttp's
websocket client): open a page, evaluate JavaScript in it, wait until an expression holds.

Debian's `chromium` (scripts/ensure-env.sh installs it). As root it runs without its
sandbox, which needs user namespaces the tests' machines may not give.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests.rig.http import free_port

PATIENCE = 20.0
POLL = 0.05


class PageError(Exception):
    """The page's JavaScript threw, or the protocol refused a command."""


@dataclass
class Page:
    """One tab: `evaluate` runs an expression and returns its value (JSON)."""

    ws: aiohttp.ClientWebSocketResponse
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def call(self, method: str, **params: object) -> dict[str, object]:
        ident = next(self._ids)
        await self.ws.send_json({"id": ident, "method": method, "params": params})
        while True:  # events and other answers are not ours: skip them
            message = json.loads(await self.ws.receive_str())
            if message.get("id") != ident:
                continue
            if "error" in message:
                raise PageError(f"{method}: {message['error']}")
            result: dict[str, object] = message["result"]
            return result

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)
        await self.until("document.readyState === 'complete'", f"{url} to load")

    async def evaluate(self, expression: str) -> object:
        answer = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in answer:
            raise PageError(f"{expression}: {answer['exceptionDetails']}")
        result = answer["result"]
        assert isinstance(result, dict)
        return result.get("value")

    async def screenshot(self, path: Path) -> None:
        """The tab as a PNG."""
        shot = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(str(shot["data"])))

    async def until(self, expression: str, what: str, timeout: float = PATIENCE) -> None:
        """Poll `expression` until it is true; fail naming `what` after `timeout` s."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not await self.evaluate(expression):
                    await asyncio.sleep(POLL)
                return
        raise AssertionError(f"not within {timeout:g} s: {what}")


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        raise RuntimeError("chromium is not installed: run `make env` (scripts/ensure-env.sh)")
    return found


@contextlib.asynccontextmanager
async def browser(profile: Path, size: tuple[int, int] = (1280, 900)) -> AsyncIterator[Page]:
    """A headless Chromium with one blank tab of `size` pixels, stopped on the way out."""
    port = free_port()
    args = [
        chromium(), "--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
        f"--window-size={size[0]},{size[1]}", "--hide-scrollbars",
        f"--remote-debugging-port={port}", f"--user-data-dir={profile}", "about:blank",
    ]  # fmt: skip
    if os.geteuid() == 0:
        args.insert(1, "--no-sandbox")
    log = (profile.parent / "chromium.log").open("wb")
    proc = await asyncio.create_subprocess_exec(*args, stdout=log, stderr=log)
    try:
        async with aiohttp.ClientSession() as http:
            target = await _page_target(http, port, proc)
            async with http.ws_connect(target, max_msg_size=0) as ws:
                page = Page(ws)
                width, height = size  # the viewport itself (--window-size counts the frame)
                await page.call(
                    "Emulation.setDeviceMetricsOverride",
                    width=width, height=height, deviceScaleFactor=1, mobile=False,
                )  # fmt: skip
                yield page
    finally:
        proc.terminate()
        await proc.wait()
        log.close()


async def _page_target(
    http: aiohttp.ClientSession, port: int, proc: asyncio.subprocess.Process
) -> str:
    """The websocket URL of the browser's first tab, once its DevTools endpoint answers."""
    async with asyncio.timeout(PATIENCE):
        while proc.returncode is None:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/json/list") as answer:
                    pages = [t for t in await answer.json() if t.get("type") == "page"]
                    if pages:
                        url: str = pages[0]["webSocketDebuggerUrl"]
                        return url
            await asyncio.sleep(POLL)
    raise RuntimeError(f"chromium exited ({proc.returncode}) before its DevTools endpoint answered")
