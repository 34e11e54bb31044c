"""A record from the store's watch that the table holds already is known for one without
being merged; anything else (newer, older, another VM, garbage) is not."""

from __future__ import annotations

import json

from tests.cluster.support import at, mac
from vportd.cluster.node import _held
from vportd.core.model import VPortRecord
from vportd.core.table import VPortTable
from vportd.core.wire import record_to_json


def stored(rec: VPortRecord) -> object:
    """As the watch hands it over: the store's bytes, decoded."""
    return json.loads(json.dumps(record_to_json(rec)))


def test_only_the_very_record_held_is_known() -> None:
    table = VPortTable("c1")
    held = at(mac(1), seq=1, rev=2, writer="c0")
    table.apply_copy(held)
    assert _held(table, stored(held))
    assert not _held(table, stored(at(mac(1), seq=1, rev=3, writer="c0")))
    assert not _held(table, stored(at(mac(1), seq=1, rev=1, writer="c0")))
    assert not _held(table, stored(at(mac(2), seq=1, rev=2, writer="c0")))
    garbage: list[object] = [None, [], {"vm": ["x"]}, {"vm": 7}, {}]
    for data in garbage:
        assert not _held(table, data)
