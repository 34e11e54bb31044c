"""``vportctl``: the operator's and VM manager's command line for a vportd cluster.

The commands follow DESIGN.md §4. ``migrate`` is the VM manager's migration
notify: it returns once the cluster answered *notify complete*, i.e. both the
source and the destination controller have the VM's vPort entry in the
migrating/up state and the network is ready for the VM to move.

Commands that talk to a running cluster need the REST API, which is not built
yet; they say so and exit 2. ``demo`` and ``bench`` run in-process. ``lab
up|status|down`` (root) build the local test bed (see ``vportd.lab.bed``).
"""

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    rc = 0
    if args.suite in ("core", "all"):
        from vportd.bench import run_bench  # noqa: PLC0415 (lazy: keeps CLI start-up light)

        rc |= run_bench(
            events=args.events,
            switches=args.switches,
            controllers=args.controllers,
            output=args.output,
        )
    if args.suite in ("southbound", "all"):
        from vportd.bench_southbound import run_southbound_bench  # noqa: PLC0415

        rc |= run_southbound_bench(args.output)
    return rc


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:  # noqa: PLR2004
        raise argparse.ArgumentTypeError(f"not a TCP port: {value}")
    return value


def _count(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}: {value}")
        return value

    return parse


def _lab_handler(action: str) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        import os  # noqa: PLC0415

        if os.geteuid() != 0:
            print(
                f"vportctl: 'lab {action}' needs root (it creates network namespaces, veths and "
                "an Open vSwitch instance): run it with sudo",
                file=sys.stderr,
            )
            return 1
        # lazy imports: keep the CLI's start-up light
        as_json = bool(getattr(args, "json", False))
        if action == "status":
            from vportd.lab import report  # noqa: PLC0415

            return report.status(args.dir, as_json=as_json)
        if action == "down":
            from vportd.lab import teardown  # noqa: PLC0415

            return teardown.down(args.dir, as_json=as_json)
        from vportd.lab import bed  # noqa: PLC0415

        return bed.up(
            bed.UpOptions(
                dir=args.dir,
                hypervisors=args.hypervisors,
                vms=args.vms,
                controllers=args.controllers,
                openflow_port=args.openflow_port,
                api_port=args.api_port,
                vportd=args.vportd,
                wait=args.wait,
                keep_on_error=args.keep_on_error,
                json=as_json,
            )
        )

    return handler


def _add_lab(sub: Any, json_flag: argparse.ArgumentParser) -> None:
    import os  # noqa: PLC0415

    default_dir = Path(os.environ.get("VPORTD_LAB_DIR", "/run/vportd-lab"))
    dir_flag = argparse.ArgumentParser(add_help=False)
    dir_flag.add_argument(
        "--dir",
        type=Path,
        default=default_dir,
        help="the lab's directory: state, controller configs and logs, the API token, and "
        "the private OVS run directory (default: $VPORTD_LAB_DIR or %(default)s)",
    )
    lab = sub.add_parser(
        "lab",
        help="the local test bed (root): OVS hypervisor bridges, controllers, namespace VMs",
        description=(
            "Run a small vportd lab on this machine (as root): a private Open vSwitch with the "
            "userspace datapath, one bridge per hypervisor joined by patch ports, VMs as network "
            "namespaces with a veth to their hypervisor's bridge, and vportd controllers that the "
            "bridges (fail_mode=secure) connect to."
        ),
        parents=[json_flag],
    )
    lab_sub = lab.add_subparsers(dest="lab_command", metavar="ACTION", required=True)

    up = lab_sub.add_parser(
        "up",
        help="start the lab",
        parents=[json_flag, dir_flag],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Start the lab. Layout (fixed, so tests and people can name things):
  hypervisor i   bridge hv{i}, datapath id i+1, fail_mode=secure, OpenFlow13
  link i<->j     patch ports p{i}-{j} (OpenFlow port 100+j on hv{i}) and
                 p{j}-{i} (port 100+i on hv{j}), a full mesh
  VM k           namespace vm{k} on hv{k mod H}: eth0 with MAC
                 02:00:00:00:00:{k+1, hex} and IP 10.0.0.{k+1}/24; host end vm{k}h
                 is OpenFlow port k+1, with external_ids attached-mac, iface-id
                 vm{k}-eth0 and vm-id
  controller c   id c{c}: OpenFlow on 127.0.0.1:OPENFLOW_PORT+c, API on
                 127.0.0.1:API_PORT+c; config DIR/c{c}.toml, log DIR/c{c}.log

A lab already up in DIR (or its leftovers) is an error: `lab down` first.
Only one lab can run at a time: the userspace datapath allows one OVS per
network namespace.
Exit status: 0 up; 1 failed (nothing is left behind); 2 bad options;
3 up, but a controller is not running (its log tail is printed);
130 interrupted (nothing is left behind).""",
    )
    up.add_argument(
        "--hypervisors", type=_count(1, 32), default=2, metavar="H",
        help="number of hypervisor bridges (default: %(default)s)",
    )  # fmt: skip
    up.add_argument(
        "--vms", type=_count(1, 99), default=3, metavar="V",
        help="number of VMs, spread round-robin over the hypervisors (default: %(default)s)",
    )  # fmt: skip
    up.add_argument(
        "--controllers", type=_count(0, 9), default=1, metavar="N",
        help="number of controllers; 0 builds the data plane only (default: %(default)s)",
    )  # fmt: skip
    up.add_argument(
        "--openflow-port", type=_port, default=6653, metavar="PORT",
        help="OpenFlow port of the first controller, on 127.0.0.1 (default: %(default)s)",
    )  # fmt: skip
    up.add_argument(
        "--api-port", type=_port, default=8080, metavar="PORT",
        help="REST API port of the first controller, on 127.0.0.1 (default: %(default)s)",
    )  # fmt: skip
    up.add_argument(
        "--vportd", type=Path, default=None, metavar="PATH",
        help="controller executable, run as `PATH --config FILE` "
        "(default: the vportd next to this Python)",
    )  # fmt: skip
    up.add_argument(
        "--wait", type=float, default=10.0, metavar="SECONDS",
        help="how long to wait for the controllers to listen and the bridges to connect "
        "(default: %(default)s)",
    )  # fmt: skip
    up.add_argument(
        "--keep-on-error", action="store_true",
        help="if a step fails, keep what was built for inspection instead of removing it",
    )  # fmt: skip
    up.set_defaults(handler=_lab_handler("up"))

    st = lab_sub.add_parser(
        "status",
        help="show the lab's controllers, hypervisors, links and VMs",
        description=(
            "Show the lab in DIR: controllers (pid, alive), hypervisor bridges (dpid, which "
            "controllers they are connected to), patch links, VMs (MAC, IP, namespace, port), "
            "the OVSDB socket and the API token file. Exit status 1 when no lab is up."
        ),
        parents=[json_flag, dir_flag],
    )
    st.set_defaults(handler=_lab_handler("status"))

    lp = lab_sub.add_parser(
        "migrate",
        help="live-migrate a lab VM between hypervisors through the cluster",
        description="live-migrate a lab VM between hypervisors through the cluster",
        parents=[json_flag],
    )
    lp.set_defaults(handler=_not_built("lab migrate"))

    dn = lab_sub.add_parser(
        "down",
        help="stop the lab and remove everything it created",
        description=(
            "Stop the lab in DIR and remove everything it created: controllers, the private "
            "Open vSwitch, VM namespaces and veths, the userspace datapath's tap devices, and "
            "DIR itself. Works after a crash too (state file missing or partial), from the "
            "lab's names and the alias mark on its interfaces. Safe to run twice."
        ),
        parents=[json_flag, dir_flag],
    )
    dn.set_defaults(handler=_lab_handler("down"))


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

    _add_lab(sub, json_flag)

    add(
        "demo",
        "run the migration demo: the patent's handshake and a live migration, step by step",
        _run_demo,
    )
    p = add(
        "bench",
        "benchmark the core (port events through the vPort table and flow compiler) "
        "and the southbound (OVS to core latency, flow install; needs root and OVS)",
        _run_bench,
    )
    p.add_argument(
        "--suite",
        choices=("core", "southbound", "all"),
        default="all",
        help="which benchmarks to run (default: %(default)s)",
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
