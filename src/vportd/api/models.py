"""The REST bodies of DESIGN §4 as pydantic models: what the edge accepts and shows.

Request models refuse unknown fields and wrong types (`extra="forbid"`,
strict JSON types), so that the core never sees garbage; they are also what
the OpenAPI schema at `/docs` is built from. Conversions to the core's types
go through `core.wire`, the one place that knows the REST form of a message.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from vportd.core.errors import InvalidMac
from vportd.core.model import parse_mac

# Names, ids and MACs are short; a bound keeps a hostile body from costing much.
Name = Annotated[str, Field(min_length=1, max_length=256)]
Count = Annotated[int, Field(ge=0, le=2**63 - 1)]
OfPort = Annotated[int, Field(ge=0, le=2**32 - 1)]

_BARE = re.compile(r"[0-9a-fA-F]{12}")
_CISCO = re.compile(r"[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}")


def normalise_mac(text: str) -> str:
    """Any common MAC form (colons, dashes, Cisco dots, bare hex) in lower-case colon form.

    Raises InvalidMac (a 400) for anything else.
    """
    raw = text.strip()
    if _BARE.fullmatch(raw) or _CISCO.fullmatch(raw):
        digits = raw.replace(".", "")
        raw = ":".join(digits[i : i + 2] for i in range(0, 12, 2))
    return parse_mac(raw)


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


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# -- northbound ---------------------------------------------------------------
class NotifyBody(_In):
    """The VMM's migration notify: a VM (MAC, any common form) and two OVS (name or dpid)."""

    vm: Annotated[str, Field(max_length=64)]
    source: Name
    destination: Name


MigrationState = Literal["preparing", "ready", "activated", "completed", "aborted", "failed"]


class MigrationOut(BaseModel):
    id: str
    vm: str
    source: str
    destination: str
    state: MigrationState
    seq: int
    reason: str | None = None


class VPortOut(BaseModel):
    vm: str
    ips: list[str]
    ovs: str | None
    dpid: str | None = Field(description="the OVS's datapath id, 16 hex digits")
    port: int | None
    port_name: str | None
    iface_id: str | None
    vm_id: str | None
    migration_state: Literal["migrating", "not-migrating"]
    port_state: Literal["up", "down"]
    seq: int
    destination: str | None


class MemberOut(BaseModel):
    id: str
    api: str
    healthy: bool
    switches: list[str]


class ClusterOut(BaseModel):
    leader: str | None
    members: list[MemberOut]


class SwitchOut(BaseModel):
    name: str
    dpid: str
    master: str | None
    connected: bool
    generation: int | None


class HealthOut(BaseModel):
    ok: bool
    detail: dict[str, object]


class ErrorOut(BaseModel):
    error: str = Field(description="a stable machine-readable code")
    detail: str


# -- east-west ----------------------------------------------------------------
class LocationIn(_In):
    ovs: Name | None
    port: OfPort | None
    port_name: Name | None
    link_up: bool
    seq: Count
    rev: Count
    writer: Name
    ips: Annotated[list[IP], Field(max_length=64)] = []
    iface_id: Name | None = None
    vm_id: Name | None = None


class MarkIn(_In):
    epoch: Count
    id: Name
    source: Name
    destination: Name
    seq: Count
    phase: Literal["synced", "arrived", "activated", "aborted", "failed", "completed"]
    writer: Name
    dest_port: OfPort | None = None
    dest_port_name: Name | None = None


class RecordIn(_In):
    """A replicated vPort entry with its versions (`wire.record_to_json`)."""

    vm: Mac
    loc: LocationIn
    mig: MarkIn | None


class VPortSyncBody(_In):
    record: RecordIn
    migration_id: Name
    leader: Name
    answer: bool


class PortEventBody(_In):
    kind: Literal["add", "modify", "delete"]
    reason: Literal["port", "vm-migration", "vm-gone", "vm-activated", "vm-moved"]
    record: RecordIn
    origin: Name


class PortEventBatch(_In):
    """Several port events, applied in order: a boot storm travels in few requests."""

    events: Annotated[list[PortEventBody], Field(max_length=100_000)]


class SyncAnswerOut(BaseModel):
    status: Literal["sync-complete", "sync-refused"]
    migration_id: str
    vm: str
    controller: str
    reason: str | None = None
