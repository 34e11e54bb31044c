"""The rig's HTTP side: tokens, loopback ports, the requests each controller served, clients.

Every controller serves its API on 127.0.0.1 on a port picked before it
starts (so that the URL it advertises to its peers is known), with the
tokens read from files, as the daemon reads them. `Served` wraps a
controller's app to keep which requests reached it (the east-west ones
among them); the tests' clients are httpx over real sockets.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from vportd.cluster.codec import SyncWire
from vportd.core.messages import VPortSync
from vportd.core.model import MigrationMark, Phase, VPortRecord

TOKEN = "vmm-token-0123456789abcdef"
PEER_TOKEN = "peer-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PEER_AUTH = {"Authorization": f"Bearer {PEER_TOKEN}"}
JSON = {"Content-Type": "application/json"}
PEER_PREFIX = "/v1/peer/"


def free_port() -> int:
    """A loopback port nothing listens on now (the kernel gave it out and took it back)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def token_files(directory: Path) -> tuple[Path, Path]:
    """The VMM's and the controllers' token files (as `api.token_file`, `api.peer_token_file`)."""
    directory.mkdir(parents=True, exist_ok=True)
    vmm, peer = directory / "api-token", directory / "peer-token"
    vmm.write_text(TOKEN + "\n")
    peer.write_text(PEER_TOKEN + "\n")
    vmm.chmod(0o600)  # the daemon refuses a token file others may read
    peer.chmod(0o600)
    return vmm, peer


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    scheme: str = "http"  # https when the API serves TLS


@dataclass
class Served:
    """An ASGI app that keeps the method, path and scheme of every HTTP request it serves."""

    app: ASGIApp
    requests: list[Request] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.requests.append(Request(scope["method"], scope["path"], scope["scheme"]))
        await self.app(scope, receive, send)

    def east_west(self) -> list[Request]:
        """The requests on `/v1/peer/...` (the leader's vPort syncs)."""
        return [r for r in self.requests if r.path.startswith(PEER_PREFIX)]


def client(
    url: str, headers: Mapping[str, str] | None = None, *, verify: ssl.SSLContext | bool = True
) -> httpx.AsyncClient:
    """A client of one controller's API (real sockets), sending `headers` with every request;
    an https API is checked with `verify`."""
    return httpx.AsyncClient(base_url=url, headers=dict(headers or {}), timeout=30.0, verify=verify)


def notify_body(vm: str, source: str, destination: str) -> dict[str, str]:
    return {"vm": vm, "source": source, "destination": destination}


def nested(depth: int, inner: str = "") -> bytes:
    """A JSON array nested `depth` deep (`[[[...]]]`), around `inner`."""
    return ("[" * depth + inner + "]" * depth).encode()


def nested_field(key: str, depth: int) -> bytes:
    """`{"key": [[[...]]]}`, the array nested `depth` deep."""
    return b"{" + json.dumps(key).encode() + b": " + nested(depth) + b"}"


def leader_sync(rec: VPortRecord, destination: str, leader: str, epoch: int = 1) -> VPortSync:
    """The vPort sync a leader sends for migration number `epoch` of `rec`'s VM from where
    `rec` places it to `destination` (as `core.coordinator` makes it)."""
    assert rec.loc.ovs is not None
    mid = f"{rec.vm.replace(':', '')}-{epoch}"
    mark = MigrationMark(
        epoch, mid, rec.loc.ovs, destination, rec.loc.seq + 1, Phase.SYNCED, leader
    )
    return VPortSync(VPortRecord(rec.vm, rec.loc, mark), mid, leader)


def sync_path(vm: str) -> str:
    return f"{PEER_PREFIX}vports/{vm}"


def sync_json(msg: VPortSync) -> dict[str, object]:
    """The body of `PUT /v1/peer/vports/{vm}` for `msg`, as the leader's PeerClient sends it."""
    body: dict[str, object] = json.loads(SyncWire.of(msg).model_dump_json())
    return body
