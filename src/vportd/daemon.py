"""The ``vportd`` daemon: the composition root of one controller of a vportd cluster.

It reads and validates the configuration, sets up logging, and runs the
`Runtime` (core + OpenFlow + OVSDB, every task in one `asyncio.TaskGroup`)
until SIGTERM or SIGINT, which cancel the group and wait for every task.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from vportd import __version__
from vportd.config import Config, ConfigError, load_config

log = logging.getLogger("vportd")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vportd",
        description=(
            "Run one controller of a vportd cluster: it masters the Open vSwitch "
            "switches that connect to it (OpenFlow 1.3), reads from OVSDB which VM "
            "each port belongs to, keeps the vPort table and installs the flows."
        ),
        epilog="The configuration is TOML; unknown keys and bad values are refused "
        "at start with the key named. See docs/operations.md.",
    )
    parser.add_argument(
        "--config", metavar="FILE", type=Path, help="controller configuration file (TOML)"
    )
    parser.add_argument(
        "--check", action="store_true", help="validate the configuration, print it, and exit"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _logging(config: Config) -> None:
    logging.basicConfig(
        level=config.logging.level.upper(),
        format=f"%(asctime)s {config.controller.id} %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )


async def _serve(config: Config) -> None:
    from vportd.runtime import Runtime  # noqa: PLC0415 - keeps --help and --check light

    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    runtime = Runtime(config)
    log.info("controller %s starting (OpenFlow %s)", config.controller.id, config.openflow.listen)
    try:
        await runtime.run()
    except asyncio.CancelledError:
        log.info("controller %s stopped", config.controller.id)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config is None:
        parser.print_usage(sys.stderr)
        print("vportd: error: --config FILE is required to run a controller", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(f"vportd: configuration error: {err}", file=sys.stderr)
        return 2
    if args.check:
        print(config.model_dump_json(indent=2))
        return 0
    _logging(config)
    asyncio.run(_serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
