"""`vportctl bench --suite cluster`: the bed, the four parts in turn, the report."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from vportd_lab.bed.cluster import Cluster
from vportd_lab.bench.cluster.bed import BenchFabric, bed
from vportd_lab.bench.cluster.failover import failover
from vportd_lab.bench.cluster.figures import figures_line, ovsdb_sessions
from vportd_lab.bench.cluster.handshake import handshake, rotation
from vportd_lab.bench.cluster.propagation import propagation
from vportd_lab.bench.cluster.report import markdown, summary
from vportd_lab.bench.cluster.results import RESULTS, Result, Sizes
from vportd_lab.bench.cluster.storm import storm, storm_floor
from vportd_lab.bench.doc import write_markdown
from vportd_lab.bench.machine import machine

PARTS = frozenset({"handshake", "propagation", "failover", "storm"})

log = logging.getLogger("vportd_lab.bench.cluster")


async def _first_parts(
    c: Cluster[BenchFabric], sizes: Sizes, parts: frozenset[str], result: Result
) -> None:
    pairs = await rotation(c, 0x10000)
    if "handshake" in parts:
        for via in ("leader", "follower"):
            result.handshakes.append(await handshake(c, via, pairs, sizes.migrations))
            log.info("handshake via %s: %s", via, result.handshakes[-1].latency)
    if "propagation" in parts:
        result.propagation = await propagation(c, sizes.propagation, 0x20000)
        log.info("propagation: %s", result.propagation.cluster)
    if "failover" in parts:
        result.failover = await failover(c, sizes.failovers, pairs)


async def bench(sizes: Sizes, command: str, workdir: Path, parts: frozenset[str] = PARTS) -> Result:
    result = Result(machine(), command, one_ovs=sizes.one_ovs, hypervisors=sizes.switches)
    started = time.perf_counter()
    if "storm" in parts:
        result.storm_floor = await storm_floor(sizes)
        log.info("storm floor: %s", result.storm_floor)
    async with bed(sizes, workdir) as c:
        if parts - {"storm"}:
            await _first_parts(c, sizes, parts, result)
        if "storm" in parts:
            result.storm = await storm(c, sizes.storm, 0x100000)
            log.info("storm: %.0f ports/s", result.storm.rate)
        result.ovsdb_sessions = await ovsdb_sessions(c)
    result.wall_seconds = time.perf_counter() - started
    result.machine["load_average_end"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return result


def command(sizes: Sizes) -> str:
    if sizes == Sizes():
        return "`vportctl bench --suite cluster` (= `python -m vportd_lab.bench.cluster`)"
    return (
        f"`python -m vportd_lab.bench.cluster --migrations {sizes.migrations} --ports "
        f"{sizes.propagation} --storm {sizes.storm} --switches {sizes.switches} "
        f"--failovers {sizes.failovers}{' --one-ovs' if sizes.one_ovs else ''}`"
    )


def run_cluster_bench(
    output: Path, sizes: Sizes | None = None, parts: frozenset[str] = PARTS
) -> int:
    """Run, print a summary, write `output`'s section and the raw JSON next to it, and
    print the named figures as one JSON object on the last line.

    A run of only some parts writes no file: its section would drop the other
    parts' figures.
    """
    sizes = sizes or Sizes()
    with tempfile.TemporaryDirectory(prefix="vportd-cluster-") as tmp:
        result = asyncio.run(bench(sizes, command(sizes), Path(tmp), parts))
    print(summary(result))
    if parts == PARTS:
        _write(output, result)
    print(figures_line(result))  # the last line: the named figures
    return 0


def _write(output: Path, result: Result) -> None:
    write_markdown(output, markdown(result))
    raw = output.parent / RESULTS
    raw.parent.mkdir(parents=True, exist_ok=True)
    doc = asdict(result)
    if result.storm is not None:
        doc["storm"]["rate"] = result.storm.rate
    raw.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"  written: {output}, {raw}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m vportd_lab.bench.cluster",
        description="The cluster benchmark: 3 vportd processes, etcd and a dummy-datapath OVS.",
    )
    d = Sizes()
    p.add_argument("--migrations", type=int, default=d.migrations, help="per target")
    p.add_argument("--ports", type=int, default=d.propagation, help="propagation ports")
    p.add_argument("--storm", type=int, default=d.storm, help="boot storm ports")
    p.add_argument("--switches", type=int, default=d.switches, help="bridges")
    p.add_argument("--failovers", type=int, default=d.failovers, help="leader kills")
    p.add_argument(
        "--one-ovs", action="store_true",
        help="every bridge on one OVS (one ovs-vswitchd for all), not an OVS per hypervisor",
    )  # fmt: skip
    p.add_argument("--output", type=Path, default=Path("BENCHMARKS.md"))
    p.add_argument(
        "--only", action="append", choices=sorted(PARTS),
        help="run only this part (repeatable); prints the summary, writes no file",
    )  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # SIGTERM unwinds like an error: the controllers, etcd and OVS are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)
    sizes = Sizes(
        args.migrations, args.ports, args.storm, args.switches, args.failovers, args.one_ovs
    )
    parts = frozenset(args.only) if args.only else PARTS
    return run_cluster_bench(args.output, sizes, parts)
