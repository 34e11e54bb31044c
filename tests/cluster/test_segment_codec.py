"""A record's segment in the store: carried when set, left out when 0 (most records)."""

from __future__ import annotations

import pytest

from vportd.cluster.codec import decode_record, encode_record
from vportd.core.errors import InvalidRequest
from vportd.core.model import Location, MigrationMark, Phase, VPortRecord
from vportd.node.config import ConfigError, parse_config

VM = "02:00:00:00:00:01"


def test_an_untagged_record_has_no_segment_field() -> None:
    rec = VPortRecord(VM, Location("hv1", 3, "vnet0", True, 0, 0, "c1"))
    raw = encode_record(rec)
    assert b"segment" not in raw
    assert decode_record(raw) == rec


def test_a_tagged_record_and_its_destination_round_trip() -> None:
    mark = MigrationMark(1, "m-1", "hv1", "hv2", 1, Phase.ARRIVED, "c2", 4, "vnet4", 20)
    rec = VPortRecord(VM, Location("hv1", 3, "vnet0", True, 0, 0, "c1", segment=10), mark)
    raw = encode_record(rec)
    assert b'"segment":10' in raw and b'"dest_segment":20' in raw
    assert decode_record(raw) == rec


def test_a_segment_out_of_range_is_refused() -> None:
    raw = encode_record(VPortRecord(VM, Location("hv1", 3, "vnet0", True, 0, 0, "c1", segment=9)))
    with pytest.raises(InvalidRequest):
        decode_record(raw.replace(b'"segment":9', b'"segment":5000'))


def test_config_segments() -> None:
    base = '[controller]\nid = "c1"\n'
    config = parse_config(base + '[[segments.map]]\ntag = 10\nvni = 5010\nname = "web"\n')
    assert config.segments.segment_map().vni(10) == 5010
    twice = "[[segments.map]]\ntag = 10\nvni = 5010\n[[segments.map]]\ntag = 11\nvni = 5010\n"
    with pytest.raises(ConfigError, match=r"segments\.map: segments 10 and 11 have the same VNI"):
        parse_config(base + twice)
