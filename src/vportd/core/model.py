"""The vPort entry (claim 1) and how two copies of it merge.

An entry is two registers, each with its own version, so that replicas converge
whatever order, delay or duplication their updates arrive with:

* `Location`: where the VM is (OVS, OpenFlow port, port name), its link state
  and addresses. Versioned by `(seq, rev, writer)`: `seq` grows with every move
  of the VM (EVPN MAC mobility, RFC 7432 §7.7), `rev` with every other change
  at the same place. A removed VM keeps a tombstone location (`ovs is None`).
* `MigrationMark`: the VM's latest migration as the cluster knows it, ordered by
  `(epoch, phase, ...)`; phases only move forward and every migration of a VM
  has a higher epoch than the one before.

`merge` keeps, per register, the larger version: it is commutative, associative
and idempotent. The states the patent names are derived: the entry is
`migrating` while its mark is open, and its port is `up` while migrating.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import IntEnum, StrEnum

from vportd.core.errors import InvalidMac

_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


def parse_mac(text: object) -> str:
    """Normalise a MAC to lower-case colon form, or raise InvalidMac."""
    if not isinstance(text, str):
        raise InvalidMac(f"a MAC address must be a string, not {type(text).__name__}")
    mac = text.strip().lower().replace("-", ":")
    if _MAC.fullmatch(mac) is None:
        raise InvalidMac(f"malformed MAC address {text!r} (expected aa:bb:cc:dd:ee:ff)")
    if int(mac[:2], 16) & 1:
        raise InvalidMac(f"{text!r} is a multicast address, not a VM's")
    return mac


def mac_to_int(mac: str) -> int:
    return int(mac.replace(":", ""), 16)


class MigrationState(StrEnum):
    MIGRATING = "migrating"
    NOT_MIGRATING = "not-migrating"


class PortState(StrEnum):
    UP = "up"
    DOWN = "down"


class Phase(IntEnum):
    """How far a VM's latest migration got, as the replicated mark records it.

    The order is the merge order: a later phase wins. Of the ending phases,
    COMPLETED ranks highest because a deleted source port is a physical fact
    that no abort can undo.
    """

    SYNCED = 1
    ARRIVED = 2
    ACTIVATED = 3
    ABORTED = 4
    FAILED = 5
    COMPLETED = 6

    @property
    def open(self) -> bool:
        return self < Phase.ABORTED


@dataclass(frozen=True, slots=True)
class Location:
    ovs: str | None
    port: int | None
    port_name: str | None
    link_up: bool
    seq: int
    rev: int
    writer: str
    ips: tuple[str, ...] = ()
    iface_id: str | None = None
    vm_id: str | None = None

    @property
    def version(self) -> tuple[int, int, str]:
        return (self.seq, self.rev, self.writer)

    def at(self, ovs: str, port: int | None) -> bool:
        return self.ovs == ovs and (self.port is None or self.port == port)

    def bump(self, writer: str, **changes: object) -> Location:
        """Same move, next revision: a change made in place."""
        return replace(self, rev=self.rev + 1, writer=writer, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class MigrationMark:
    epoch: int
    id: str
    source: str
    destination: str
    seq: int
    phase: Phase
    writer: str
    dest_port: int | None = None
    dest_port_name: str | None = None

    @property
    def version(self) -> tuple[int, int, str, int, str]:
        port = -1 if self.dest_port is None else self.dest_port
        return (self.epoch, self.phase, self.writer, port, self.id)

    def advance(self, phase: Phase, writer: str, **changes: object) -> MigrationMark:
        return replace(self, phase=phase, writer=writer, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class VPortRecord:
    """One VM's entry: what every controller of the cluster holds (claim 1)."""

    vm: str
    loc: Location
    mig: MigrationMark | None = None

    @property
    def present(self) -> bool:
        return self.loc.ovs is not None

    @property
    def migrating(self) -> bool:
        return self.mig is not None and self.mig.phase.open

    @property
    def migration_state(self) -> MigrationState:
        return MigrationState.MIGRATING if self.migrating else MigrationState.NOT_MIGRATING

    @property
    def port_state(self) -> PortState:
        # Claims 1 and 4: a migrating VM's port is up whatever its links say.
        up = self.migrating or self.loc.link_up
        return PortState.UP if up else PortState.DOWN

    @property
    def seq(self) -> int:
        return self.loc.seq

    @property
    def destination(self) -> str | None:
        return self.mig.destination if self.mig is not None and self.migrating else None

    def merge(self, other: VPortRecord) -> VPortRecord:
        """The join of two copies of the same VM's entry."""
        # Hot (every peer update): `version`s compared without the properties.
        a, b = self.loc, other.loc
        loc = b if b is not a and (b.seq, b.rev, b.writer) > (a.seq, a.rev, a.writer) else a
        mig = self.mig if other.mig is self.mig else _later_mark(self.mig, other.mig)
        if loc is self.loc and mig is self.mig:
            return self
        if loc is other.loc and mig is other.mig:
            return other
        return VPortRecord(self.vm, loc, mig)

    def dominates(self, other: VPortRecord) -> bool:
        """True when `other` carries nothing newer than this entry."""
        return self.merge(other) is self


def _later_mark(a: MigrationMark | None, b: MigrationMark | None) -> MigrationMark | None:
    if a is None:
        return b
    if b is None:
        return a
    return b if b.version > a.version else a
