"""`vportctl bench --suite southbound`: build each bed, measure, write the report."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from vportd_lab.bench.doc import write_markdown
from vportd_lab.bench.machine import load_average, machine
from vportd_lab.bench.southbound.bed import fabric
from vportd_lab.bench.southbound.measure import flow_install, log, port_latency, vsctl_floor
from vportd_lab.bench.southbound.report import markdown, summary
from vportd_lab.bench.southbound.results import Result
from vportd_lab.bench.southbound.vmms import Vsctl, ovsdb_vmm

RESULTS = Path("bench-results") / "southbound.json"
PORTS, SWITCHES, FLOOR_RUNS = 1000, 10, 50


async def bench(
    ports: int = PORTS, switches: int = SWITCHES, floor_runs: int = FLOOR_RUNS
) -> Result:
    """Build each bed, measure, tear it down; nothing is printed or written."""
    if shutil.which("ovs-vswitchd") is None:
        raise RuntimeError("Open vSwitch is not installed (make env installs it)")
    mach = machine()
    async with fabric(switches) as bed:
        latency, raw = await port_latency(bed, ports, Vsctl(bed))
        install = await flow_install(bed, ports)
    floor, floor_raw = await vsctl_floor(floor_runs)
    async with fabric(switches) as bed, ovsdb_vmm(bed) as vmm:
        persistent, persistent_raw = await port_latency(bed, ports, vmm)
    mach["load_average_end"] = load_average()
    return Result(
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command=command(ports, switches, floor_runs), machine=mach, latency=latency,
        install=install, floor=floor, persistent=persistent, raw_ms=raw,
        persistent_raw_ms=persistent_raw, floor_raw_ms=floor_raw,
    )  # fmt: skip


def command(ports: int, switches: int, floor_runs: int = FLOOR_RUNS) -> str:
    base = "python -m vportd_lab.bench.southbound"
    defaults = f"--ports {PORTS} --switches {SWITCHES} --floor-runs {FLOOR_RUNS}"
    if (ports, switches, floor_runs) == (PORTS, SWITCHES, FLOOR_RUNS):
        return f"`{base}` (= `{defaults}`)"
    return f"`{base} --ports {ports} --switches {switches} --floor-runs {floor_runs}`"


def run_southbound_bench(
    output: Path, ports: int = PORTS, switches: int = SWITCHES, floor_runs: int = FLOOR_RUNS
) -> int:
    """Run, print a summary, write `output`'s section and the raw JSON next to it."""
    if ports < 1 or switches < 1 or floor_runs < 1:
        raise ValueError("ports, switches and floor runs must be >= 1")
    result = asyncio.run(bench(ports, switches, floor_runs))
    print(summary(result))
    write_markdown(output, markdown(result))
    raw = output.parent / RESULTS
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(asdict(result), indent=2) + "\n")
    print(f"  written: {output}, {raw}")
    ok = result.install.equal and result.install.restart_flow_mods == 0
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vportd_lab.bench.southbound",
        description="Latency from `ovs-vsctl add-port`, and from a transact on one OVSDB "
        "connection, to the core's table; ovs-vsctl's own floor; and the time to install the "
        "flows of every VM, on a private dummy-datapath Open vSwitch.",
    )
    parser.add_argument("--ports", type=int, default=PORTS, help=f"VM ports (default {PORTS})")
    parser.add_argument(
        "--switches", type=int, default=SWITCHES, help=f"bridges (default {SWITCHES})"
    )
    parser.add_argument(
        "--floor-runs", type=int, default=FLOOR_RUNS,
        help=f"runs of each ovs-vsctl floor measurement (default {FLOOR_RUNS})",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    logging.getLogger("vportd").setLevel(logging.ERROR)  # switches leaving at each stop
    log.setLevel(logging.INFO)
    return run_southbound_bench(args.output, args.ports, args.switches, args.floor_runs)
