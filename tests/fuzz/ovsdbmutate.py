"""What the OVSDB fuzzer sends: mutations of the messages an OVSDB server sends, and garbage.

The seeds are real messages of `FakeOvsdb` to a monitor (its monitor reply
and update2 notifications, `capture`), and an echo request. `mutate` picks
one to three spots in a message's JSON tree and, at each, replaces the value
with one of another type, drops or adds a key or an element, renames a key
(an unknown table, column or operation), spoils a uuid or an OVSDB
set/map/uuid form, or gives a row two operations. `frame` then either
encodes it as a server would or spoils the framing: a message split over
two writes, one cut short (the server then hangs up), bytes that are not
UTF-8, text that is not JSON, a JSON value that is not an object, nesting
far deeper than any message. All of it is a function of a `random.Random`:
a run is repeatable.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Json = Any
Path = tuple[str | int, ...]

WEIRD: list[Json] = [
    0, -1, 1, 65534, 2**31, 2**64, -(2**63), 1.5, float("1e308"), True, False, None, "",
    "x" * 300, "hv0", "hv1", "-1", "zz", "0000000000000001", "ffffffffffffffffffff",
    "02:00:00:00:00:0a", "not-a-mac", "up", "down", "patch", [], {}, ["set"], ["set", 5],
    ["set", [["set", []]]], ["map"], ["map", 5], ["map", [[1]]], ["map", [["k", ["uuid"]]]],
    ["uuid"], ["uuid", 5], ["named-uuid", "x"], ["set", [1, "a", None]], [[["deep"]]],
    {"a": 1}, {"initial": {}}, {"modify": None}, {"delete": 1},
]  # fmt: skip
NAMES = [
    "Bogus", "Interface2", "ofport2", "upsert", "", "name", "ports", "interfaces", "initial",
    "insert", "modify", "delete", "external_ids", "datapath_id", "not-a-uuid",
    "00000000-0000-0000-0000-000000000000",
]  # fmt: skip


def _paths(tree: Json, at: Path = ()) -> list[Path]:
    """Every spot in a JSON tree (the root included)."""
    found = [at]
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += _paths(value, (*at, key))
    elif isinstance(tree, list):
        for n, value in enumerate(tree):
            found += _paths(value, (*at, n))
    return found


def _get(tree: Json, path: Path) -> Json:
    for step in path:
        tree = tree[step]
    return tree


def _parent(tree: Json, path: Path) -> tuple[Json, str | int]:
    return _get(tree, path[:-1]), path[-1]


def _replace(rng: random.Random, tree: Json, path: Path) -> Json:
    value = copy.deepcopy(rng.choice(WEIRD))
    if not path:
        return value
    parent, key = _parent(tree, path)
    parent[key] = value
    return tree


def _drop(rng: random.Random, tree: Json, path: Path) -> Json:
    if not path:
        return tree
    parent, key = _parent(tree, path)
    del parent[key]
    return tree


def _add(rng: random.Random, tree: Json, path: Path) -> Json:
    node = _get(tree, path)
    if isinstance(node, dict):
        node[rng.choice(NAMES)] = copy.deepcopy(rng.choice(WEIRD))
    elif isinstance(node, list):
        node.insert(rng.randrange(len(node) + 1), copy.deepcopy(rng.choice(WEIRD)))
    return tree


def _rename(rng: random.Random, tree: Json, path: Path) -> Json:
    """A key renamed: an unknown table, column, operation, or a spoilt uuid."""
    if not path or not isinstance(path[-1], str):
        return tree
    parent, key = _parent(tree, path)
    parent[rng.choice([*NAMES, str(key) + "x", str(key).upper()])] = parent.pop(key)
    return tree


def _two_operations(rng: random.Random, tree: Json, path: Path) -> Json:
    """A row update with a second operation beside its own."""
    node = _get(tree, path)
    if isinstance(node, dict) and node and set(node) <= {"initial", "insert", "modify", "delete"}:
        extra = rng.choice([k for k in ("initial", "insert", "modify", "delete") if k not in node])
        node[extra] = copy.deepcopy(next(iter(node.values())))
    return tree


def _duplicate(rng: random.Random, tree: Json, path: Path) -> Json:
    """A dict entry repeated under a new key (a row under a second uuid, say)."""
    node = _get(tree, path)
    if isinstance(node, dict) and node:
        key = rng.choice(sorted(node, key=str))
        node[f"{key}-{rng.randrange(100)}"] = copy.deepcopy(node[key])
    return tree


Operator = Callable[[random.Random, Json, Path], Json]
OPERATORS: dict[str, Operator] = {
    "replace": _replace, "drop": _drop, "add": _add, "rename": _rename,
    "two operations": _two_operations, "duplicate": _duplicate,
}  # fmt: skip


def mutate(rng: random.Random, message: Json) -> tuple[Json, list[str]]:
    """A mutated deep copy of `message` and the operators applied (module docstring)."""
    tree = copy.deepcopy(message)
    names = [rng.choice(sorted(OPERATORS)) for _ in range(rng.choice((1, 1, 2, 3)))]
    for name in names:
        tree = OPERATORS[name](rng, tree, rng.choice(_paths(tree)))
    return tree, names


# -- framing ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Framed:
    """The bytes to send, in separate writes; whether the server then hangs up."""

    pieces: tuple[bytes, ...]
    name: str | None = None  # the spoilt framing's; None: as a server frames it
    hang_up: bool = False


def _split(rng: random.Random, message: Json) -> Framed:
    raw = json.dumps(message).encode()
    at = rng.randrange(1, max(len(raw), 2))
    return Framed((raw[:at], raw[at:]), "split in two writes")


def _cut(rng: random.Random, message: Json) -> Framed:
    raw = json.dumps(message).encode()
    return Framed((raw[: rng.randrange(1, max(len(raw), 2))],), "cut, then hang up", True)


def _not_utf8(rng: random.Random, message: Json) -> Framed:
    raw = bytearray(json.dumps(message).encode())
    raw.insert(rng.randrange(len(raw) + 1), rng.choice((0xFF, 0xC3, 0x80, 0xFE)))
    return Framed((bytes(raw),), "not UTF-8")


def _not_json(rng: random.Random, message: Json) -> Framed:
    bad = (b"xyz}", b"}{", b"{]}", b"{'a': 1}", b'{"a" 1}', b"{\x00}", b"nul}")
    return Framed((rng.choice(bad),), "not JSON")


def _not_an_object(rng: random.Random, message: Json) -> Framed:
    value = rng.choice([[message], 5, "update2", None, [], True])
    return Framed((json.dumps(value).encode() + b"{}",), "not an object")


def _deep(rng: random.Random, message: Json) -> Framed:
    depth = rng.choice((1000, 100_000))
    raw = b'{"id": null, "method": "update2", "params": ' + b"[" * depth + b"]" * depth + b"}"
    return Framed((raw,), "nested deep")


FRAMINGS: dict[str, Callable[[random.Random, Json], Framed]] = {
    "split": _split, "cut": _cut, "not UTF-8": _not_utf8, "not JSON": _not_json,
    "not an object": _not_an_object, "nested deep": _deep,
}  # fmt: skip


def frame(rng: random.Random, message: Json) -> Framed:
    """Mostly the message as a server encodes it, else a spoilt framing (module docstring)."""
    if rng.random() < 0.85:
        return Framed((json.dumps(message).encode(),))
    return FRAMINGS[rng.choice(sorted(FRAMINGS))](rng, message)
