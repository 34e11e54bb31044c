"""The lab's state file, `DIR/lab.json`: what `lab up` asked for and what it created.

It is an intent log: a namespace, veth or bridge is recorded *before* it is
created and the file is rewritten atomically (write, fsync, rename) after each
step, so after a crash the file names everything that may exist. The layout
itself is not stored: it is recomputed from the recorded options by
`plan.make_plan`, which is deterministic; the only departures from it are the
VMs that `lab migrate` moved (`placements`: where each one is now) and the
migration in progress, if any (`migration`: both veths, recorded before the
new one is created, so that a crash mid-migration leaves nothing `lab down`
or the next `lab migrate` cannot find). `lab down` also works when this file
is missing or unreadable (it then falls back to the lab's naming pattern and
marks, see `bed.down`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from vportd_lab.bed.plan import AWARE, GENEVE, PATCH, Plan, make_plan

VERSION = 1
STARTING, UP = "starting", "up"


class StateError(Exception):
    """The state file exists but cannot be used (corrupt, truncated, other version)."""


@dataclass
class Options:
    hypervisors: int
    vms: int
    controllers: int
    openflow_port: int
    api_port: int
    # Picked free by `up` (the kernel's choice), then fixed for the lab's life.
    etcd_port: int = 2379
    etcd_peer_port: int = 2380
    mode: str = AWARE  # plan.MODES; a state file without a mode is `aware`
    tls_ovsdb_port: int | None = None  # `up --tls`: the OVSDB's ssl: port (picked free)
    fabric: str = PATCH  # plan.FABRICS; a state file without one is a patch lab
    segments: int = 1
    encap: str = GENEVE


@dataclass
class Placement:
    """Where `lab migrate` put a VM: its hypervisor and its host-side port there."""

    hypervisor: str
    port: int
    host_if: str


@dataclass
class Migration:
    """A `lab migrate` in progress (the VMM's view); `phase` is the last step begun."""

    vm: str
    source: str
    destination: str
    old_host_if: str
    new_host_if: str
    new_guest_if: str
    phase: str = "notify"
    migration_id: str | None = None


@dataclass
class State:
    dir: str
    options: Options
    phase: str = STARTING
    started_at: float = 0.0
    vportd: str = ""
    ovs_started: bool = False
    etcd_started: bool = False
    etcd_pid: int | None = None
    bridges: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    host_ifs: list[str] = field(default_factory=list)
    controllers: dict[str, int] = field(default_factory=dict)  # id -> pid
    placements: dict[str, Placement] = field(default_factory=dict)  # VM name -> where it is now
    migration: Migration | None = None
    version: int = VERSION

    def plan(self) -> Plan:
        """The layout, with every migrated VM where it is now."""
        o = self.options
        plan = make_plan(
            Path(self.dir), hypervisors=o.hypervisors, vms=o.vms, controllers=o.controllers,
            openflow_port=o.openflow_port, api_port=o.api_port, etcd_port=o.etcd_port,
            etcd_peer_port=o.etcd_peer_port, mode=o.mode, tls_ovsdb_port=o.tls_ovsdb_port,
            fabric=o.fabric, segments=o.segments, encap=o.encap,
        )  # fmt: skip
        return _placed(plan, self.placements) if self.placements else plan

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        data = json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)


def load(path: Path) -> State | None:
    """The state in `path`; None if there is none; StateError if it is unusable."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise StateError(f"{path}: cannot read: {err.strerror}") from None
    try:
        raw: dict[str, Any] = json.loads(text)
        if raw.get("version") != VERSION:
            raise StateError(f"{path}: state version {raw.get('version')!r}, expected {VERSION}")
        raw["options"] = Options(**raw["options"])
        raw["controllers"] = {str(k): int(v) for k, v in raw.get("controllers", {}).items()}
        raw["placements"] = {str(k): Placement(**v) for k, v in raw.get("placements", {}).items()}
        if raw.get("migration") is not None:
            raw["migration"] = Migration(**raw["migration"])
        return State(**raw)
    except StateError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise StateError(f"{path}: unreadable lab state ({err})") from None


def _placed(plan: Plan, placements: dict[str, Placement]) -> Plan:
    vms = tuple(
        replace(vm, hypervisor=p.hypervisor, port=p.port, host_if=p.host_if)
        if (p := placements.get(vm.name))
        else vm
        for vm in plan.vms
    )
    return replace(plan, vms=vms)
