"""The records', vPort syncs' and records of moves' JSON form: what the core makes goes
through unchanged, and anything malformed is refused before the core sees it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from vportd.cluster.codec import (
    RecordWire,
    SyncAnswerWire,
    SyncWire,
    decode_moves,
    decode_record,
    encode_moves,
    encode_record,
)
from vportd.core.errors import InvalidRequest
from vportd.core.flaps import MoveTimes
from vportd.core.messages import SyncComplete, SyncRefused, VPortSync
from vportd.core.model import Location, MigrationMark, Phase, VPortRecord

VM_A = "02:00:00:00:00:0a"
VM_B = "02:00:00:00:00:0b"
HERE = Location("hv1", 1, "tap1", True, 3, 2, "c1", ("10.0.0.9",), "iface-1", "vm-1")
MARK = MigrationMark(4, "02000000000a-4", "hv1", "hv2", 4, Phase.ARRIVED, "c2", 7, "tap7")
RECORDS = [
    VPortRecord(VM_A, HERE),
    VPortRecord(VM_A, HERE, MARK),
    VPortRecord(VM_A, HERE.gone("c1"), MARK.advance(Phase.COMPLETED, "c1")),
]


def sync_body() -> dict[str, Any]:
    sync = VPortSync(RECORDS[1], MARK.id, "c0")
    body: dict[str, Any] = json.loads(SyncWire.of(sync).model_dump_json())
    return body


@pytest.mark.parametrize("rec", RECORDS)
def test_a_record_is_stored_and_read_back_unchanged(rec: VPortRecord) -> None:
    assert decode_record(encode_record(rec)) == rec
    assert RecordWire.of(rec).to_core() == rec


TAGGED = Location("hv1", 3, "vnet0", False, 0, 0, "c1", (), None, None, 10)


@pytest.mark.parametrize(
    "rec",
    [
        *RECORDS,
        VPortRecord(VM_B, TAGGED),
        VPortRecord(
            VM_B,
            TAGGED,
            MigrationMark(1, "m", "hv1", "hv2", 1, Phase.ARRIVED, "c2", 4, "vnet4", 20),
        ),
        VPortRecord(VM_B, TAGGED, MigrationMark(1, "m", "hv1", "hv2", 1, Phase.SYNCED, "c2")),
    ],
)
def test_a_stored_record_is_its_wire_models_json_byte_for_byte(rec: VPortRecord) -> None:
    assert encode_record(rec) == RecordWire.of(rec).model_dump_json(exclude_unset=True).encode()


def test_a_vport_sync_and_its_answers_go_through_unchanged() -> None:
    sync = VPortSync(RECORDS[1], MARK.id, "c0")
    wire = SyncWire.model_validate_json(SyncWire.of(sync).model_dump_json())
    assert wire.to_core(VM_A) == sync
    assert wire.record.mig is not None and wire.record.mig.phase == "arrived"
    for answer in (
        SyncComplete(MARK.id, VM_A, "c1"),
        SyncRefused(MARK.id, VM_A, "c2", "VM 02:00:00:00:00:0a moved"),
    ):
        text = SyncAnswerWire.of(answer).model_dump_json()
        assert SyncAnswerWire.model_validate_json(text).to_core() == answer


def test_a_sync_for_another_vm_than_the_route_names_is_refused() -> None:
    wire = SyncWire.model_validate(sync_body())
    with pytest.raises(InvalidRequest, match=VM_B):
        wire.to_core(VM_B)


def _without_record(body: dict[str, Any]) -> None:
    del body["record"]


def _bad_vm(body: dict[str, Any]) -> None:
    body["record"]["vm"] = "nonsense"


def _unknown_field(body: dict[str, Any]) -> None:
    body["answer"] = True


def _bad_phase(body: dict[str, Any]) -> None:
    body["record"]["mig"]["phase"] = "exploded"


def _negative_seq(body: dict[str, Any]) -> None:
    body["record"]["loc"]["seq"] = -1


def _bad_address(body: dict[str, Any]) -> None:
    body["record"]["loc"]["ips"] = ["10.0.0.300"]


def _seq_as_text(body: dict[str, Any]) -> None:
    body["record"]["loc"]["seq"] = "3"


SPOILS = [
    _without_record, _bad_vm, _unknown_field, _bad_phase, _negative_seq, _bad_address, _seq_as_text,
]  # fmt: skip


@pytest.mark.parametrize("spoil", SPOILS)
def test_a_malformed_vport_sync_is_refused(spoil: Callable[[dict[str, Any]], None]) -> None:
    body = sync_body()
    spoil(body)
    with pytest.raises(ValidationError):
        SyncWire.model_validate_json(json.dumps(body))


@pytest.mark.parametrize(
    "value",
    [b"", b"{}", b"[]", b"not json", b'{"vm": "nonsense"}', json.dumps(sync_body()).encode()],
)
def test_a_malformed_stored_record_is_refused(value: bytes) -> None:
    with pytest.raises(InvalidRequest, match="malformed vPort record"):
        decode_record(value)


def test_a_record_of_moves_is_stored_in_unix_seconds_and_read_back_on_another_clock() -> None:
    moves = MoveTimes(VM_A, (10.0, 20.5))
    value = encode_moves(moves, 1_700_000_000.0)  # our clock + this = unix time
    assert value is not None
    assert json.loads(value) == {"vm": VM_A, "moves": [1_700_000_010.0, 1_700_000_020.5]}
    # Another controller's clock is 1000 s ahead of ours: the same moves, on its clock.
    assert decode_moves(value, 1_700_000_000.0 - 1000) == MoveTimes(VM_A, (1010.0, 1020.5))
    assert encode_moves(MoveTimes(VM_A, ()), 0.0) is None  # no moves: delete the record


@pytest.mark.parametrize(
    "value",
    [
        b"", b"{}", b"not json", b'{"vm": "nonsense", "moves": []}',
        b'{"vm": "02:00:00:00:00:0a", "moves": [-1]}',
        b'{"vm": "02:00:00:00:00:0a", "moves": ["1"]}',
        b'{"vm": "02:00:00:00:00:0a", "moves": [1], "more": 1}',
        b'{"vm": "02:00:00:00:00:0a", "moves": [1e999]}',
    ],
)  # fmt: skip
def test_a_malformed_record_of_moves_is_refused(value: bytes) -> None:
    with pytest.raises(InvalidRequest, match="malformed record of moves"):
        decode_moves(value, 0.0)


def test_stored_moves_in_any_order_and_as_integers_are_read_oldest_first() -> None:
    value = b'{"vm": "02-00-00-00-00-0A", "moves": [30, 10.5]}'
    assert decode_moves(value, 0.0) == MoveTimes(VM_A, (10.5, 30.0))
