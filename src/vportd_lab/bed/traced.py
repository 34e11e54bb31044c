"""`vportd` with two instruments for measurements: `python -m vportd_lab.bed.traced --config FILE`.

The instruments are switched on by environment variables, so that the
controller's code stays as it ships:

- `VPORTD_TRACE=FILE`: one line `MONOTONIC_NS MAC ORIGIN` the first time each
  VM's entry is in this controller's table (ORIGIN: `own` from its OVS, or
  `store` from the etcd watch); CLOCK_MONOTONIC is one clock for
  every process of the machine, so a benchmark compares these times with its own.
- `VPORTD_PROFILE=FILE`: cProfile over the whole run, its stats written to FILE
  when the process ends on SIGTERM.
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import sys
import time
from collections.abc import Sequence
from typing import IO

from vportd.core.messages import Output, PortEvent
from vportd.core.model import VPortRecord
from vportd.node.daemon import main as daemon_main
from vportd.node.runtime import Runtime

TRACE_ENV = "VPORTD_TRACE"
PROFILE_ENV = "VPORTD_PROFILE"


class _Tracer:
    """Writes the first time each VM's entry is in the table (see the module doc)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.seen: set[str] = set()
        self.lines: list[str] = []

    def check(self, runtime: Runtime, vm: str, origin: str) -> None:
        if vm not in self.seen and runtime.core.entry(vm) is not None:
            self.seen.add(vm)
            if not self.lines:
                asyncio.get_running_loop().call_soon(self.flush)
            self.lines.append(f"{time.monotonic_ns()} {vm} {origin}\n")

    def flush(self) -> None:
        # Once per step of the loop, not once per entry (a boot storm makes
        # thousands in one step): a benchmark reads the file while the controller runs.
        self.out.write("".join(self.lines))
        self.out.flush()
        self.lines.clear()


def _install_tracer(path: str) -> None:
    tracer = _Tracer(open(path, "a"))  # noqa: SIM115 (lives as long as the process)
    port_event, stored = Runtime.port_event, Runtime.stored

    def traced_port_event(self: Runtime, ev: PortEvent) -> Output[None]:
        out = port_event(self, ev)
        tracer.check(self, ev.mac, "own")
        return out

    def traced_stored(self: Runtime, records: Sequence[VPortRecord]) -> None:
        stored(self, records)
        for rec in records:
            tracer.check(self, rec.vm, "store")

    # Wrapping the two inputs that can create an entry, only in this entry point.
    Runtime.port_event = traced_port_event  # type: ignore[method-assign]
    Runtime.stored = traced_stored  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    """`vportd` with the instruments the environment asks for."""
    trace, profile = os.environ.get(TRACE_ENV), os.environ.get(PROFILE_ENV)
    if trace:
        _install_tracer(trace)
    if not profile:
        return daemon_main(argv)
    profiler = cProfile.Profile()
    try:
        rc: int = profiler.runcall(daemon_main, argv)
    finally:
        profiler.dump_stats(profile)
    return rc


if __name__ == "__main__":
    sys.exit(main())
