"""One `vportd` process on a private etcd, for the tests of how it reaches etcd (TLS, users):
its configuration (no switches, no OVSDB), the process, and whether it is in session."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from vportd_lab.bed.ports import free_port

TOKEN = "vmm-token-0123456789abcdef"


def controller_config(tmp_path: Path, endpoint: str, *, store_extra: str = "") -> tuple[Path, str]:
    """Controller c0's config on etcd at `endpoint`, with `store_extra` lines in `[store]`;
    the config's path and the controller's API URL."""
    for name, token in (("token", TOKEN), ("peer-token", "peer-" + TOKEN)):
        (tmp_path / name).write_text(token + "\n")
        (tmp_path / name).chmod(0o600)  # (vportd refuses a token others can read)
    api, openflow = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    config = tmp_path / "c0.toml"
    config.write_text(f"""
[controller]
id = "c0"
[openflow]
listen = "{openflow}"
[ovsdb]
remotes = []
[api]
listen = "{api}"
token_file = "{tmp_path / "token"}"
peer_token_file = "{tmp_path / "peer-token"}"
[store]
kind = "etcd"
endpoints = ["{endpoint}"]
{store_extra}
[topology]
lldp = false
""")
    return config, f"http://{api}"


def vportd(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """`vportd --config CONFIG`, its output in `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "vportd.node.daemon", "--config", str(config)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip


async def in_session(url: str) -> bool:
    """The controller at `url` is healthy: in an etcd session, its table loaded."""
    async with httpx.AsyncClient(base_url=url, timeout=5.0) as client:
        try:
            health = (await client.get("/healthz")).json()
        except httpx.HTTPError:
            return False
    return bool(health.get("ok")) and bool(health.get("detail", {}).get("in_session"))
