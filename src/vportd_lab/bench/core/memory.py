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

from vportd_lab.sim.cluster import SimCluster


def traced_bytes(roots: object, shared: Iterable[object]) -> int:
    """Bytes tracemalloc sees allocated to rebuild `roots` from a pickle of them.

    Objects in `shared` (and what only they reach) are left out: the pickle
    refers to them by id instead of copying them.
    """
    keep = {id(obj): obj for obj in shared}

    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> int | None:
            return id(obj) if id(obj) in keep else None

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


def walked_bytes(roots: Iterable[object], shared: Iterable[object]) -> int:
    """`sys.getsizeof` over every object reachable from `roots` but not from `shared`."""
    seen: set[int] = set()
    stack: list[object] = list(shared)
    while stack:  # everything the shared objects reach is not counted
        obj = stack.pop()
        if id(obj) not in seen and not isinstance(obj, _NOT_STATE):
            seen.add(id(obj))
            stack.extend(gc.get_referents(obj))
    total = 0
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or obj is None or isinstance(obj, (bool, *_NOT_STATE)):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


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
    """Each controller weighed whole (its table, flow compiler, topology, coordinator)."""
    per: dict[str, dict[str, int]] = {}
    for cid, ctl in sim.controllers.items():
        per[cid] = {
            "state_traced": traced_bytes(ctl, []),
            "state_walked": walked_bytes([ctl], []),
        }
    first = next(iter(sim.controllers.values()))
    records = first.records()
    live = sum(1 for r in records if r.present)
    return Memory(
        live_vports=live,
        tombstones=len(records) - live,
        per_controller=per,
        cluster_bytes=traced_bytes(list(sim.controllers.values()), []),
        topology_bytes=traced_bytes(sim.topology, []),
    )
