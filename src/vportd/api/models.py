"""The northbound REST bodies of DESIGN §4 as pydantic models: what the edge accepts and shows.

Request models refuse unknown fields and wrong types (`extra="forbid"`,
strict JSON types), so that the core never sees garbage; they are also what
the OpenAPI schema at `/docs` is built from. The east-west bodies are the
cluster's codec (`cluster.codec`).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from vportd.api.service import ConflictView, SwitchRole
from vportd.cluster.codec import Name, Strict
from vportd.core.messages import DirectionDowntime, DowntimeReport, MigrationView
from vportd.core.model import VPortRecord, parse_mac

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


class NotifyBody(Strict):
    """The VMM's migration notify: a VM (MAC, any common form) and two OVS (name or dpid)."""

    vm: Annotated[str, Field(max_length=64)]
    source: Name
    destination: Name


# A downtime report's bounds: a few directions of a few seconds' packets each.
MAX_DIRECTIONS = 4
MAX_ARRIVALS = 5000
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class DirectionBody(Strict):
    """One direction of the VM's traffic across the migration, as measured."""

    name: Annotated[str, Field(min_length=1, max_length=64)] = Field(
        description="which direction, e.g. `vm -> peer`"
    )
    gap_s: Seconds = Field(description="its longest silence between two packets, seconds")
    lost: Annotated[int, Field(ge=0, le=2**53)] = Field(description="packets lost in all")
    arrivals: Annotated[list[Seconds], Field(max_length=MAX_ARRIVALS)] = Field(
        default_factory=list,
        description="when packets arrived, wall-clock unix seconds (for a plot; may be "
        "a window around the gap)",
    )

    def to_core(self) -> DirectionDowntime:
        return DirectionDowntime(self.name, self.gap_s, self.lost, tuple(self.arrivals))


class DowntimeBody(Strict):
    """What a VMM or the lab measured of a migration's traffic, per direction."""

    directions: Annotated[list[DirectionBody], Field(min_length=1, max_length=MAX_DIRECTIONS)]

    def to_core(self) -> DowntimeReport:
        return DowntimeReport(tuple(d.to_core() for d in self.directions))


class StepOut(BaseModel):
    step: str = Field(
        description="notify, sync <controller>, sync refused, ready (notify complete sent), "
        "activated, then completed, aborted or failed; adopted: a new leader took it over"
    )
    at: float = Field(description="when the leader took the step, wall-clock unix seconds")


class DirectionOut(BaseModel):
    name: str
    gap_s: float
    lost: int
    arrivals: list[float]


class DowntimeOut(BaseModel):
    directions: list[DirectionOut] = Field(
        description="as reported (`PUT /v1/migrations/{id}/downtime`); the leader keeps the "
        "arrivals of the newest 20 reports only"
    )

    @classmethod
    def of(cls, report: DowntimeReport) -> DowntimeOut:
        return cls.model_construct(directions=[
            DirectionOut.model_construct(
                name=d.name, gap_s=d.gap_s, lost=d.lost, arrivals=list(d.arrivals)
            )
            for d in report.directions
        ])  # fmt: skip


MigrationState = Literal["preparing", "ready", "activated", "completed", "aborted", "failed"]


class MigrationOut(BaseModel):
    id: str = Field(description="the migration's id, stable across retries of its notify")
    vm: str = Field(description="the VM's MAC")
    source: str = Field(description="the OVS the VM leaves")
    destination: str = Field(description="the OVS the VM goes to")
    state: MigrationState
    seq: int = Field(description="the VM's sequence number at the destination")
    reason: str | None = Field(default=None, description="why it was aborted, failed or forced")
    timeline: list[StepOut] = Field(
        default_factory=list, description="the steps the leader saw it take, in order"
    )
    downtime: DowntimeOut | None = Field(
        default=None, description="its traffic's downtime, if a VMM or the lab reported it"
    )

    @classmethod
    def of(cls, m: MigrationView) -> MigrationOut:
        return cls.model_construct(
            id=m.id, vm=m.vm, source=m.source, destination=m.destination,
            state=m.state, seq=m.seq, reason=m.reason,
            timeline=[StepOut.model_construct(step=s, at=at) for s, at in m.timeline],
            downtime=None if m.downtime is None else DowntimeOut.of(m.downtime),
        )  # fmt: skip


class PortRefOut(BaseModel):
    ovs: str | None
    port: int | None
    port_name: str | None


class ConflictOut(BaseModel):
    port: PortRefOut = Field(description="a second port up with this VM's MAC")
    seen_by: str = Field(description="the controller that masters that port's switch")


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
    segment: int = Field(0, description="the tenant segment: its port's VLAN tag (0: untagged)")
    conflicts: list[ConflictOut] = Field(
        default_factory=list,
        description="duplicate MACs: other ports up with this MAC while this one is up "
        "(the vPort stays here until one of them goes down or away)",
    )

    @classmethod
    def of(
        cls, rec: VPortRecord, dpid: str | None, conflicts: list[ConflictOut] | None = None
    ) -> VPortOut:
        loc = rec.loc
        return cls.model_construct(
            vm=rec.vm, ips=list(loc.ips), ovs=loc.ovs, dpid=dpid, port=loc.port,
            port_name=loc.port_name, iface_id=loc.iface_id, vm_id=loc.vm_id,
            migration_state=rec.migration_state.value, port_state=rec.port_state.value,
            seq=rec.seq, destination=rec.destination, segment=loc.segment,
            conflicts=conflicts or [],
        )  # fmt: skip

    @staticmethod
    def conflict(view: ConflictView) -> ConflictOut:
        c = view.claimant
        port = PortRefOut(ovs=c.ovs, port=c.port, port_name=c.port_name)
        return ConflictOut(port=port, seen_by=view.seen_by)


class MemberOut(BaseModel):
    id: str
    api: str
    healthy: bool
    switches: list[str] = Field(description="datapath ids of the switches it masters")
    switch_names: list[str] = Field(description="their names, in the same order")


class ClusterOut(BaseModel):
    leader: str | None
    members: list[MemberOut]
    session: bool = Field(
        description="whether the answering controller holds an etcd session: without "
        "one, the leader and members are what it last saw, not what holds now"
    )
    stale_since: datetime | None = Field(
        description="when the answering controller's last etcd session ended (UTC), "
        "while it has none"
    )


class SwitchOut(BaseModel):
    name: str
    dpid: str
    master: str | None
    connected: bool = Field(description="connected to the answering controller")
    role: SwitchRole = Field(
        description="the answering controller's part: master (flows adopted), adopting "
        "(it masters the switch, flows not read yet), slave (another controller masters "
        "it), equal (nobody does yet), disconnected (no OpenFlow channel to it)"
    )
    generation: int | None


class HealthOut(BaseModel):
    ok: bool
    detail: dict[str, object]


class ErrorOut(BaseModel):
    error: str = Field(description="a stable machine-readable code")
    detail: str
