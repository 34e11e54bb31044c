"""The stored and exchanged form of a vPort record: JSON bytes."""

from __future__ import annotations

import json

from vportd.core.model import VPortRecord
from vportd.core.wire import record_from_json, record_to_json


def encode_record(rec: VPortRecord) -> bytes:
    return json.dumps(record_to_json(rec), separators=(",", ":")).encode()


def decode_record(value: bytes | str) -> VPortRecord:
    return record_from_json(json.loads(value))
