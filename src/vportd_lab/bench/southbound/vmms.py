"""The southbound benchmark's VMMs: `ovs-vsctl add-port` per port, or one OVSDB connection."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from vportd.southbound.ovsdb.wire import Framer
from vportd_lab.bed.fabrics import add_port_ops
from vportd_lab.bench.southbound.bed import Bed

VSCTL, OVSDB = "ovs-vsctl", "one OVSDB connection"  # the two VMMs


@dataclass(frozen=True)
class Call:
    """One add-port by a VMM: when it started, when the commit was confirmed to it (OVSDB
    only), when the call returned (ovs-vswitchd has applied the change)."""

    issued: float
    replied: float | None
    returned: float


class VMM(Protocol):
    label: str

    async def add_port(self, k: int) -> Call: ...


async def run_process(args: list[str], env: dict[str, str]) -> None:
    proc = await asyncio.create_subprocess_exec(*args, env=env, stdout=asyncio.subprocess.DEVNULL)
    if await proc.wait() != 0:
        raise RuntimeError(f"{' '.join(args[:5])} ... failed")


class Vsctl:
    """The VMM as libvirt: one `ovs-vsctl add-port` per port, which waits for ovs-vswitchd."""

    label = VSCTL

    def __init__(self, bed: Bed) -> None:
        self.bed = bed

    async def add_port(self, k: int) -> Call:
        args = self.bed.add_port_args(k)
        issued = time.monotonic()
        await run_process(args, self.bed.ovs.env)
        return Call(issued, None, time.monotonic())


@dataclass(frozen=True)
class Reply:
    sent: float  # just before the request was written
    received: float  # its reply read
    result: Any


class OVSDBClient:
    """A minimal OVSDB JSON-RPC client (RFC 7047) on one long-lived unix-socket connection.

    One request at a time. It monitors `Open_vSwitch.cur_cfg`, to wait for
    ovs-vswitchd as ovs-vsctl does, and answers ovsdb-server's echo requests.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framer = Framer()
        self.pending: deque[Any] = deque()
        self.ids = itertools.count(1)
        self.cur_cfg = 0

    @classmethod
    async def connect(cls, db: str) -> OVSDBClient:
        if not db.startswith("unix:"):
            raise ValueError(f"not a unix socket: {db}")
        client = cls(*await asyncio.open_unix_connection(db.removeprefix("unix:")))
        columns = {"Open_vSwitch": {"columns": ["cur_cfg"]}}
        initial = await client.request("monitor", ["Open_vSwitch", "cfg", columns])
        client.note_cfg(initial.result)
        return client

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()

    async def request(self, method: str, params: list[Any]) -> Reply:
        """Send one request and read until its reply (noting updates, answering echoes)."""
        rid = next(self.ids)
        data = json.dumps({"method": method, "params": params, "id": rid}).encode()
        sent = time.monotonic()
        self.writer.write(data)
        while True:
            msg = await self.receive()
            if msg.get("id") == rid and "method" not in msg:
                if msg.get("error") is not None:
                    raise RuntimeError(f"ovsdb {method}: {msg['error']}")
                return Reply(sent, time.monotonic(), msg["result"])

    async def wait_cfg(self, cfg: int) -> None:
        """Until ovs-vswitchd has reported `cur_cfg` >= `cfg`: it applied that configuration."""
        while self.cur_cfg < cfg:
            await self.receive()

    async def receive(self) -> dict[str, Any]:
        """The next message; monitor updates are noted and echo requests answered."""
        msg = await self._read()
        if msg.get("method") == "echo":
            echo = {"result": msg.get("params"), "error": None, "id": msg.get("id")}
            self.writer.write(json.dumps(echo).encode())
        elif msg.get("method") == "update":
            self.note_cfg(msg["params"][1])
        return msg

    async def _read(self) -> dict[str, Any]:
        while not self.pending:
            chunk = await self.reader.read(1 << 16)
            if not chunk:
                raise ConnectionError("ovsdb-server closed the connection")
            self.pending.extend(self.framer.feed(chunk))
        msg = self.pending.popleft()
        if not isinstance(msg, dict):
            raise ValueError(f"not a JSON-RPC message: {msg!r}")
        return msg

    def note_cfg(self, updates: dict[str, Any]) -> None:
        for row in updates.get("Open_vSwitch", {}).values():
            self.cur_cfg = max(self.cur_cfg, (row.get("new") or {}).get("cur_cfg", 0))


# What ovs-vsctl adds to its transaction unless `--no-wait`: its wait is for `cur_cfg`.
_NEXT_CFG: list[dict[str, Any]] = [
    {"op": "mutate", "table": "Open_vSwitch", "where": [], "mutations": [["next_cfg", "+=", 1]]},
    {"op": "select", "table": "Open_vSwitch", "where": [], "columns": ["next_cfg"]},
]


class Ovsdb:
    """The VMM as os-vif and Neutron's agents (ovsdbapp): a transact per port, one connection."""

    label = OVSDB

    def __init__(self, bed: Bed, client: OVSDBClient) -> None:
        self.bed, self.client = bed, client

    async def add_port(self, k: int) -> Call:
        port = add_port_ops([self.bed.port(k)])
        reply = await self.client.request("transact", ["Open_vSwitch", *port, *_NEXT_CFG])
        await self.client.wait_cfg(_new_cfg(reply.result, len(port), k))
        return Call(reply.sent, reply.received, time.monotonic())


def _new_cfg(result: list[Any], port_ops: int, k: int) -> int:
    """`next_cfg` as port k's transaction left it; a failed operation or no bridge raises."""
    failed = [r for r in result if r is None or "error" in r]
    if failed or result[port_ops - 1].get("count") != 1:
        raise RuntimeError(f"transact of port {k}: {failed or 'no such bridge'}")
    return int(result[-1]["rows"][0]["next_cfg"])


@contextlib.asynccontextmanager
async def ovsdb_vmm(bed: Bed) -> AsyncIterator[Ovsdb]:
    client = await OVSDBClient.connect(bed.ovs.db)
    try:
        yield Ovsdb(bed, client)
    finally:
        await client.close()
