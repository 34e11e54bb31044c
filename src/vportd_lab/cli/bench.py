"""`vportctl bench`: the benchmark suites (core, southbound, cluster, migration, fuzz).

Each suite writes its section of the Markdown file (`--output`) and its raw
results next to it; see `vportd_lab.bench`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vportd.ctl.argtypes import positive_int

SUITES = ("core", "southbound", "cluster", "migration", "fuzz")


def _run_bench(args: argparse.Namespace) -> int:
    # Lazy imports: the southbound, cluster and migration suites import the controller's
    # runtime, aiohttp and FastAPI (about a second); every other vportctl command builds
    # this parser and should not pay for them.
    rc = 0
    if args.suite in ("core", "all"):
        from vportd_lab.bench.core.run import run_bench  # noqa: PLC0415

        rc |= run_bench(
            events=args.events,
            switches=args.switches,
            controllers=args.controllers,
            output=args.output,
        )
    if args.suite in ("southbound", "all"):
        from vportd_lab.bench.southbound.run import run_southbound_bench  # noqa: PLC0415

        rc |= run_southbound_bench(args.output)
    if args.suite in ("cluster", "all"):
        from vportd_lab.bench.cluster.run import run_cluster_bench  # noqa: PLC0415

        rc |= run_cluster_bench(args.output)
    if args.suite in ("migration", "all"):
        from vportd_lab.bench.migration import run_migration_bench  # noqa: PLC0415

        rc |= run_migration_bench(args.output, runs=args.runs)
    if args.suite in ("fuzz", "all"):
        from vportd_lab.bench.fuzz import run_fuzz_bench  # noqa: PLC0415

        rc |= run_fuzz_bench(args.output, cases=args.cases)
    return rc


def add_bench(sub: Any, json_flag: argparse.ArgumentParser) -> None:
    """`bench` and its options."""
    help_text = (
        "benchmark the core (port events through the vPort table and flow compiler) "
        "and the southbound (OVS to core latency, flow install; needs root and OVS) "
        "and the cluster (3 vportd processes: handshake, propagation, boot storm, failover; "
        "needs OVS and etcd) and the fuzzers (REST, OpenFlow, OVSDB: runs tests/fuzz from "
        "the repository's checkout)"
    )
    p = sub.add_parser("bench", help=help_text, description=help_text, parents=[json_flag])
    p.set_defaults(handler=_run_bench)
    p.add_argument(
        "--suite",
        choices=(*SUITES, "all"),
        default="all",
        help="which benchmarks to run (default: %(default)s)",
    )
    p.add_argument(
        "--events",
        type=positive_int,
        default=100_000,
        help="number of port events (default: %(default)s)",
    )
    p.add_argument(
        "--switches",
        type=positive_int,
        default=1000,
        help="number of switches (default: %(default)s)",
    )
    p.add_argument(
        "--controllers",
        type=positive_int,
        default=3,
        help="number of controllers in the cluster (default: %(default)s)",
    )
    p.add_argument(
        "--runs",
        type=positive_int,
        default=10,
        help="migration suite: migrations per mode (aware, naive, standalone; needs root, "
        "OVS and etcd) (default: %(default)s)",
    )
    p.add_argument(
        "--cases",
        type=positive_int,
        default=10_000,
        help="fuzz suite: REST requests, OpenFlow messages and OVSDB mutations, each at least "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=Path("BENCHMARKS.md"),
        help="Markdown file to write the results to (default: %(default)s)",
    )
