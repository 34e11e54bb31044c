"""`FakeOvsdb`: a minimal OVSDB server (RFC 7047) for vportd's monitor.

It serves one database, Open_vSwitch, with the tables and columns of
`ovsdb_data.SCHEMA`, on `tcp:127.0.0.1:PORT` (a free port) or a unix
socket, and answers what ovsdb-server answers to the requests vportd's
client makes: `monitor_cond` (the initial rows, columns as asked; no `where`
conditions), then an `update2` notification per transaction, and `echo`.
`monitor_cancel` works too; any other method gets "unknown method", as from
ovsdb-server. Replies and errors are shaped as ovsdb-server shapes them.

The test drives the database through methods named after what happens on a
hypervisor (`add_bridge`, `add_vm_port`, `set_link`, ...), each one
transaction that writes what ovs-vsctl and ovs-vswitchd together would have
written (a bridge's own internal port, the granted `ofport`, `link_state`);
`transaction()` groups several into one. `close_clients()` drops every
connection (the client reconnects; the database stays, as after an
ovsdb-server restart), `probe()` sends the server's own echo requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.fakes.ovsdb_data import SCHEMA, Row, datum, modify_json, new_row, row_json
from vportd.southbound.ovsdb.wire import Framer, OvsdbError

LOG = logging.getLogger("tests.fakes.ovsdb")
DATABASE = "Open_vSwitch"
LOCAL_OFPORT = 65534  # a bridge's internal port (OFPP_LOCAL)
WAIT = 10.0  # generous: a wait for an event, never a threshold
_SELECT = ("initial", "insert", "delete", "modify")


class RequestError(Exception):
    """A request refused; `error` is the JSON-RPC error object."""

    def __init__(self, error: str, details: str, syntax: Any = None) -> None:
        super().__init__(details)
        self.error: dict[str, Any] = {"error": error, "details": details}
        if syntax is not None:
            self.error["syntax"] = json.dumps(syntax)


@dataclass(frozen=True)
class _Watch:
    """One table of a monitor: its columns and which kinds of change it reports."""

    columns: tuple[str, ...]
    select: frozenset[str]


_Monitor = dict[str, _Watch]


def _watch(table: str, requests: Any) -> _Watch:
    """A table's monitor-cond-requests (one object or a list of them) as one `_Watch`."""
    if table not in SCHEMA:
        raise RequestError("syntax error", f"no table named {table}", table)
    columns: list[str] = []
    select: set[str] = set()
    for request in requests if isinstance(requests, list) else [requests]:
        if not isinstance(request, dict):
            raise RequestError("syntax error", "a monitor request is an object", request)
        if request.get("where") not in (None, [], [True]):
            raise RequestError("syntax error", "the fake OVSDB filters no rows (where)", request)
        asked = request.get("columns", list(SCHEMA[table]))
        for column in asked:
            if column not in SCHEMA[table]:
                held = ", ".join(SCHEMA[table])
                raise RequestError(
                    "syntax error", f"{column} is not a valid column name (held: {held})", [column]
                )
        columns += asked
        chosen = request.get("select", {})
        select |= {kind for kind in _SELECT if chosen.get(kind, True)}
    return _Watch(tuple(dict.fromkeys(columns)), frozenset(select))


class _Client:
    """One connection: JSON-RPC in, replies and notifications out."""

    def __init__(self, db: FakeOvsdb, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.db, self.reader, self.writer = db, reader, writer
        self.monitors: dict[str, tuple[Any, _Monitor]] = {}  # JSON of the id -> (id, tables)
        self._echoes: dict[str, asyncio.Future[None]] = {}
        self._sent = 0

    async def run(self) -> None:
        framer = Framer()
        with contextlib.suppress(ConnectionError, OvsdbError):
            while data := await self.reader.read(1 << 16):
                for message in framer.feed(data):
                    if not self._handle(message):
                        return
                await self.writer.drain()

    def close(self) -> None:
        self.writer.transport.abort()
        for future in self._echoes.values():
            future.cancel()

    def send(self, message: dict[str, Any]) -> None:
        if not self.writer.is_closing():
            self.writer.write(json.dumps(message).encode())

    def _handle(self, message: Any) -> bool:
        """Act on one message; False if it is not JSON-RPC (ovsdb-server then hangs up)."""
        if not isinstance(message, dict):
            LOG.warning("not a JSON-RPC message: %.200s", message)
            return False
        method, ident = message.get("method"), message.get("id")
        if method is None:
            future = self._echoes.pop(json.dumps(ident), None)
            if future is not None and not future.done():
                future.set_result(None)
            return True
        try:
            result = self._call(method, message.get("params"), ident)
        except RequestError as exc:
            self.send({"id": ident, "error": exc.error})
        else:
            self.send(result)
        return True

    def _call(self, method: str, params: Any, ident: Any) -> dict[str, Any]:
        if method == "echo":
            return {"id": ident, "result": params, "error": None}
        if method == "monitor_cond":
            return {"id": ident, "result": self._monitor(params), "error": None}
        if method == "monitor_cancel":
            self._cancel(params)
            return {"id": ident, "result": {}, "error": None}
        return {"id": ident, "error": "unknown method"}

    def _monitor(self, params: Any) -> dict[str, Any]:
        if not isinstance(params, list) or len(params) != 3 or not isinstance(params[2], dict):
            raise RequestError("syntax error", "monitor_cond takes [db, id, requests]", params)
        name, ident, requests = params
        if name != DATABASE:
            raise RequestError(
                "unknown database", f"monitor_cond request specifies unknown database {name}",
                params,
            )  # fmt: skip
        key = json.dumps(ident)
        if key in self.monitors:
            raise RequestError("syntax error", "duplicate monitor ID", ident)
        tables = {table: _watch(table, asked) for table, asked in requests.items()}
        self.monitors[key] = (ident, tables)
        self.db.monitored += 1
        self.db.poke()
        return self.db.initial(tables)

    def _cancel(self, params: Any) -> None:
        key = json.dumps(params[0] if isinstance(params, list) and params else None)
        if self.monitors.pop(key, None) is None:
            raise RequestError("unknown monitor", "no such monitor", params)

    def publish(self, changes: Mapping[tuple[str, str], tuple[Row | None, Row | None]]) -> None:
        for ident, tables in self.monitors.values():
            updates = _updates(tables, changes)
            if updates:
                self.send({"id": None, "method": "update2", "params": [ident, updates]})

    async def echo(self, timeout: float) -> None:
        self._sent += 1
        ident = f"fake-echo-{self._sent}"
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._echoes[json.dumps(ident)] = future
        self.send({"id": ident, "method": "echo", "params": []})
        async with asyncio.timeout(timeout):
            await future


def _updates(
    tables: _Monitor, changes: Mapping[tuple[str, str], tuple[Row | None, Row | None]]
) -> dict[str, dict[str, Any]]:
    """table-updates2 of one transaction for one monitor."""
    updates: dict[str, dict[str, Any]] = {}
    for (table, ident), (old, new) in sorted(changes.items()):
        watch = tables.get(table)
        if watch is None:
            continue
        update: dict[str, Any] | None = None
        if old is None and new is not None and "insert" in watch.select:
            update = {"insert": row_json(new, table, watch.columns)}
        elif old is not None and new is None and "delete" in watch.select:
            update = {"delete": None}
        elif old is not None and new is not None and "modify" in watch.select:
            diff = modify_json(old, new, table, watch.columns)
            update = {"modify": diff} if diff else None
        if update is not None:
            updates.setdefault(table, {})[ident] = update
    return updates


class FakeOvsdb:
    """An OVSDB server for tests (module docstring). `async with FakeOvsdb() as db`."""

    def __init__(self, *, unix: Path | None = None, host: str = "127.0.0.1") -> None:
        self.unix, self.host, self.port = unix, host, 0
        self.tables: dict[str, dict[str, Row]] = {table: {} for table in SCHEMA}
        self.clients: list[_Client] = []
        self.monitored = 0  # monitors ever set up (a reconnect makes one more)
        self.sequence = 0  # the last uuid given
        self._txn: dict[tuple[str, str], Row | None] | None = None  # rows as they were
        self._changed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._root = self._insert("Open_vSwitch", {})

    @property
    def remote(self) -> str:
        return f"unix:{self.unix}" if self.unix is not None else f"tcp:{self.host}:{self.port}"

    async def __aenter__(self) -> FakeOvsdb:
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        if self.unix is not None:
            self._server = await asyncio.start_unix_server(self._accept, self.unix)
        else:
            self._server = await asyncio.start_server(self._accept, self.host, 0)
            self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None and self._tg is not None
        self._server.close()
        self.close_clients()
        await self._tg.__aexit__(kind, exc, tb)
        await self._server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = _Client(self, reader, writer)
        if self._tg is None:
            writer.transport.abort()
            return
        self.clients.append(client)
        self._tg.create_task(self._serve(client))

    async def _serve(self, client: _Client) -> None:
        try:
            await client.run()
        finally:
            client.close()
            self.clients.remove(client)
            self.poke()

    # -- waiting and connections -------------------------------------------------
    def poke(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_monitored(self, count: int = 1, timeout: float = WAIT) -> None:
        """Until `count` monitors have been set up since the start (reconnects count)."""
        async with asyncio.timeout(timeout):
            while self.monitored < count:
                await self._changed.wait()

    def close_clients(self) -> None:
        """Drop every connection, as an ovsdb-server restart does; the data stays."""
        for client in list(self.clients):
            client.close()

    async def probe(self, timeout: float = WAIT) -> None:
        """The server's echo request to every client; returns once all have answered."""
        async with asyncio.TaskGroup() as tg:
            for client in list(self.clients):
                tg.create_task(client.echo(timeout))

    def initial(self, tables: _Monitor) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for table, watch in tables.items():
            rows = self.tables[table]
            if "initial" in watch.select and rows:
                result[table] = {
                    ident: {"initial": row_json(row, table, watch.columns)}
                    for ident, row in sorted(rows.items())
                }
        return result

    # -- transactions ------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group changes into one transaction (one update2); nested ones join the outer."""
        if self._txn is not None:
            yield
            return
        self._txn = {}
        try:
            yield
        except BaseException:
            self._rollback(self._txn)
            raise
        finally:
            before, self._txn = self._txn, None
        self._publish(before)
        if before:
            self._patch_errors()

    def _patch_errors(self) -> None:
        """What ovs-vswitchd writes after a change, in a transaction of its own: a patch
        port without its peer fails (its `error`), one with it works again."""
        ifaces = self.tables["Interface"]
        patches = {row["name"][0]: row for row in ifaces.values() if row["type"] == ("patch",)}
        with self.transaction():
            for ident, row in ifaces.items():
                if row["type"] != ("patch",):
                    continue
                name, peer = row["name"][0], dict(row["options"]).get("peer")
                other = patches.get(peer) if peer is not None else None
                if other is not None and dict(other["options"]).get("peer") == name:
                    error = None
                else:
                    error = f"No usable peer '{peer}' exists in '{self._datapath(ident)}' datapath."
                if row["error"] != datum(error):
                    self._update("Interface", ident, {"error": error})

    def _datapath(self, iface: str) -> str:
        """The datapath type of the bridge an interface is on ("system" when not set)."""
        for bridge in self.tables["Bridge"].values():
            for port in bridge["ports"]:
                if iface in self.tables["Port"][port]["interfaces"]:
                    return bridge["datapath_type"][0] or "system"
        return "system"

    def _rollback(self, before: dict[tuple[str, str], Row | None]) -> None:
        for (table, ident), row in before.items():
            if row is None:
                self.tables[table].pop(ident, None)
            else:
                self.tables[table][ident] = row

    def _publish(self, before: dict[tuple[str, str], Row | None]) -> None:
        changes = {
            key: (old, self.tables[key[0]].get(key[1])) for key, old in before.items()
        }  # fmt: skip
        for client in self.clients:
            client.publish(changes)
        self.poke()

    def _touch(self, table: str, ident: str) -> None:
        assert self._txn is not None, "rows change inside a transaction"
        if (table, ident) not in self._txn:
            row = self.tables[table].get(ident)
            self._txn[table, ident] = None if row is None else dict(row)

    def _insert(self, table: str, values: Mapping[str, Any]) -> str:
        self.sequence += 1
        ident = str(uuid.UUID(int=self.sequence))
        with self.transaction():
            self._touch(table, ident)
            self.tables[table][ident] = new_row(table)
            self._update(table, ident, values)
        return ident

    def _update(self, table: str, ident: str, values: Mapping[str, Any]) -> None:
        with self.transaction():
            self._touch(table, ident)
            row = self.tables[table][ident]
            for column, value in values.items():
                if column not in row:
                    raise KeyError(f"{table} has no column {column} in the fake")
                row[column] = datum(value)

    def _merge(self, table: str, ident: str, column: str, pairs: Mapping[str, str | None]) -> None:
        """Set (or, with None, remove) keys of a map column."""
        current = dict(self.tables[table][ident][column])
        current.update(pairs)
        self._update(table, ident, {column: current})

    def _delete(self, table: str, ident: str) -> None:
        with self.transaction():
            self._touch(table, ident)
            del self.tables[table][ident]

    def _find(self, table: str, name: str) -> str:
        for ident, row in self.tables[table].items():
            if row["name"] == (name,):
                return ident
        raise KeyError(f"no {table} named {name!r}")

    def _add_ref(self, table: str, ident: str, column: str, ref: str, add: bool = True) -> None:
        refs = set(self.tables[table][ident][column])
        refs = refs | {ref} if add else refs - {ref}
        self._update(table, ident, {column: refs})

    # -- what happens on a hypervisor ------------------------------------------------
    def set_system_ids(self, ids: Mapping[str, str | None]) -> None:
        """`Open_vSwitch external_ids` (hostname, vportd-encap-ip...); None removes a key."""
        self._merge("Open_vSwitch", self._root, "external_ids", ids)

    def add_bridge(self, name: str, dpid: int | None = None, *, datapath_type: str = "") -> None:
        """A bridge as `ovs-vsctl add-br` makes it, with its internal port, and (given
        `dpid`) the datapath id ovs-vswitchd writes."""
        with self.transaction():
            config = {} if dpid is None else {"datapath-id": f"{dpid:016x}"}
            bridge = self._insert("Bridge", {
                "name": name, "other_config": config, "fail_mode": "secure",
                "protocols": {"OpenFlow13"}, "datapath_type": datapath_type,
            })  # fmt: skip
            self._add_ref("Open_vSwitch", self._root, "bridges", bridge)
            self.set_dpid(name, dpid)
            self.add_port(name, name, LOCAL_OFPORT, type="internal")

    def set_dpid(self, bridge: str, dpid: int | None) -> None:
        """The datapath id as ovs-vswitchd reports it (None: not yet)."""
        value = None if dpid is None else f"{dpid:016x}"
        self._update("Bridge", self._find("Bridge", bridge), {"datapath_id": value})

    def add_port(
        self,
        bridge: str,
        name: str,
        ofport: int | None = None,
        *,
        ofport_request: int | None = None,
        type: str = "",  # (the column's name)
        external_ids: Mapping[str, str] | None = None,
        options: Mapping[str, str] | None = None,
        tag: int | None = None,
        link_up: bool = True,
    ) -> None:
        """A port with one interface of the same name; `ofport` is what ovs-vswitchd
        granted (None: not yet), `ofport_request` what was asked for."""
        with self.transaction():
            iface = self._insert("Interface", {
                "name": name, "type": type, "ofport": ofport, "ofport_request": ofport_request,
                "external_ids": external_ids or {}, "options": options or {},
                "link_state": None if ofport is None else ("up" if link_up else "down"),
                "admin_state": None if ofport is None else "up",
            })  # fmt: skip
            port = self._insert("Port", {"name": name, "interfaces": {iface}, "tag": tag})
            self._add_ref("Bridge", self._find("Bridge", bridge), "ports", port)

    def add_vm_port(
        self,
        bridge: str,
        name: str,
        ofport: int,
        mac: str,
        *,
        iface_id: str | None = None,
        vm_id: str | None = None,
        tag: int | None = None,
        link_up: bool = True,
        numbered: bool = True,
        type: str = "",  # (the column's name)
    ) -> None:
        """A VM's tap as libvirt adds it (`external_ids:attached-mac`, `iface-id`, `vm-id`,
        `ofport_request`); `numbered=False`: ovs-vswitchd has not granted the number yet."""
        ids = {"attached-mac": mac, "iface-id": iface_id, "iface-status": "active", "vm-id": vm_id}
        self.add_port(
            bridge, name, ofport if numbered else None, ofport_request=ofport,
            external_ids={k: v for k, v in ids.items() if v is not None}, tag=tag, link_up=link_up,
            type=type,
        )  # fmt: skip

    def add_patch(self, a: tuple[str, str, int], b: tuple[str, str, int]) -> None:
        """A patch-port pair, each end (bridge, interface, ofport), in one transaction."""
        with self.transaction():
            for (bridge, name, ofport), (_, peer, _) in ((a, b), (b, a)):
                self.add_port(bridge, name, ofport, ofport_request=ofport, type="patch",
                              options={"peer": peer})  # fmt: skip

    def set_link(self, name: str, up: bool) -> None:
        self._update("Interface", self._find("Interface", name),
                     {"link_state": "up" if up else "down"})  # fmt: skip

    def set_ofport(self, name: str, ofport: int | None, error: str | None = None) -> None:
        """ovs-vswitchd numbers the interface (-1 and an `error`: it failed it)."""
        values: dict[str, Any] = {"ofport": ofport, "error": error}
        if ofport is not None and ofport > 0:
            values |= {"link_state": "up", "admin_state": "up"}
        self._update("Interface", self._find("Interface", name), values)

    def set_external_ids(self, name: str, ids: Mapping[str, str | None]) -> None:
        """An interface's `external_ids` (`vportd-peer`, `attached-mac`...); None removes."""
        self._merge("Interface", self._find("Interface", name), "external_ids", ids)

    def set_peer_hint(self, name: str, peer: str | None) -> None:
        """`external_ids:vportd-peer=BRIDGE/INTERFACE`: the link this interface leads over."""
        self.set_external_ids(name, {"vportd-peer": peer})

    def delete_port(self, name: str) -> None:
        """`ovs-vsctl del-port`: the port leaves its bridge, it and its interfaces go."""
        with self.transaction():
            port = self._find("Port", name)
            for ident, row in self.tables["Bridge"].items():
                if port in row["ports"]:
                    self._add_ref("Bridge", ident, "ports", port, add=False)
            for iface in self.tables["Port"][port]["interfaces"]:
                self._delete("Interface", iface)
            self._delete("Port", port)

    def delete_bridge(self, name: str) -> None:
        """`ovs-vsctl del-br`: the bridge and every port on it."""
        with self.transaction():
            bridge = self._find("Bridge", name)
            for port in self.tables["Bridge"][bridge]["ports"]:
                self.delete_port(self.tables["Port"][port]["name"][0])
            self._add_ref("Open_vSwitch", self._root, "bridges", bridge, add=False)
            self._delete("Bridge", bridge)
