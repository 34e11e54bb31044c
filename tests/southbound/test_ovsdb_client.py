"""The OVSDB client's pure parts: framing the byte stream, applying update2 diffs."""

from __future__ import annotations

import json

import pytest

from vportd.southbound.ovsdb.wire import Framer, OvsdbError, modify_row, new_row

U1, U2, U3 = ["uuid", "1" * 8], ["uuid", "2" * 8], ["uuid", "3" * 8]  # as JSON has them


def test_messages_split_anywhere_come_out_whole_and_in_order() -> None:
    messages = [
        {"id": k, "method": "update2", "params": [None, {"x": "é}{" * k}]} for k in range(5)
    ]
    stream = "  ".join(json.dumps(m, ensure_ascii=False) for m in messages).encode()
    for step in (1, 3, 7, len(stream)):
        framer, got = Framer(), []
        for at in range(0, len(stream), step):  # (splits UTF-8 sequences too)
            got += framer.feed(stream[at : at + step])
        assert got == messages


def test_a_stream_that_never_completes_a_message_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("vportd.southbound.ovsdb.wire.MAX_MESSAGE", 100)
    framer = Framer()
    framer.feed(b'{"id": 1, "result": "' + b"x" * 50)
    with pytest.raises(OvsdbError):
        framer.feed(b"x" * 100)


def test_an_inserted_row_has_defaults_for_the_columns_left_out() -> None:
    mac = ["map", [["attached-mac", "02:00:00:00:00:01"]]]
    row = new_row("Interface", {"name": "v1", "ofport_request": 5, "external_ids": mac})
    assert row["name"] == "v1" and row["type"] == ""
    assert row["ofport_request"] == frozenset({5}) and row["ofport"] == frozenset()
    assert row["external_ids"] == {"attached-mac": "02:00:00:00:00:01"} and row["options"] == {}


def test_modify_replaces_atoms_and_optionals_toggles_sets_and_diffs_maps() -> None:
    row = new_row("Bridge", {"name": "b", "ports": ["set", [U1, U2]]})
    modify_row("Bridge", row, {"ports": ["set", [U2, U3]], "datapath_id": "00000000000000aa"})
    assert row["ports"] == frozenset({U1[1], U3[1]})
    assert row["datapath_id"] == frozenset({"00000000000000aa"})
    modify_row("Bridge", row, {"datapath_id": "00000000000000bb", "name": "c"})
    assert row["datapath_id"] == frozenset({"00000000000000bb"}) and row["name"] == "c"
    modify_row("Bridge", row, {"datapath_id": ["set", []]})
    assert row["datapath_id"] == frozenset()

    iface = new_row("Interface", {"external_ids": ["map", [["a", "1"], ["b", "2"]]]})
    modify_row("Interface", iface, {"external_ids": ["map", [["a", "1"], ["b", "3"], ["c", "4"]]],
                                 "statistics": ["map", []]})  # fmt: skip
    assert iface["external_ids"] == {"b": "3", "c": "4"}
