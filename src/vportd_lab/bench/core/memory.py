"""What a controller's state weighs: bytes to rebuild it (tracemalloc), and a getsizeof walk."""

from __future__ import annotations

import gc
import io
import pickle
import sys
import tracemalloc
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from types import BuiltinFunctionType, FunctionType, ModuleType
from typing import Any

from vportd.core.compiler import FlowCompiler
from vportd.core.coordinator import Coordinator
from vportd.core.table import VPortTable
from vportd.core.topology import Topology
from vportd_lab.sim.cluster import SimCluster


def traced_bytes(roots: object, leave_out: tuple[type, ...] = ()) -> int:
    """Bytes tracemalloc sees allocated to rebuild `roots` from a pickle of them.

    Objects of the types in `leave_out` (and what only they reach) are not
    counted: the pickle refers to them by id instead of copying them.
    """
    keep: dict[int, object] = {}

    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> int | None:
            if not isinstance(obj, leave_out):
                return None
            keep[id(obj)] = obj
            return id(obj)

    class _Unpickler(pickle.Unpickler):
        def persistent_load(self, pid: Any) -> object:
            return keep[pid]

    buf = io.BytesIO()
    _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(roots)
    data = buf.getvalue()
    del buf
    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        copy = _Unpickler(io.BytesIO(data)).load()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        if not was_tracing:
            tracemalloc.stop()
    del copy
    return after - before


_NOT_STATE = (type, ModuleType, FunctionType, BuiltinFunctionType, Enum)


def walked_bytes(roots: Iterable[object], leave_out: tuple[type, ...] = ()) -> int:
    """`sys.getsizeof` over every object reachable from `roots` but not through an
    object of a type in `leave_out`."""
    seen: set[int] = set()
    skip = (bool, *_NOT_STATE, *leave_out)
    total = 0
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or obj is None or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


# What a controller holds besides its vPort state: the topology (each controller's
# own copy, reported apart) and, on the leader, the migrations (reported apart).
NOT_VPORT_STATE = (Topology, Coordinator)


@dataclass
class Memory:
    live_vports: int
    tombstones: int
    per_controller: dict[str, dict[str, int]]
    cluster_bytes: int
    topology_bytes: int

    @property
    def worst_bytes_per_vport(self) -> float:
        worst = max(m["state_traced"] for m in self.per_controller.values())
        return worst / self.live_vports if self.live_vports else 0.0


def measure_memory(sim: SimCluster) -> Memory:
    """Each controller as a whole, its parts told apart by their types (see the module doc)."""
    per: dict[str, dict[str, int]] = {}
    for cid, ctl in sim.controllers.items():
        state = traced_bytes(ctl, NOT_VPORT_STATE)
        per[cid] = {
            "table_traced": traced_bytes(ctl, (*NOT_VPORT_STATE, FlowCompiler)),
            "flows_traced": traced_bytes(ctl, (*NOT_VPORT_STATE, VPortTable)),
            "state_traced": state,
            "state_walked": walked_bytes([ctl], NOT_VPORT_STATE),
            "coordinator_traced": traced_bytes(ctl, (Topology,)) - state if ctl.leading else 0,
        }
    first = next(iter(sim.controllers.values()))
    records = first.records()
    live = sum(1 for r in records if r.present)
    return Memory(
        live_vports=live,
        tombstones=len(records) - live,
        per_controller=per,
        cluster_bytes=traced_bytes(list(sim.controllers.values()), (Topology,)),
        topology_bytes=traced_bytes(first) - traced_bytes(first, (Topology,)),
    )
