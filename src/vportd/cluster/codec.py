"""The one codec for what controllers exchange: vPort records and the vPort sync
(and the leader's records of VMs' moves, `MovesWire`).

A record is stored in etcd and carried by the leader's vPort sync in the same
JSON form. The models validate what they read (unknown fields and wrong types
are refused, so that the core never sees garbage) and are what the OpenAPI
schema of the east-west route is built from.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import to_json

from vportd.core.errors import InvalidMac, InvalidRequest
from vportd.core.flaps import MoveTimes
from vportd.core.messages import SyncAnswer, SyncComplete, SyncRefused, VPortSync
from vportd.core.model import Location, MigrationMark, Phase, VPortRecord, parse_mac

# Names, ids and MACs are short; a bound keeps a hostile body from costing much.
Name = Annotated[str, Field(min_length=1, max_length=256)]
Count = Annotated[int, Field(ge=0, le=2**63 - 1)]
OfPort = Annotated[int, Field(ge=0, le=2**32 - 1)]
Writer = Annotated[str, Field(max_length=256)]  # a version's writer ("": the oldest version)
Segment = Annotated[int, Field(ge=0, le=4095)]  # a VLAN tag


def _ip(text: str) -> str:
    # Checked but kept as sent: the address is part of a replicated version,
    # and a rewritten string would make two replicas differ under one version.
    ipaddress.ip_address(text)
    return text


def _mac(text: str) -> str:
    try:
        return parse_mac(text)
    except InvalidMac as err:
        raise ValueError(err.detail) from None


IP = Annotated[str, Field(max_length=64), AfterValidator(_ip)]
Mac = Annotated[str, Field(max_length=64), AfterValidator(_mac)]
PhaseName = Literal["synced", "arrived", "activated", "aborted", "failed", "completed"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LocationWire(Strict):
    ovs: Name | None
    port: OfPort | None
    port_name: Name | None
    link_up: bool
    seq: Count
    rev: Count
    writer: Writer
    ips: Annotated[list[IP], Field(max_length=64)] = []
    iface_id: Name | None = None
    vm_id: Name | None = None
    segment: Segment = 0  # left out when 0 (untagged): most records


class MarkWire(Strict):
    epoch: Count
    id: Name
    source: Name
    destination: Name
    seq: Count
    phase: PhaseName
    writer: Writer
    dest_port: OfPort | None = None
    dest_port_name: Name | None = None
    dest_segment: Segment | None = None  # left out until the destination port is known


class RecordWire(Strict):
    """A replicated vPort entry with its versions."""

    vm: Mac
    loc: LocationWire
    mig: MarkWire | None

    @classmethod
    def of(cls, rec: VPortRecord) -> RecordWire:
        """The wire form of a record the core made (valid already: not checked again)."""
        loc, m = rec.loc, rec.mig
        wire_loc = LocationWire.model_construct(
            _LOC_SET[bool(loc.segment)],
            ovs=loc.ovs, port=loc.port, port_name=loc.port_name, link_up=loc.link_up,
            seq=loc.seq, rev=loc.rev, writer=loc.writer, ips=list(loc.ips),
            iface_id=loc.iface_id, vm_id=loc.vm_id, segment=loc.segment,
        )  # fmt: skip
        mark = None
        if m is not None:
            mark = MarkWire.model_construct(
                _MARK_SET[m.dest_segment is not None],
                epoch=m.epoch, id=m.id, source=m.source, destination=m.destination, seq=m.seq,
                phase=m.phase.name.lower(), writer=m.writer, dest_port=m.dest_port,
                dest_port_name=m.dest_port_name, dest_segment=m.dest_segment,
            )  # fmt: skip
        return cls.model_construct(vm=rec.vm, loc=wire_loc, mig=mark)

    def to_core(self) -> VPortRecord:
        w = self.loc
        loc = Location(
            w.ovs, w.port, w.port_name, w.link_up, w.seq, w.rev, w.writer,
            tuple(w.ips), w.iface_id, w.vm_id, w.segment,
        )  # fmt: skip
        mark = None
        if self.mig is not None:
            m = self.mig
            mark = MigrationMark(
                m.epoch, m.id, m.source, m.destination, m.seq, Phase[m.phase.upper()],
                m.writer, m.dest_port, m.dest_port_name, m.dest_segment,
            )  # fmt: skip
        return VPortRecord(self.vm, loc, mark)


# The fields a record's JSON holds: a segment only when it is not 0 (most are
# untagged) and a destination's segment only once known, to keep records small.
_LOC_SET = (set(LocationWire.model_fields) - {"segment"}, set(LocationWire.model_fields))
_MARK_SET = (set(MarkWire.model_fields) - {"dest_segment"}, set(MarkWire.model_fields))


class SyncWire(Strict):
    """The body of the leader's vPort sync, `PUT /v1/peer/vports/{vm}`."""

    record: RecordWire
    migration_id: Name
    leader: Name

    @classmethod
    def of(cls, msg: VPortSync) -> SyncWire:
        record = RecordWire.of(msg.record)
        return cls.model_construct(record=record, migration_id=msg.migration_id, leader=msg.leader)

    def to_core(self, vm: str) -> VPortSync:
        """The sync, for the VM named by the route (which must be the record's)."""
        rec = self.record.to_core()
        if parse_mac(vm) != rec.vm:
            raise InvalidRequest(f"the route names VM {vm} but the record is {rec.vm}'s")
        return VPortSync(rec, self.migration_id, self.leader)


class SyncAnswerWire(BaseModel):
    """A peer's answer to a vPort sync: 200 sync complete, 409 refused."""

    status: Literal["sync-complete", "sync-refused"]
    migration_id: str
    vm: str
    controller: str
    reason: str | None = None

    @classmethod
    def of(cls, answer: SyncAnswer) -> SyncAnswerWire:
        ids = {
            "migration_id": answer.migration_id,
            "vm": answer.vm,
            "controller": answer.controller,
        }
        if isinstance(answer, SyncComplete):
            return cls(status="sync-complete", **ids)
        return cls(status="sync-refused", reason=answer.reason, **ids)

    def to_core(self) -> SyncAnswer:
        if self.status == "sync-complete":
            return SyncComplete(self.migration_id, self.vm, self.controller)
        return SyncRefused(self.migration_id, self.vm, self.controller, self.reason or "refused")


# Unix seconds, finite: a move's time as stored (`MovesWire`).
UnixTime = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class MovesWire(Strict):
    """A VM's recent moves (flap damping), `moves/{mac}`: when it moved, in unix seconds.

    Unix time, not the controller's clock: that one (monotonic) counts from each
    host's boot, so its times mean nothing to the next leader, on another host.
    A cluster's wall clocks agree to NTP's accuracy, far finer than a window of
    minutes, and a skew between two leaders shifts the damping by that skew
    only. (Ages relative to a wall time stored alongside would lean on the same
    wall clocks.)
    """

    vm: Mac
    moves: Annotated[list[UnixTime], Field(max_length=1_000_000)]  # oldest first


def encode_moves(moves: MoveTimes, to_unix: float) -> bytes | None:
    """A VM's record of moves as stored, its times plus `to_unix` (None: delete it)."""
    if not moves.times:
        return None
    unix = [t + to_unix for t in moves.times]
    return MovesWire.model_construct(vm=moves.vm, moves=unix).model_dump_json().encode()


def decode_moves(value: bytes, to_unix: float) -> MoveTimes:
    """A stored record of moves, its times minus `to_unix`; InvalidRequest if it is not one."""
    try:
        wire = MovesWire.model_validate_json(value)
    except ValidationError as err:
        raise InvalidRequest(f"malformed record of moves: {err.error_count()} errors") from None
    return MoveTimes(wire.vm, tuple(sorted(t - to_unix for t in wire.moves)))


def encode_record(rec: VPortRecord) -> bytes:
    """A record as stored in etcd: `RecordWire.of(rec)`'s JSON, byte for byte, made from
    plain dicts (the master of a booting host writes thousands: building the models
    first costs three times more)."""
    return to_json(_record_fields(rec))


def _record_fields(rec: VPortRecord) -> dict[str, object]:
    """`RecordWire.of(rec)` as a dict: its fields in order, a segment only when set."""
    loc, m = rec.loc, rec.mig
    fields: dict[str, object] = {
        "ovs": loc.ovs, "port": loc.port, "port_name": loc.port_name, "link_up": loc.link_up,
        "seq": loc.seq, "rev": loc.rev, "writer": loc.writer, "ips": list(loc.ips),
        "iface_id": loc.iface_id, "vm_id": loc.vm_id,
    }  # fmt: skip
    if loc.segment:
        fields["segment"] = loc.segment
    mark: dict[str, object] | None = None
    if m is not None:
        mark = {
            "epoch": m.epoch, "id": m.id, "source": m.source, "destination": m.destination,
            "seq": m.seq, "phase": m.phase.name.lower(), "writer": m.writer,
            "dest_port": m.dest_port, "dest_port_name": m.dest_port_name,
        }  # fmt: skip
        if m.dest_segment is not None:
            mark["dest_segment"] = m.dest_segment
    return {"vm": rec.vm, "loc": fields, "mig": mark}


def decode_record(value: bytes | str) -> VPortRecord:
    """A stored record; InvalidRequest if it is not one."""
    try:
        return RecordWire.model_validate_json(value).to_core()
    except ValidationError as err:
        raise InvalidRequest(f"malformed vPort record: {err.error_count()} errors") from None
