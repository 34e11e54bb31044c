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
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

from vportd.core.errors import InvalidMac

_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_EVEN_HEX = frozenset("02468ace")  # second digit of a unicast MAC


# MACs seen already in normal unicast form (every event checks its VM's MAC, and
# a VM's events repeat it): a set look-up instead of the regular expression.
# Bounded; started again when full, as the topology's path cache.
_KNOWN_MACS: set[str] = set()
KNOWN_MACS_SIZE = 32_768


def parse_mac(text: object) -> str:
    """Normalise a MAC to lower-case colon form, or raise InvalidMac."""
    if text.__class__ is str and text in _KNOWN_MACS:
        return text
    if not isinstance(text, str):
        raise InvalidMac(f"a MAC address must be a string, not {type(text).__name__}")
    if text[1:2] in _EVEN_HEX and _MAC.fullmatch(text) is not None:
        # Already normal and unicast: most are so.
        if text.__class__ is str:
            if len(_KNOWN_MACS) >= KNOWN_MACS_SIZE:
                _KNOWN_MACS.clear()
            _KNOWN_MACS.add(text)
        return text
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


_ABORTED = Phase.ABORTED  # (an enum member looked up by name costs more than the comparison)


def slot_setters(cls: type, *names: str) -> tuple[Callable[[object, Any], None], ...]:
    """The setters of a slotted class's fields, for an `__init__` of a frozen dataclass.

    The generated one writes each field through `object.__setattr__` (frozen
    forbids plain assignment); calling the slot's descriptor directly costs
    about half as much, which counts for the objects every event makes.
    """
    return tuple(cls.__dict__[name].__set__ for name in names)


@dataclass(frozen=True, slots=True, init=False)
class Location:
    ovs: str | None
    port: int | None
    port_name: str | None
    link_up: bool
    seq: int
    rev: int
    writer: str
    ips: tuple[str, ...]
    iface_id: str | None
    vm_id: str | None
    segment: int  # the VM port's VLAN tag (0: untagged, the default segment)

    def __init__(  # noqa: PLR0917 (positional like the generated __init__ it replaces)
        self,
        ovs: str | None,
        port: int | None,
        port_name: str | None,
        link_up: bool,
        seq: int,
        rev: int,
        writer: str,
        ips: tuple[str, ...] = (),
        iface_id: str | None = None,
        vm_id: str | None = None,
        segment: int = 0,
    ) -> None:
        # Frozen: the generated __init__ writes each field through
        # object.__setattr__; the slots written directly cost half as much, and
        # every event and merge makes one of these.
        _LOC_OVS(self, ovs)
        _LOC_PORT(self, port)
        _LOC_PORT_NAME(self, port_name)
        _LOC_LINK_UP(self, link_up)
        _LOC_SEQ(self, seq)
        _LOC_REV(self, rev)
        _LOC_WRITER(self, writer)
        _LOC_IPS(self, ips)
        _LOC_IFACE_ID(self, iface_id)
        _LOC_VM_ID(self, vm_id)
        _LOC_SEGMENT(self, segment)

    @property
    def version(self) -> tuple[int, int, str]:
        return (self.seq, self.rev, self.writer)

    def at(self, ovs: str, port: int | None) -> bool:
        return self.ovs == ovs and (self.port is None or self.port == port)

    def relinked(self, writer: str, link_up: bool) -> Location:
        """Same move, next revision, with this link state."""
        return Location(
            self.ovs, self.port, self.port_name, link_up, self.seq, self.rev + 1, writer,
            self.ips, self.iface_id, self.vm_id, self.segment,
        )  # fmt: skip

    def gone(self, writer: str) -> Location:
        """The tombstone of a removed VM: the next revision, nowhere.

        Only the version outranks anything: the removed VM's port name,
        addresses and ids are dropped (nothing reads them: a VM that comes back
        is placed from its own port's report), which halves what a tombstone holds.
        """
        return Location(None, None, None, False, self.seq, self.rev + 1, writer)


(
    _LOC_OVS, _LOC_PORT, _LOC_PORT_NAME, _LOC_LINK_UP, _LOC_SEQ, _LOC_REV, _LOC_WRITER,
    _LOC_IPS, _LOC_IFACE_ID, _LOC_VM_ID, _LOC_SEGMENT,
) = slot_setters(
    Location, "ovs", "port", "port_name", "link_up", "seq", "rev", "writer",
    "ips", "iface_id", "vm_id", "segment",
)  # fmt: skip


@dataclass(frozen=True, slots=True, init=False)
class MigrationMark:
    epoch: int
    id: str
    source: str
    destination: str
    seq: int
    phase: Phase
    writer: str
    dest_port: int | None
    dest_port_name: str | None
    dest_segment: int | None  # the destination port's segment, once it is known

    def __init__(  # noqa: PLR0917 (as Location's)
        self,
        epoch: int,
        id: str,
        source: str,
        destination: str,
        seq: int,
        phase: Phase,
        writer: str,
        dest_port: int | None = None,
        dest_port_name: str | None = None,
        dest_segment: int | None = None,
    ) -> None:
        _MIG_EPOCH(self, epoch)  # as in Location.__init__
        _MIG_ID(self, id)
        _MIG_SOURCE(self, source)
        _MIG_DESTINATION(self, destination)
        _MIG_SEQ(self, seq)
        _MIG_PHASE(self, phase)
        _MIG_WRITER(self, writer)
        _MIG_DEST_PORT(self, dest_port)
        _MIG_DEST_PORT_NAME(self, dest_port_name)
        _MIG_DEST_SEGMENT(self, dest_segment)

    @property
    def version(self) -> tuple[int, int, str, int, str]:
        port = -1 if self.dest_port is None else self.dest_port
        return (self.epoch, self.phase, self.writer, port, self.id)

    def advance(self, phase: Phase, writer: str) -> MigrationMark:
        """The same migration in a later phase."""
        return self.at_port(phase, writer, self.dest_port, self.dest_port_name, self.dest_segment)

    def at_port(
        self,
        phase: Phase,
        writer: str,
        dest_port: int | None,
        dest_port_name: str | None,
        dest_segment: int | None,
    ) -> MigrationMark:
        """The same migration in a later phase, with the VM's port at the destination."""
        return MigrationMark(
            self.epoch, self.id, self.source, self.destination, self.seq, phase, writer,
            dest_port, dest_port_name, dest_segment,
        )  # fmt: skip

    def segment_differs(self, segment: int) -> bool:
        """Whether the destination port is known to be in another segment than `segment`."""
        return self.dest_segment is not None and self.dest_segment != segment


(
    _MIG_EPOCH, _MIG_ID, _MIG_SOURCE, _MIG_DESTINATION, _MIG_SEQ, _MIG_PHASE, _MIG_WRITER,
    _MIG_DEST_PORT, _MIG_DEST_PORT_NAME, _MIG_DEST_SEGMENT,
) = slot_setters(
    MigrationMark, "epoch", "id", "source", "destination", "seq", "phase", "writer",
    "dest_port", "dest_port_name", "dest_segment",
)  # fmt: skip


@dataclass(frozen=True, slots=True, init=False)
class VPortRecord:
    """One VM's entry: what every controller of the cluster holds (claim 1)."""

    vm: str
    loc: Location
    mig: MigrationMark | None

    def __init__(self, vm: str, loc: Location, mig: MigrationMark | None = None) -> None:
        _REC_VM(self, vm)  # as in Location.__init__
        _REC_LOC(self, loc)
        _REC_MIG(self, mig)

    @property
    def present(self) -> bool:
        return self.loc.ovs is not None

    @property
    def migrating(self) -> bool:
        mig = self.mig
        return mig is not None and mig.phase < _ABORTED  # (the enum member held in a global: hot)

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
        loc = b if b is not a and _newer(b, a) else a
        mig = self.mig if other.mig is self.mig else _later_mark(self.mig, other.mig)
        if loc is self.loc and mig is self.mig:
            return self
        if loc is other.loc and mig is other.mig:
            return other
        return VPortRecord(self.vm, loc, mig)


_REC_VM, _REC_LOC, _REC_MIG = slot_setters(VPortRecord, "vm", "loc", "mig")


def _newer(b: Location, a: Location) -> bool:
    """`b.version > a.version`, without making the tuples (every peer update asks)."""
    if b.seq != a.seq:
        return b.seq > a.seq
    if b.rev != a.rev:
        return b.rev > a.rev
    return b.writer > a.writer


def _later_mark(a: MigrationMark | None, b: MigrationMark | None) -> MigrationMark | None:
    if a is None:
        return b
    if b is None:
        return a
    return b if b.version > a.version else a
