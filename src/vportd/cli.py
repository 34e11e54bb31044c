"""``vportctl``: the operator's and VM manager's command line for a vportd cluster.

The commands follow DESIGN.md §4. ``migrate`` is the VM manager's migration
notify: it returns once the cluster answered *notify complete*, i.e. both the
source and the destination controller have the VM's vPort entry in the
migrating/up state and the network is ready for the VM to move.

Commands that talk to a running cluster need the REST API, which is not built
yet; they say so and exit 2. ``demo`` and ``bench`` run in-process.
"""

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from vportd import __version__

Handler = Callable[[argparse.Namespace], int]

EXIT_NOT_BUILT = 2


def _not_built(command: str) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        print(f"vportctl: '{command}' needs the cluster API (not built yet)", file=sys.stderr)
        return EXIT_NOT_BUILT

    return handler


def _run_demo(args: argparse.Namespace) -> int:
    from vportd.demo import run_demo  # noqa: PLC0415 (lazy: keeps CLI start-up light)

    rc: int = run_demo(json_output=args.json)
    return rc


def _run_bench(args: argparse.Namespace) -> int:
    from vportd.bench import run_bench  # noqa: PLC0415 (lazy: keeps CLI start-up light)

    rc: int = run_bench(
        events=args.events,
        switches=args.switches,
        controllers=args.controllers,
        output=args.output,
    )
    return rc


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    # --json is accepted before or after the command: `vportctl --json vports`
    # and `vportctl vports --json` mean the same. The subcommand copy uses
    # SUPPRESS so that it does not reset a --json given before the command.
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print machine-readable JSON instead of text",
    )

    parser = argparse.ArgumentParser(
        prog="vportctl",
        description=(
            "Inspect and drive a vportd cluster: the cluster-wide vPort table, VM "
            "live migrations (the VM manager's notify and abort), the local lab, "
            "the demo and the benchmark."
        ),
    )
    parser.add_argument(
        "--json", action="store_true", help="print machine-readable JSON instead of text"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_text: str, handler: Handler | None = None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, parents=[json_flag])
        p.set_defaults(handler=handler or _not_built(name))
        return p

    add("status", "show the cluster: leader, members, and which switches each one masters")
    add("vports", "list every vPort entry (VM port) the cluster knows")
    p = add("vport", "show one VM's vPort entry: location, migration and port state, sequence")
    p.add_argument("vm", metavar="VM", help="the VM, named by its MAC address")

    p = add(
        "migrate",
        "notify the cluster of a VM live migration and wait until the network is ready "
        "(exits 0 once the cluster answered notify complete; only then start moving the VM)",
    )
    p.add_argument("vm", metavar="VM", help="the VM, named by its MAC address")
    p.add_argument(
        "--from",
        dest="source",
        metavar="OVS",
        required=True,
        help="source switch: its name or datapath id",
    )
    p.add_argument(
        "--to",
        dest="destination",
        metavar="OVS",
        required=True,
        help="destination switch: its name or datapath id",
    )

    add("migrations", "list migrations and their state (preparing, ready, activated, ...)")
    p = add("abort", "abort a migration and roll it back on every controller")
    p.add_argument("id", metavar="ID", help="the migration id (see `vportctl migrations`)")

    lab = sub.add_parser(
        "lab",
        help="the local test bed (root): OVS bridges, etcd, controllers, namespace VMs",
        description=(
            "Run a small vportd cluster on this machine: private Open vSwitch "
            "instances, etcd, controllers, and VMs as network namespaces."
        ),
        parents=[json_flag],
    )
    lab_sub = lab.add_subparsers(dest="lab_command", metavar="ACTION", required=True)
    for action, help_text in (
        ("up", "start the lab"),
        ("status", "show the lab's switches, controllers and VMs"),
        ("migrate", "live-migrate a lab VM between hypervisors through the cluster"),
        ("down", "stop the lab and remove everything it created"),
    ):
        lp = lab_sub.add_parser(action, help=help_text, description=help_text, parents=[json_flag])
        lp.set_defaults(handler=_not_built(f"lab {action}"))

    add(
        "demo",
        "run the migration demo: the patent's handshake and a live migration, step by step",
        _run_demo,
    )
    p = add(
        "bench",
        "benchmark the core (port events through the vPort table and flow compiler)",
        _run_bench,
    )
    p.add_argument(
        "--events",
        type=_positive_int,
        default=100_000,
        help="number of port events (default: %(default)s)",
    )
    p.add_argument(
        "--switches",
        type=_positive_int,
        default=1000,
        help="number of switches (default: %(default)s)",
    )
    p.add_argument(
        "--controllers",
        type=_positive_int,
        default=3,
        help="number of controllers in the cluster (default: %(default)s)",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=Path("BENCHMARKS.md"),
        help="Markdown file to write the results to (default: %(default)s)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
