"""How much each fuzzer sends, and where the run's summary goes.

The tier's counts keep `make test` to a few minutes; `VPORTD_FUZZ_SCALE=N`
raises every count to at least N (`vportctl bench --suite fuzz` sets 10,000).
`VPORTD_FUZZ_REPORT=PATH` makes each fuzzer add its counts to the JSON
summary at PATH (the bench reads it); unset, nothing is written. Every
random choice derives from one seed, `SEED` unless `VPORTD_FUZZ_SEED` gives
another (to explore): a run is repeatable.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCALE = "VPORTD_FUZZ_SCALE"
REPORT = "VPORTD_FUZZ_REPORT"
SEEDED = "VPORTD_FUZZ_SEED"
SEED = 20240601


@dataclass(frozen=True)
class Budget:
    """Cases each fuzzer sends: REST requests, OpenFlow messages, OVSDB mutations."""

    rest: int = 2000
    openflow: int = 2000
    ovsdb: int = 1000

    def at_least(self, count: int) -> Budget:
        return Budget(max(self.rest, count), max(self.openflow, count), max(self.ovsdb, count))


def budget(environ: dict[str, str] | None = None) -> Budget:
    """The counts for this run (module docstring)."""
    env = os.environ if environ is None else environ
    raw = env.get(SCALE, "").strip()
    if not raw:
        return Budget()
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{SCALE}={raw!r}: a positive number of cases")
    return Budget().at_least(int(raw))


def seed(environ: dict[str, str] | None = None) -> int:
    """The run's seed (module docstring)."""
    env = os.environ if environ is None else environ
    raw = env.get(SEEDED, "").strip()
    if raw and not raw.isdigit():
        raise ValueError(f"{SEEDED}={raw!r}: a number")
    return int(raw) if raw else SEED


def report(section: str, results: dict[str, Any], environ: dict[str, str] | None = None) -> None:
    """Add one fuzzer's results to the summary file, if the run asks for one."""
    env = os.environ if environ is None else environ
    where = env.get(REPORT, "").strip()
    if not where:
        return
    path = Path(where)
    summary: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    summary[section] = results
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
