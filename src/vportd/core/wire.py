"""The REST form of the core's messages (claims 7 and 9), as plain data.

`to_rest` turns a message into the request that carries it (method, path, JSON
body) per DESIGN §4; `from_rest` reads one back and validates it. No HTTP here:
the API and the peer client send and receive what these functions produce.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vportd.core.errors import InvalidRequest
from vportd.core.messages import (
    EventKind,
    MigrationView,
    PeerMessage,
    PortEventSync,
    Reason,
    SyncComplete,
    SyncRefused,
    VPortSync,
)
from vportd.core.model import Location, MigrationMark, Phase, VPortRecord, parse_mac

Json = dict[str, Any]
HTTP_OK = 200
HTTP_CONFLICT = 409


@dataclass(frozen=True, slots=True)
class RestCall:
    method: str
    path: str
    body: Json


@dataclass(frozen=True, slots=True)
class NotifyRequest:
    """The VMM's migration notify (claims 8 and 9)."""

    vm: str
    source: str
    destination: str


def notify_to_rest(req: NotifyRequest) -> RestCall:
    body = {"vm": req.vm, "source": req.source, "destination": req.destination}
    return RestCall("POST", "/v1/migrations", body)


def migration_to_json(m: MigrationView) -> Json:
    out: Json = {
        "id": m.id, "vm": m.vm, "source": m.source, "destination": m.destination,
        "state": m.state, "seq": m.seq,
    }  # fmt: skip
    if m.reason is not None:
        out["reason"] = m.reason
    return out


def vport_to_json(rec: VPortRecord) -> Json:
    """The vPort body of DESIGN §4, as the API shows an entry."""
    return {
        "vm": rec.vm, "ips": list(rec.loc.ips), "ovs": rec.loc.ovs, "port": rec.loc.port,
        "port_name": rec.loc.port_name, "iface_id": rec.loc.iface_id, "vm_id": rec.loc.vm_id,
        "migration_state": rec.migration_state.value, "port_state": rec.port_state.value,
        "seq": rec.seq, "destination": rec.destination,
    }  # fmt: skip


def record_to_json(rec: VPortRecord) -> Json:
    """The full replicated entry, versions included, for peers."""
    loc = rec.loc
    out: Json = {
        "vm": rec.vm,
        "loc": {
            "ovs": loc.ovs, "port": loc.port, "port_name": loc.port_name,
            "link_up": loc.link_up, "seq": loc.seq, "rev": loc.rev, "writer": loc.writer,
            "ips": list(loc.ips), "iface_id": loc.iface_id, "vm_id": loc.vm_id,
        },
        "mig": None,
    }  # fmt: skip
    if rec.mig is not None:
        m = rec.mig
        out["mig"] = {
            "epoch": m.epoch, "id": m.id, "source": m.source, "destination": m.destination,
            "seq": m.seq, "phase": m.phase.name.lower(), "writer": m.writer,
            "dest_port": m.dest_port, "dest_port_name": m.dest_port_name,
        }  # fmt: skip
    return out


def record_from_json(data: Json) -> VPortRecord:
    try:
        loc = Location(**{**data["loc"], "ips": tuple(data["loc"]["ips"])})
        mig = None
        if data["mig"] is not None:
            raw = data["mig"]
            mig = MigrationMark(**{**raw, "phase": Phase[str(raw["phase"]).upper()]})
        return VPortRecord(parse_mac(data["vm"]), loc, mig)
    except (KeyError, TypeError) as err:
        raise InvalidRequest(f"malformed vPort record: {err}") from None


def to_rest(msg: PeerMessage) -> RestCall:
    if isinstance(msg, VPortSync):
        body = {
            "record": record_to_json(msg.record), "migration_id": msg.migration_id,
            "leader": msg.leader, "answer": msg.answer,
        }  # fmt: skip
        return RestCall("PUT", f"/v1/peer/vports/{msg.record.vm}", body)
    if isinstance(msg, PortEventSync):
        body = {
            "kind": msg.kind.value, "reason": msg.reason.value,
            "record": record_to_json(msg.record), "origin": msg.origin,
        }  # fmt: skip
        return RestCall("POST", "/v1/peer/port-events", body)
    raise InvalidRequest(f"{type(msg).__name__} travels as the answer to a vPort sync")


@dataclass(frozen=True, slots=True)
class RestAnswer:
    status: int
    body: Json


def answer_to_rest(msg: SyncComplete | SyncRefused) -> RestAnswer:
    """Sync complete is the answer to the leader's PUT; a refusal is a 409."""
    body: Json = {"migration_id": msg.migration_id, "vm": msg.vm, "controller": msg.controller}
    if isinstance(msg, SyncComplete):
        return RestAnswer(HTTP_OK, {"status": "sync-complete", **body})
    return RestAnswer(HTTP_CONFLICT, {"status": "sync-refused", "reason": msg.reason, **body})


def answer_from_rest(answer: RestAnswer) -> SyncComplete | SyncRefused:
    b = answer.body
    try:
        ids = (str(b["migration_id"]), str(b["vm"]), str(b["controller"]))
        if answer.status == HTTP_OK and b["status"] == "sync-complete":
            return SyncComplete(*ids)
        return SyncRefused(*ids, str(b.get("reason", f"HTTP {answer.status}")))
    except KeyError as err:
        raise InvalidRequest(f"malformed sync answer: missing {err}") from None


def from_rest(call: RestCall) -> PeerMessage:
    b = call.body
    try:
        if call.method == "PUT" and call.path.startswith("/v1/peer/vports/"):
            rec = record_from_json(b["record"])
            if call.path.rsplit("/", 1)[1] != rec.vm:
                raise InvalidRequest("the path's VM and the record's VM differ")
            return VPortSync(rec, str(b["migration_id"]), str(b["leader"]), bool(b["answer"]))
        if call.path == "/v1/peer/port-events":
            rec = record_from_json(b["record"])
            return PortEventSync(EventKind(b["kind"]), Reason(b["reason"]), rec, str(b["origin"]))
    except (KeyError, ValueError) as err:
        raise InvalidRequest(f"malformed peer message: {err}") from None
    raise InvalidRequest(f"no peer message at {call.method} {call.path}")
