"""The ``vportd`` daemon: runs one controller of a vportd cluster.

This is the composition root (DESIGN.md §2): it will own the OpenFlow and
OVSDB adapters, the etcd cluster client and the REST API in one
``asyncio.TaskGroup``. Only the sans-I/O core exists so far, so the daemon
parses its command line and says so.
"""

import argparse
import sys

from vportd import __version__

NOT_BUILT = "vportd: the controller runtime is not built yet (see issue 3); only the core exists"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vportd",
        description=(
            "Run one controller of a vportd cluster: it masters the Open vSwitch "
            "switches attached to it (OpenFlow 1.3 + OVSDB), keeps the cluster-wide "
            "vPort table in step through etcd, and serves the REST API to the VM "
            "manager, operators and peer controllers."
        ),
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="controller configuration file (identity, etcd endpoints, API address, tokens)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config is None:
        parser.print_usage(sys.stderr)
        print("vportd: error: --config FILE is required to run a controller", file=sys.stderr)
        return 2
    print(NOT_BUILT, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
