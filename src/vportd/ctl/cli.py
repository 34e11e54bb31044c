"""``vportctl``: the operator's and VM manager's command line for a vportd cluster.

The commands follow DESIGN.md §4. ``status``, ``vports``, ``vport``,
``migrate``, ``migrations`` and ``abort`` talk to the cluster's REST API
through `vportd.ctl.client`; ``migrate`` is the VM manager's migration notify: it
returns once the cluster answered *notify complete*, i.e. both the source and
the destination controller have the VM's vPort entry in the migrating/up state
and the network is ready for the VM to move. Their exit codes are
`vportd.ctl.client.EXIT_*`, stable for hook scripts.

``demo`` (root) runs live migrations on a lab it builds and removes (see
``vportd_lab.demo.live``; ``demo --sim`` narrates in-process), ``bench`` runs
in-process. ``lab up|status|down`` (root) build the local test bed (see
``vportd_lab.bed.bed``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vportd import __version__

if TYPE_CHECKING:
    from vportd.ctl.client import Client, ClientError, Json, Target

Handler = Callable[[argparse.Namespace], int]

EXIT_NOT_BUILT = 2


def _not_built(command: str) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        print(f"vportctl: '{command}' needs the cluster API (not built yet)", file=sys.stderr)
        return EXIT_NOT_BUILT

    return handler


# -- the cluster API's commands (status, vports, vport, migrate, migrations, abort) --


@dataclass(frozen=True)
class Output:
    """What a cluster command prints: one JSON document (--json) or text, and its exit code."""

    doc: object
    text: str
    exit_code: int = 0
    warning: str = ""  # said on stderr in both modes


Command = Callable[["Client", argparse.Namespace], Output]


def _api_command(command: Command) -> Handler:
    """Resolve the API and token, run `command`, print its output or the error."""

    def handler(args: argparse.Namespace) -> int:
        from vportd.ctl import client as api  # noqa: PLC0415 (lazy: keeps CLI start-up light)

        target: Target | None = None
        try:
            target = api.resolve_target(args.api, args.token_file, args.lab, os.environ)
            with api.connect(target, args.timeout) as conn:
                out = command(conn, args)
        except api.ClientError as err:
            return _report_error(err, target, as_json=args.json)
        print(json.dumps(out.doc, indent=2) if args.json else out.text)
        if out.warning:
            print(f"vportctl: {out.warning}", file=sys.stderr)
        return out.exit_code

    return handler


def _report_error(err: ClientError, target: Target | None, *, as_json: bool) -> int:
    """The error on stderr, for people; with --json also as the one document on stdout."""
    if as_json:
        print(json.dumps(err.to_json(), indent=2))
    print(f"vportctl: {err.detail}{_hint(err, target)}", file=sys.stderr)
    return err.exit_code


def _hint(err: ClientError, target: Target | None) -> str:
    """Where the API or the token came from, when that is the likely mistake."""
    from vportd.ctl.client import EXIT_AUTH, ApiError, Unreachable  # noqa: PLC0415

    if target is None:
        return ""
    if isinstance(err, Unreachable):
        return f" (API from {target.urls_from}; see --api, $VPORTD_API, --lab)"
    if not isinstance(err, ApiError) or err.exit_code != EXIT_AUTH:
        return ""
    if target.token_file is None:
        return " (no token: give --token-file or set $VPORTD_TOKEN_FILE)"
    return f" (token file {target.token_file}, from {target.token_from})"


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns, two spaces apart; None shows as '-'."""
    cells = [list(headers)] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def _fields(doc: Json) -> str:
    """A JSON object as `key: value` lines (lists comma-separated)."""
    width = max((len(k) for k in doc), default=0)
    return "\n".join(f"{k + ':':<{width + 1}} {_cell(v)}" for k, v in doc.items())


def _cell(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    return "-" if value is None else str(value)


def _status(conn: Client, args: argparse.Namespace) -> Output:
    doc = conn.status()
    cluster, health = doc["cluster"], doc["health"]
    members = cluster.get("members", [])
    rows = [
        [m.get("id"), m.get("api"), "yes" if m.get("healthy") else "NO", _cell(m.get("switches"))]
        for m in members
    ]
    ok = health.get("ok", True)
    extra = {k: v for k, v in health.items() if k != "ok"}
    health_text = "ok" if ok else "NOT OK " + json.dumps(extra, sort_keys=True)
    lines = [
        f"leader: {cluster.get('leader') or 'NONE'}",
        f"health of the answering controller: {health_text}",
        _table(["MEMBER", "API", "HEALTHY", "SWITCHES"], rows),
    ]
    if cluster.get("leader"):
        return Output(doc, "\n".join(lines))
    # a hook can wait for a usable cluster with `until vportctl status; do sleep 1; done`
    from vportd.ctl.client import EXIT_UNAVAILABLE  # noqa: PLC0415

    return Output(doc, "\n".join(lines), EXIT_UNAVAILABLE, "the cluster has no leader")


VPORT_COLUMNS = ("vm", "ovs", "port", "port_name", "migration_state", "port_state", "seq")


def _vports(conn: Client, args: argparse.Namespace) -> Output:
    vports = conn.vports()
    headers = ["VM", "OVS", "PORT", "PORT NAME", "MIGRATION", "STATE", "SEQ", "TO", "IPS"]
    rows = [
        [*(v.get(k) for k in VPORT_COLUMNS), v.get("destination"), _cell(v.get("ips", []))]
        for v in vports
    ]
    return Output(vports, _table(headers, rows) if vports else "no vPorts")


def _vport(conn: Client, args: argparse.Namespace) -> Output:
    vport = conn.vport(args.vm)
    return Output(vport, _fields(vport))


def _migrate(conn: Client, args: argparse.Namespace) -> Output:
    migration, created = conn.migrate(args.vm, args.source, args.destination, wait=args.wait)
    m = migration
    how = "new migration" if created else "the same migration again"
    text = (
        f"notify complete ({how}): migration {m.get('id')} of {m.get('vm')} "
        f"{m.get('source')} -> {m.get('destination')} is {m.get('state')}; "
        "the network is ready, start the live migration"
    )
    return Output({**migration, "created": created}, text)


MIGRATION_COLUMNS = ("id", "vm", "source", "destination", "state", "seq", "reason")


def _migrations(conn: Client, args: argparse.Namespace) -> Output:
    if args.id is not None:
        migration = conn.migration(args.id)
        return Output(migration, _fields(migration))
    migrations = conn.migrations()
    rows = [[m.get(k) for k in MIGRATION_COLUMNS] for m in migrations]
    headers = [c.upper() for c in MIGRATION_COLUMNS]
    return Output(migrations, _table(headers, rows) if migrations else "no migrations")


def _abort(conn: Client, args: argparse.Namespace) -> Output:
    migration = conn.abort(args.id)
    state = migration.get("state", "aborted")
    return Output(migration, f"migration {migration.get('id', args.id)}: {state}")


def _run_demo(args: argparse.Namespace) -> int:
    # lazy imports: keep the CLI's start-up light
    if args.sim:
        from vportd_lab.demo.narrated import run_demo  # noqa: PLC0415

        rc: int = run_demo(json_output=args.json)
        return rc
    from vportd_lab.demo import live as demo_lab  # noqa: PLC0415

    return demo_lab.run(
        demo_lab.DemoOptions(
            hops=args.hops,
            vm=args.vm,
            precopy=args.precopy,
            pause_ms=args.pause,
            keep=args.keep,
            json=args.json,
        )
    )


def _run_bench(args: argparse.Namespace) -> int:
    rc = 0
    if args.suite in ("core", "all"):
        from vportd_lab.bench.core import run_bench  # noqa: PLC0415 (lazy: keeps CLI start-up light)

        rc |= run_bench(
            events=args.events,
            switches=args.switches,
            controllers=args.controllers,
            output=args.output,
        )
    if args.suite in ("southbound", "all"):
        from vportd_lab.bench.southbound import run_southbound_bench  # noqa: PLC0415

        rc |= run_southbound_bench(args.output)
    if args.suite in ("cluster", "all"):
        from vportd_lab.bench.cluster import run_cluster_bench  # noqa: PLC0415

        rc |= run_cluster_bench(args.output)
    if args.suite in ("migration", "all"):
        from vportd_lab.bench.migration import run_migration_bench  # noqa: PLC0415

        rc |= run_migration_bench(args.output, runs=args.runs)
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


def _lab_dir(args: argparse.Namespace) -> Path | None:
    """The lab's directory: `--dir`, else the global `--lab` (which names it for the client
    commands), else $VPORTD_LAB_DIR or /run/vportd-lab; None, said why, if the two differ."""
    import os  # noqa: PLC0415

    from vportd_lab.bed.plan import default_dir  # noqa: PLC0415

    given, lab = args.dir, getattr(args, "lab", None)
    if given is not None and lab is not None and Path(given).absolute() != Path(lab).absolute():
        print(f"vportctl: --lab {lab} and --dir {given} name two labs: give one", file=sys.stderr)
        return None
    return Path(given or lab or default_dir(os.environ))


def _lab_handler(action: str) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        import os  # noqa: PLC0415

        lab_dir = _lab_dir(args)
        if lab_dir is None:
            return 2
        args.dir = lab_dir
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
            from vportd_lab.bed import report  # noqa: PLC0415

            return report.status(args.dir, as_json=as_json)
        if action == "down":
            from vportd_lab.bed import teardown  # noqa: PLC0415

            return teardown.down(args.dir, as_json=as_json)
        if action == "migrate":
            return _lab_migrate(args, as_json)
        from vportd_lab.bed import bed  # noqa: PLC0415

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
                mode=args.mode,
            )
        )

    return handler


def _lab_migrate(args: argparse.Namespace, as_json: bool) -> int:
    from vportd_lab.bed import migrate  # noqa: PLC0415

    return migrate.run(
        migrate.MigrateOptions(
            dir=args.dir,
            vm=args.vm,
            to=args.to,
            precopy=args.precopy,
            pause_ms=args.pause,
            fail_at=args.fail_at,
            probe=args.probe is not None,
            peer=args.probe or None,
            settle=args.settle,
            wait=args.wait,
            announce_rounds=args.announce_rounds,
            json=as_json,
        )
    )


_LAB_MIGRATE = """\
Act as the VM manager of a live migration of a lab VM, the way libvirt and
QEMU do it: the migration notify (as `vportctl migrate`, from where the lab
says the VM is), then the destination tap (a new veth: host end vm{k}h{i} on
the destination bridge with the VM's external_ids and OpenFlow port k+1, the
VM's end kept down in its namespace), the pre-copy (traffic still at the
source), the switchover (old interface down, --pause, then the new one
becomes eth0 with the same MAC and IP and comes up), a gratuitous ARP and a
RARP from the VM, and the source port's delete. Then it waits until every
controller shows the VM not-migrating at the destination, and reports.

--fail-at PHASE fails the migration as a VMM would, and the VM stays at the
source: notify (right after notify complete), precopy (halfway through the
pre-copy, the destination tap exists), switchover (after the stop-and-copy
pause: the source VM resumes on its old interface). The migration is aborted
through the API and the destination tap removed.

--probe [PEER] runs the traffic probe (UDP every 1 ms both ways) between the
VM and PEER (default: a VM on neither hypervisor if there is one) from
before the notify until --settle s after the source delete; the report puts
its longest gap per direction beside the switchover gap.

--json prints one object: vm, mac, source, destination, outcome, fail_at,
migration_id, handshake_ms, switchover_gap_ms, switchover_start_ms and
switchover_end_ms (from the probe's t0), longest_gap_ms (max of both
directions), longest_gap_ab_ms, longest_gap_ba_ms, lost_ab, lost_ba (ab: VM
to peer), excess_ms, converged_ms, phases (ms each), host_if, port, peer,
announce_errors, probe (the probe's report; null without --probe).

exit status:
  0  migrated (with --fail-at: aborted and the VM back at the source)
  1  a step failed (undone: the VM left where it runs), or the cluster
     refused the notify (unknown VM/OVS, another migration running)
  2  usage: bad options, unknown VM or hypervisor, no lab in --dir
  3  cluster unavailable (as vportctl migrate), or the controllers did not
     all show the expected result within --wait
  4  the API token was refused
"""


def _add_lab_migrate(
    lab_sub: Any, json_flag: argparse.ArgumentParser, dir_flag: argparse.ArgumentParser
) -> None:
    from vportd_lab.bed.migrate import FAIL_PHASES  # noqa: PLC0415

    lp = lab_sub.add_parser(
        "migrate",
        help="live-migrate a lab VM between hypervisors through the cluster (as its VMM)",
        description=_LAB_MIGRATE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[json_flag, dir_flag],
    )
    lp.add_argument("vm", metavar="VM", help="the VM: name (vm0) or MAC")
    lp.add_argument("--to", required=True, metavar="HV", help="destination hypervisor (hv1)")
    lp.add_argument(
        "--precopy", type=_non_negative_float, default=1.0, metavar="S",
        help="pre-copy phase, seconds (default: %(default)s)",
    )  # fmt: skip
    lp.add_argument(
        "--pause", type=_non_negative_float, default=50.0, metavar="MS",
        help="stop-and-copy pause between old down and new up, ms (default: %(default)s)",
    )  # fmt: skip
    lp.add_argument("--fail-at", choices=FAIL_PHASES, help="fail the migration in this phase")
    lp.add_argument(
        "--probe", nargs="?", const="", default=None, metavar="PEER_VM",
        help="run the traffic probe between the VM and PEER_VM (default: chosen)",
    )  # fmt: skip
    lp.add_argument(
        "--settle", type=_non_negative_float, default=0.3, metavar="S",
        help="how long the probe runs on after the source delete (default: %(default)s)",
    )  # fmt: skip
    lp.add_argument(
        "--wait", type=_positive_float, default=10.0, metavar="S",
        help="notify retries and waiting for the cluster, seconds (default: %(default)s)",
    )  # fmt: skip
    lp.add_argument(
        "--announce-rounds", type=_positive_int, default=1, metavar="N",
        help="GARP+RARP rounds after the switchover (default: %(default)s)",
    )  # fmt: skip
    lp.set_defaults(handler=_lab_handler("migrate"))


def _add_lab(sub: Any, json_flag: argparse.ArgumentParser) -> None:
    dir_flag = argparse.ArgumentParser(add_help=False)
    dir_flag.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="the lab's directory: state, controller configs and logs, the token files, the "
        "etcd's data and the private OVS run directory (default: the global --lab, else "
        "$VPORTD_LAB_DIR, else /run/vportd-lab)",
    )
    lab = sub.add_parser(
        "lab",
        help="the local test bed (root): OVS hypervisor bridges, controllers, namespace VMs",
        description=(
            "Run a small vportd lab on this machine (as root): a private Open vSwitch with the "
            "userspace datapath, one bridge per hypervisor joined by patch ports, VMs as network "
            "namespaces with a veth to their hypervisor's bridge, and a cluster of vportd "
            "controllers (with a private etcd as their store) that the bridges "
            "(fail_mode=secure) connect to."
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
                 127.0.0.1:API_PORT+c; config DIR/c{c}.toml, log DIR/c{c}.log;
                 every bridge connects to every controller
  etcd           with N >= 1 controllers: their store, on 127.0.0.1 (free
                 ports picked at start), data and log in DIR/etcd
  tokens         DIR/api.token (VMM, operators) and DIR/peer.token (between
                 controllers), random, mode 0600

`up` returns once the cluster has settled: a leader, and every bridge
mastered by a controller connected to it (the cluster spreads mastership).
A lab already up in DIR (or its leftovers) is an error: `lab down` first.
Only one lab can run at a time: the userspace datapath allows one OVS per
network namespace.
Exit status: 0 up; 1 failed (nothing is left behind); 2 bad options;
3 up, but a controller is not running (its log tail is printed) or the
cluster did not settle within --wait (what is missing is printed);
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
        help="number of controllers, one cluster with the lab's etcd as its store; 0 builds "
        "the data plane only, without etcd (default: %(default)s)",
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
        help="how long to wait for each of: the controllers to listen, the bridges to connect, "
        "the cluster to elect a leader and master every bridge (default: %(default)s)",
    )  # fmt: skip
    up.add_argument(
        "--mode", choices=("aware", "naive", "standalone"), default="aware",
        help="aware: vportd as it is; naive: controllers with migration.aware = false and "
        "`lab migrate` sends no notify; standalone: no controllers, bridges in "
        "fail_mode=standalone (OVS NORMAL learning), linked in a star (default: %(default)s)",
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
            "Show the lab in DIR: controllers (pid, alive), the etcd (endpoint, pid), the "
            "leader and each bridge's master (from the controllers' API, when it answers), "
            "hypervisor bridges (dpid, which controllers they are connected to), patch links, "
            "VMs (MAC, IP, namespace, port), the OVSDB socket and the token files. "
            "Exit status 1 when no lab is up."
        ),
        parents=[json_flag, dir_flag],
    )
    st.set_defaults(handler=_lab_handler("status"))

    _add_lab_migrate(lab_sub, json_flag, dir_flag)

    dn = lab_sub.add_parser(
        "down",
        help="stop the lab and remove everything it created",
        description=(
            "Stop the lab in DIR and remove everything it created: controllers, the etcd and "
            "its data, the private Open vSwitch, VM namespaces and veths, the userspace "
            "datapath's tap devices, and DIR itself. Works after a crash too (state file "
            "missing or partial), from the lab's names and the alias mark on its interfaces. "
            "Safe to run twice."
        ),
        parents=[json_flag, dir_flag],
    )
    dn.set_defaults(handler=_lab_handler("down"))


def _add_api_flags(parser: argparse.ArgumentParser, default: Any) -> None:
    """--api, --token-file, --lab, --timeout: before the command (default None) or after it.

    The copy after the command defaults to SUPPRESS so that it does not reset
    a value given before the command, as --json does.
    """
    from vportd.ctl.client import DEFAULT_TIMEOUT  # noqa: PLC0415

    parser.add_argument(
        "--api", metavar="URL[,URL...]", default=default,
        help="the cluster's REST API: one or more controllers' base URLs "
        "(default: $VPORTD_API, else the lab's controllers, else http://127.0.0.1:8080)",
    )  # fmt: skip
    parser.add_argument(
        "--token-file", type=Path, metavar="PATH", default=default,
        help="file holding the API's bearer token "
        "(default: $VPORTD_TOKEN_FILE, else the lab's api.token)",
    )  # fmt: skip
    parser.add_argument(
        "--lab", type=Path, metavar="DIR", default=default,
        help="take the API and token from the lab that is up in DIR "
        "(default: a lab up in $VPORTD_LAB_DIR or /run/vportd-lab, if any)",
    )  # fmt: skip
    parser.add_argument(
        "--timeout", type=_positive_float, metavar="SECONDS",
        default=DEFAULT_TIMEOUT if default is None else default,
        help=f"give up on one request after SECONDS (default: {DEFAULT_TIMEOUT:g})",
    )  # fmt: skip


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {value:g}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {value:g}")
    return value


def _add_cluster_commands(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    from vportd.ctl.client import DEFAULT_WAIT  # noqa: PLC0415

    def add(name: str, help_text: str, command: Command, example: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(
            name, help=help_text, description=textwrap.fill(help_text), parents=parents,
            epilog=f"example:\n  {example}\n\nexit status and where the API and token come "
            "from: see `vportctl --help`",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        p.set_defaults(handler=_api_command(command))
        return p

    add(
        "status", "show the cluster: leader, members, and which switches each one masters "
        "(exit status 3 while the cluster has no leader)", _status, "vportctl status",
    )  # fmt: skip
    add("vports", "list every vPort entry (VM port) the cluster knows", _vports, "vportctl vports")
    p = add(
        "vport", "show one VM's vPort entry: location, migration and port state, sequence",
        _vport, "vportctl --json vport 02:00:00:00:00:01",
    )  # fmt: skip
    p.add_argument("vm", metavar="VM", help="the VM, named by its MAC address")

    p = add(
        "migrate",
        "notify the cluster of a VM live migration and wait until the network is ready "
        "(exits 0 once the cluster answered notify complete; only then start moving the VM). "
        "The same notify again is harmless (the same migration), so on 503 or a lost "
        "connection (a leader failover) it is sent again until --wait SECONDS have passed.",
        _migrate,
        "vportctl migrate 02:00:00:00:00:01 --from hv0 --to hv1 && virsh migrate ...",
    )
    p.add_argument("vm", metavar="VM", help="the VM, named by its MAC address")
    p.add_argument(
        "--from", dest="source", metavar="OVS", required=True,
        help="source switch: its name or datapath id",
    )  # fmt: skip
    p.add_argument(
        "--to", dest="destination", metavar="OVS", required=True,
        help="destination switch: its name or datapath id",
    )  # fmt: skip
    p.add_argument(
        "--wait", type=_non_negative_float, default=DEFAULT_WAIT, metavar="SECONDS",
        help="keep retrying through 503s and connection errors for SECONDS; 0: one attempt; "
        "an attempt in progress may add --timeout (default: %(default)g)",
    )  # fmt: skip

    p = add(
        "migrations", "list migrations and their state (preparing, ready, activated, "
        "completed, aborted, failed), or show one", _migrations, "vportctl migrations",
    )  # fmt: skip
    p.add_argument("id", metavar="ID", nargs="?", help="show only this migration")
    p = add(
        "abort", "abort a migration and roll it back on every controller", _abort,
        "vportctl abort m-42",
    )  # fmt: skip
    p.add_argument("id", metavar="ID", help="the migration id (see `vportctl migrations`)")


EPILOG = """\
where the API is (first match wins):
  --api URL[,URL...]  >  $VPORTD_API  >  every controller of the lab in --lab DIR
  (or of a lab that is up in $VPORTD_LAB_DIR or /run/vportd-lab), first one first
  >  http://127.0.0.1:8080.  Several URLs: any controller serves the API; a
  request that cannot connect to one goes to the next.
the bearer token: --token-file PATH  >  $VPORTD_TOKEN_FILE  >  the lab's api.token.

exit status of status, vports, vport, migrate, migrations, abort (for hooks):
  {ok}  done (migrate: notify complete, new or the same migration again)
  {refused}  the cluster refused: unknown VM/OVS/migration (404), conflict such as
     VM not on that source or already migrating (409), bad input (400/422)
  {usage}  usage error (bad options), or --lab names no lab
  {unavailable}  cluster unavailable, safe to retry: unreachable or timed out, no
     leader (503), a controller did not answer and the migration was rolled
     back (503), any other 5xx; `status`: the cluster has no leader
  {auth}  authentication: no or wrong token (401/403), token file unreadable
With --json, stdout holds exactly one JSON document: the answer, or
{{"error": CODE, "detail": TEXT, "status": HTTP status or null}}.

examples:
  vportctl status
  vportctl --json vports
  vportctl migrate 02:00:00:00:00:01 --from hv0 --to hv1 && virsh migrate ...
  vportctl --api http://10.0.0.5:8080 --token-file /etc/vportd/api.token migrations
  vportctl abort m-42
"""


_DEMO = """\
Run the migration demo on a real lab (as root): a private Open vSwitch with the
userspace datapath, an etcd, 3 vportd controllers, 3 hypervisors and 3 VMs,
built in a new directory under /tmp with free ports (an operator's lab in
/run/vportd-lab is never touched; refused if another lab's datapath is up).
The VM then live-migrates around the hypervisors (hv0 -> hv1 -> hv2 -> hv0
for --hops 3) as `vportctl lab migrate --probe` does it, progress on stderr.
stdout: a table per migration (handshake, switchover gap, longest gap,
excess, lost each way), the cluster's leader and masters, then one JSON line
({"migrations": [{"vm", "from", "to", "handshake_ms", "switchover_gap_ms",
"longest_gap_ms", "lost_ab", "lost_ba", ...}], "cluster", "lab", "ok",
"error"}); with --json that line only. The lab is torn down at the end, also
after an error, Ctrl-C or SIGTERM; --keep leaves it up (not after Ctrl-C).

--sim runs the in-process narration on the sans-I/O core instead (no root,
no OVS; the other options do not apply).

exit status: 0 done; 1 failed (the message says why; nothing is left unless
it says so), also when not root or a lab is up already; 2 bad options;
130 interrupted.
"""


def _add_demo(add: Callable[[str, str, Handler], argparse.ArgumentParser]) -> None:
    p = add("demo", "run the migration demo: live migrations on a real lab, measured", _run_demo)
    p.description = _DEMO
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument(
        "--sim", action="store_true",
        help="the in-process narration on the core instead (no root, no lab)",
    )  # fmt: skip
    p.add_argument(
        "--hops", type=_positive_int, default=3, metavar="N",
        help="migrations, each to the next hypervisor (default: %(default)s)",
    )  # fmt: skip
    p.add_argument("--vm", default="vm0", help="the VM to migrate (default: %(default)s)")
    p.add_argument(
        "--precopy", type=_non_negative_float, default=1.0, metavar="S",
        help="pre-copy phase of each migration, seconds (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--pause", type=_non_negative_float, default=50.0, metavar="MS",
        help="stop-and-copy pause of each switchover, ms (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--keep", action="store_true",
        help="leave the lab up afterwards (the demo says how to take it down)",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    from vportd.ctl import client  # noqa: PLC0415 (light: it imports httpx only when used)

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
        # the raw formatter keeps the epilog's tables; the description is wrapped here
        description=textwrap.fill(
            "Inspect and drive a vportd cluster: the cluster-wide vPort table, VM "
            "live migrations (the VM manager's notify and abort), the local lab, "
            "the demo and the benchmark."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG.format(
            ok=client.EXIT_OK,
            refused=client.EXIT_REFUSED,
            usage=client.EXIT_USAGE,
            unavailable=client.EXIT_UNAVAILABLE,
            auth=client.EXIT_AUTH,
        ),
    )
    parser.add_argument(
        "--json", action="store_true", help="print machine-readable JSON instead of text"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_api_flags(parser, default=None)
    api_flags = argparse.ArgumentParser(add_help=False)
    _add_api_flags(api_flags, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, parents=[json_flag])
        p.set_defaults(handler=handler)
        return p

    _add_cluster_commands(sub, [json_flag, api_flags])
    _add_lab(sub, json_flag)

    _add_demo(add)
    p = add(
        "bench",
        "benchmark the core (port events through the vPort table and flow compiler) "
        "and the southbound (OVS to core latency, flow install; needs root and OVS) "
        "and the cluster (3 vportd processes: handshake, propagation, boot storm, failover; "
        "needs OVS and etcd)",
        _run_bench,
    )
    p.add_argument(
        "--suite",
        choices=("core", "southbound", "cluster", "migration", "all"),
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
        "--runs",
        type=_positive_int,
        default=10,
        help="migration suite: migrations per mode (aware, naive, standalone; needs root, "
        "OVS and etcd) (default: %(default)s)",
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
