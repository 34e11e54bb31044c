"""OVSDB data as `FakeOvsdb` holds and sends it: a schema subset, JSON values, update2 diffs.

The columns are those of vswitch.ovsschema (Open vSwitch 3.1) that vportd
reads or a test sets, with their types (`tests/fakes/test_ovsdb_real.py`
holds them to the installed schema). A column's value (a `Datum`) is a
sorted tuple: of atoms for a scalar, an optional value or a set, of (key,
value) pairs for a map. On the wire (RFC 7047 5.1) as ovsdb-server writes
it (`ovsdb_datum_to_json`): a map is always `["map", [[k, v], ...]]`, any other
value of exactly one element is that atom, else `["set", [...]]`; a uuid
atom is `["uuid", U]`. An update2 `modify` carries, as `ovsdb_datum_diff`
computes it, the new value of a column of at most one element, the
elements that came or went of a set, and of a map the keys that came or
changed with their new value and the keys that went with their old one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Atom = str | int | float | bool
Datum = tuple[Any, ...]  # sorted atoms, or sorted (key, value) pairs for a map
Row = dict[str, Datum]


@dataclass(frozen=True)
class ColumnType:
    key: str  # the atomic type: "string", "integer", "real", "boolean" or "uuid"
    value: str | None = None  # a map's value type
    min: int = 1
    max: int | None = 1  # None: unlimited

    @property
    def is_map(self) -> bool:
        return self.value is not None

    @property
    def composite(self) -> bool:
        """More than one element possible (ovsdb_type_is_composite): diffs are element-wise."""
        return self.max is None or self.max > 1

    def default(self) -> Datum:
        if self.min == 0 or self.key == "uuid":  # (a set of min 1 uuids is always given)
            return ()
        return ({"string": "", "integer": 0, "real": 0.0, "boolean": False}[self.key],)


_STRING = ColumnType("string")
_OPT_STRING = ColumnType("string", min=0)
_OPT_INT = ColumnType("integer", min=0)
_STR_MAP = ColumnType("string", "string", min=0, max=None)


def _refs() -> ColumnType:
    return ColumnType("uuid", min=0, max=None)


SCHEMA: Mapping[str, Mapping[str, ColumnType]] = {
    "Open_vSwitch": {
        "bridges": _refs(), "external_ids": _STR_MAP, "other_config": _STR_MAP,
        "cur_cfg": ColumnType("integer"), "next_cfg": ColumnType("integer"),
        "ovs_version": _OPT_STRING, "system_type": _OPT_STRING,
    },
    "Bridge": {
        "name": _STRING, "datapath_id": _OPT_STRING, "datapath_type": _STRING, "ports": _refs(),
        "external_ids": _STR_MAP, "other_config": _STR_MAP, "fail_mode": _OPT_STRING,
        "protocols": ColumnType("string", min=0, max=None), "controller": _refs(),
    },
    "Port": {
        "name": _STRING, "interfaces": ColumnType("uuid", min=1, max=None), "tag": _OPT_INT,
        "trunks": ColumnType("integer", min=0, max=4096), "external_ids": _STR_MAP,
        "other_config": _STR_MAP,
    },
    "Interface": {
        "name": _STRING, "type": _STRING, "ofport": _OPT_INT, "ofport_request": _OPT_INT,
        "options": _STR_MAP, "external_ids": _STR_MAP, "other_config": _STR_MAP,
        "link_state": _OPT_STRING, "admin_state": _OPT_STRING, "mac_in_use": _OPT_STRING,
        "mac": _OPT_STRING, "error": _OPT_STRING,
    },
}  # fmt: skip


def new_row(table: str) -> Row:
    """A row with every column at its default."""
    return {column: ctype.default() for column, ctype in SCHEMA[table].items()}


def datum(value: Any) -> Datum:
    """A Python value as a Datum: None -> empty, an atom, a set, or a mapping."""
    if value is None:
        return ()
    if isinstance(value, Mapping):
        return tuple(sorted((k, v) for k, v in value.items() if v is not None))
    if isinstance(value, set | frozenset | list | tuple):
        return tuple(sorted(value))
    return (value,)


def _atom_json(atom: Any, kind: str) -> Any:
    return ["uuid", atom] if kind == "uuid" else atom


def to_json(value: Datum, ctype: ColumnType) -> Any:
    """A Datum in OVSDB's JSON (module docstring)."""
    if ctype.value is not None:
        return ["map", [[_atom_json(k, ctype.key), _atom_json(v, ctype.value)] for k, v in value]]
    if len(value) == 1:
        return _atom_json(value[0], ctype.key)
    return ["set", [_atom_json(a, ctype.key) for a in value]]


def diff(old: Datum, new: Datum, ctype: ColumnType) -> Datum:
    """What an update2 `modify` carries for a column that changed (module docstring)."""
    if not ctype.composite:
        return new
    if ctype.is_map:
        before, after = dict(old), dict(new)
        changed = {k: v for k, v in after.items() if k not in before or before[k] != v}
        changed.update({k: v for k, v in before.items() if k not in after})
        return tuple(sorted(changed.items()))
    return tuple(sorted(set(old) ^ set(new)))


def row_json(row: Row, table: str, columns: tuple[str, ...]) -> dict[str, Any]:
    """A whole row for `initial` / `insert`: the columns not at their default."""
    types = SCHEMA[table]
    return {c: to_json(row[c], types[c]) for c in sorted(columns) if row[c] != types[c].default()}


def modify_json(old: Row, new: Row, table: str, columns: tuple[str, ...]) -> dict[str, Any]:
    """A `modify`: the diff of each requested column that changed (empty: none did)."""
    types = SCHEMA[table]
    return {
        c: to_json(diff(old[c], new[c], types[c]), types[c])
        for c in sorted(columns)
        if old[c] != new[c]
    }
