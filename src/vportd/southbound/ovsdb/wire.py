"""OVSDB on the wire (RFC 7047): JSON-RPC framing, and update2 rows as plain dicts.

Only the columns in `COLUMNS` are asked for (`monitor_cond`), and a row keeps
just their values: atoms, frozensets and dicts, decoded by the stdlib's C
`json`, each atom of the type the schema gives its column (else ValueError).
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable
from enum import StrEnum
from typing import Any

MAX_MESSAGE = 256 << 20  # an incomplete message longer than this: not OVSDB


class OvsdbError(Exception):
    """The server refused a request, sent what is not JSON-RPC, or stopped answering."""


_SPACE = re.compile(r"\s*")
_DECODER = json.JSONDecoder()


class Framer:
    """JSON-RPC messages out of a byte stream: concatenated JSON objects, no separator.

    Each message is decoded by the C `json` once it is complete. A buffer can
    only be complete when it ends with `}`, so a message split over several
    reads is tried only then (rarely more than once). Text that cannot become
    JSON, however it goes on, raises OvsdbError.
    """

    def __init__(self) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")()
        self._buf = ""

    def feed(self, data: bytes) -> list[Any]:
        self._buf += self._text.decode(data)
        messages: list[Any] = []
        if not self._buf.rstrip().endswith("}"):
            self._check_size()
            return messages
        pos = 0
        while True:
            pos = _SPACE.match(self._buf, pos).end()  # type: ignore[union-attr]  # \s* matches
            if pos == len(self._buf):
                break
            try:
                message, pos = _DECODER.raw_decode(self._buf, pos)
            except json.JSONDecodeError as err:
                if _incomplete(err):
                    break  # the rest is not complete yet
                raise OvsdbError(f"not JSON: {err}") from None
            except RecursionError:  # the C decoder's limit: no OVSDB message nests this deep
                raise OvsdbError("a JSON message nested too deep to decode") from None
            messages.append(message)
        self._buf = self._buf[pos:]
        self._check_size()
        return messages

    def _check_size(self) -> None:
        if len(self._buf) > MAX_MESSAGE:
            raise OvsdbError(f"no complete JSON message in {len(self._buf)} characters")


def _incomplete(err: json.JSONDecodeError) -> bool:
    """Whether the text failed only for want of what is still to come: the decoder ran
    out of text, or is inside a string not closed yet (a `}` in it ended the buffer).
    Anything else no later bytes can mend: waiting would stop reading the server."""
    return err.pos >= len(err.doc.rstrip()) or err.msg.startswith("Unterminated string")


class Kind(StrEnum):
    """How a column's value is kept (and how an update2 diff applies to it)."""

    ATOM = "atom"  # exactly one value: replaced
    OPTIONAL = "optional"  # a set of at most one element: replaced, unless it was empty
    SET = "set"  # a set of more: the diff's elements are toggled
    MAP = "map"  # a map: the diff inserts, replaces or (same value) deletes keys


# The columns vportd reads, and nothing else: every other column ovs-vswitchd writes
# (statistics, status, mac_in_use...) is never sent to us.
COLUMNS: dict[str, dict[str, Kind]] = {
    "Open_vSwitch": {"external_ids": Kind.MAP},
    "Bridge": {"name": Kind.ATOM, "datapath_id": Kind.OPTIONAL, "ports": Kind.SET},
    "Port": {"name": Kind.ATOM, "interfaces": Kind.SET, "tag": Kind.OPTIONAL},
    "Interface": {
        "name": Kind.ATOM, "ofport": Kind.OPTIONAL, "ofport_request": Kind.OPTIONAL,
        "error": Kind.OPTIONAL, "external_ids": Kind.MAP, "link_state": Kind.OPTIONAL,
        "type": Kind.ATOM, "options": Kind.MAP,
    },
}  # fmt: skip
TABLES = ("Open_vSwitch", "Bridge", "Port", "Interface")
UUID = str  # a row's uuid, as OVSDB spells it
Row = dict[str, Any]  # column -> value: atoms, frozensets, dicts
Rows = dict[UUID, Row]  # a table's rows


# The columns whose atoms are integers; every other atom we read is a string (a name, a
# uuid, a map's key or value), as vswitch.ovsschema has them.
_INTEGERS = frozenset({("Interface", "ofport"), ("Interface", "ofport_request"), ("Port", "tag")})


def _atom(value: Any, want: type) -> Any:
    """An OVSDB atom of type `want`: ["uuid", U] and ["named-uuid", U] are their uuid
    string. Any other value is a ValueError (the session cannot read the message)."""
    if isinstance(value, list) and len(value) == 2 and value[0] in ("uuid", "named-uuid"):  # noqa: PLR2004
        value = value[1]
    if type(value) is not want:  # (not isinstance: a bool is no integer here)
        raise ValueError(f"expected an OVSDB {want.__name__} atom, got {str(value)[:60]!r}")
    return value


def _elements(value: Any, want: type) -> frozenset[Any]:
    """An OVSDB set: ["set", [atoms]], or a single atom standing for itself."""
    if isinstance(value, list) and value[0] == "set":
        return frozenset(_atom(a, want) for a in value[1])
    return frozenset((_atom(value, want),))


def _pairs(value: Any) -> dict[Any, Any]:
    """An OVSDB map of strings: ["map", [[key, value], ...]]."""
    if not isinstance(value, list) or value[0] != "map":
        raise ValueError(f"expected an OVSDB map, got {str(value)[:60]!r}")
    return {_atom(k, str): _atom(v, str) for k, v in value[1]}


def _type(table: str, column: str) -> type:
    return int if (table, column) in _INTEGERS else str


_DEFAULTS: dict[Kind, Callable[[], Any]] = {
    Kind.ATOM: str, Kind.OPTIONAL: frozenset, Kind.SET: frozenset, Kind.MAP: dict,
}  # fmt: skip


def new_row(table: str, columns: dict[str, Any]) -> Row:
    """A whole row from an update2 `initial`/`insert` (columns at their default are left out).

    Both ATOM columns we read are strings, whose default is "".
    """
    row: Row = {}
    for column, kind in COLUMNS[table].items():
        value = columns.get(column)
        if value is None:
            row[column] = _DEFAULTS[kind]()
        elif kind is Kind.ATOM:
            row[column] = _atom(value, _type(table, column))
        elif kind in (Kind.OPTIONAL, Kind.SET):
            row[column] = _elements(value, _type(table, column))
        else:
            row[column] = _pairs(value)
    return row


def modify_row(table: str, row: Row, diff: dict[str, Any]) -> None:
    """Apply an update2 `modify` as ovsdb-server means it (and the ovs IDL's `Datum.diff`).

    An atom, or an optional value that was set, is replaced; set elements are
    toggled; map keys are diffed.
    """
    kinds = COLUMNS[table]
    for column, value in diff.items():
        kind = kinds.get(column)
        if kind is Kind.ATOM:
            row[column] = _atom(value, _type(table, column))
        elif kind is Kind.OPTIONAL and row[column]:
            row[column] = _elements(value, _type(table, column))
        elif kind in (Kind.OPTIONAL, Kind.SET):
            row[column] = row[column] ^ _elements(value, _type(table, column))
        elif kind is Kind.MAP:
            row[column] = _map_diff(row[column], _pairs(value))


def _map_diff(old: dict[Any, Any], diff: dict[Any, Any]) -> dict[Any, Any]:
    """A key with its old value is deleted; any other pair is set."""
    new = dict(old)
    for key, value in diff.items():
        if new.get(key, _ABSENT) == value:
            del new[key]
        else:
            new[key] = value
    return new


_ABSENT = object()
