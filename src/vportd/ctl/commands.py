"""vportctl's cluster commands: status, switches, vports, vport, migrate, migrations, abort.

Each talks to the cluster's REST API through `vportd.ctl.client` and prints
one JSON document (--json) or text. `migrate` is the VM manager's migration
notify: it returns once the cluster answered *notify complete*, i.e. both the
source and the destination controller have the VM's vPort entry in the
migrating/up state and the network is ready for the VM to move. The exit
codes are `vportd.ctl.client.EXIT_*`, stable for hook scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vportd.ctl.argtypes import count, non_negative_float
from vportd.ctl.client import (
    DEFAULT_WAIT,
    EXIT_AUTH,
    EXIT_UNAVAILABLE,
    ApiError,
    Client,
    ClientError,
    Json,
    Unreachable,
)
from vportd.ctl.target import Target, connect, resolve_target
from vportd.ctl.text import cell, fields, table

Handler = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Output:
    """What a cluster command prints: one JSON document (--json) or text, and its exit code."""

    doc: object
    text: str
    exit_code: int = 0
    warning: str = ""  # said on stderr in both modes


Command = Callable[[Client, argparse.Namespace], Output]


def api_command(command: Command) -> Handler:
    """Resolve the API and token, run `command`, print its output or the error."""

    def handler(args: argparse.Namespace) -> int:
        target: Target | None = None
        try:
            target = resolve_target(args.api, args.token_file, args.lab, os.environ, ca=args.ca)
            with connect(target, args.timeout) as conn:
                out = command(conn, args)
        except ClientError as err:
            return report_error(err, target, as_json=args.json)
        print(json.dumps(out.doc, indent=2) if args.json else out.text)
        if out.warning:
            print(f"vportctl: {out.warning}", file=sys.stderr)
        return out.exit_code

    return handler


def report_error(err: ClientError, target: Target | None, *, as_json: bool) -> int:
    """The error on stderr, for people; with --json also as the one document on stdout."""
    if as_json:
        print(json.dumps(err.to_json(), indent=2))
    print(f"vportctl: {err.detail}{_hint(err, target)}", file=sys.stderr)
    return err.exit_code


def _hint(err: ClientError, target: Target | None) -> str:
    """Where the API or the token came from, when that is the likely mistake."""
    if target is None:
        return ""
    if isinstance(err, Unreachable) and "CERTIFICATE_VERIFY_FAILED" in err.detail:
        return f" (CA from {target.ca_from}; see --ca, $VPORTD_CA)"
    if isinstance(err, Unreachable):
        return f" (API from {target.urls_from}; see --api, $VPORTD_API, --lab)"
    if not isinstance(err, ApiError) or err.exit_code != EXIT_AUTH:
        return ""
    if target.token_file is None:
        return " (no token: give --token-file or set $VPORTD_TOKEN_FILE)"
    return f" (token file {target.token_file}, from {target.token_from})"


# -- the commands --------------------------------------------------------------------


def status(conn: Client, args: argparse.Namespace) -> Output:
    doc = conn.status()
    cluster, health = doc["cluster"], doc["health"]
    current = cluster.get("session", True)
    members = cluster.get("members", [])
    rows = [
        [m.get("id"), m.get("api"), _healthy(m, current=current), cell(_switches(m))]
        for m in members
    ]
    ok = health.get("ok", True)
    extra = {k: v for k, v in health.items() if k != "ok"}
    health_text = "ok" if ok else "NOT OK " + json.dumps(extra, sort_keys=True)
    lines = [
        f"leader: {cluster.get('leader') or 'NONE'}{'' if current else ' (as last seen)'}",
        f"health of the answering controller: {health_text}",
        table(["MEMBER", "API", "HEALTHY", "SWITCHES"], rows),
    ]
    if not current:
        stale = _stale(cluster)
        lines.insert(0, stale)
        return Output(doc, "\n".join(lines), EXIT_UNAVAILABLE, stale)
    if cluster.get("leader"):
        return Output(doc, "\n".join(lines))
    # a hook can wait for a usable cluster with `until vportctl status; do sleep 1; done`
    return Output(doc, "\n".join(lines), EXIT_UNAVAILABLE, "the cluster has no leader")


def _healthy(member: dict[str, Any], *, current: bool) -> str:
    if not current:
        return "unknown"  # the answering controller no longer sees the members' sessions
    return "yes" if member.get("healthy") else "NO"


def _switches(member: dict[str, Any]) -> list[str]:
    """A member's switches by name, with the datapath id (the id alone from an older API)."""
    dpids = member.get("switches") or []
    names = member.get("switch_names") or []
    if len(names) != len(dpids):
        return [str(d) for d in dpids]
    return [f"{n} ({d})" for n, d in zip(names, dpids, strict=True)]


def _stale(cluster: dict[str, Any]) -> str:
    since = cluster.get("stale_since")
    when = f" since {since}" if since else ""
    return (
        f"STALE: the answering controller has had no etcd session{when}; the leader "
        "and members below are what it last saw"
    )


def switches(conn: Client, args: argparse.Namespace) -> Output:
    found = conn.switches()
    headers = ["NAME", "DPID", "MASTER", "ROLE", "GENERATION"]  # ROLE: the answering one's
    rows = [
        [s.get("name"), s.get("dpid"), s.get("master"), s.get("role"), s.get("generation")]
        for s in found
    ]
    return Output(found, table(headers, rows) if found else "no switches")


VPORT_COLUMNS = ("vm", "ovs", "port", "port_name", "migration_state", "port_state", "seq")


def vports(conn: Client, args: argparse.Namespace) -> Output:
    found = conn.vports(args.segment)
    headers = ["VM", "OVS", "PORT", "PORT NAME", "SEG", "MIGRATION", "STATE", "SEQ", "TO", "IPS"]
    rows = [
        [
            *(v.get(k) for k in VPORT_COLUMNS[:4]), v.get("segment", 0),
            *(v.get(k) for k in VPORT_COLUMNS[4:]), v.get("destination"),
            cell(v.get("ips", [])),
        ]
        for v in found
    ]  # fmt: skip
    if found:
        return Output(found, table(headers, rows))
    return Output(found, "no vPorts" if args.segment is None else "no vPorts in that segment")


def vport(conn: Client, args: argparse.Namespace) -> Output:
    entry = conn.vport(args.vm)
    return Output(entry, fields(entry))


def migrate(conn: Client, args: argparse.Namespace) -> Output:
    m, created = conn.migrate(args.vm, args.source, args.destination, wait=args.wait)
    how = "new migration" if created else "the same migration again"
    text = (
        f"notify complete ({how}): migration {m.get('id')} of {m.get('vm')} "
        f"{m.get('source')} -> {m.get('destination')} is {m.get('state')}; "
        "the network is ready, start the live migration"
    )
    return Output({**m, "created": created}, text)


MIGRATION_COLUMNS = ("id", "vm", "source", "destination", "state", "seq", "reason")
MIGRATION_STATES = ("preparing", "ready", "activated", "completed", "aborted", "failed")
MAX_LIMIT = 10_000  # the API's bound on GET /v1/migrations?limit=


def migrations(conn: Client, args: argparse.Namespace) -> Output:
    if args.id is not None:
        one = conn.migration(args.id)
        return Output(one, fields(readable(one)))
    found = conn.migrations(args.state, args.limit)
    rows = [[m.get(k) for k in MIGRATION_COLUMNS] for m in found]
    headers = [c.upper() for c in MIGRATION_COLUMNS]
    return Output(found, table(headers, rows) if found else "no migrations")


def readable(migration: Json) -> Json:
    """A migration for people: its timeline in ms from its first step, its reported downtime
    without the arrivals (`--json` has them)."""
    shown = dict(migration)
    steps = [s for s in migration.get("timeline") or [] if isinstance(s, dict)]
    if steps:
        t0 = float(steps[0].get("at", 0.0))
        shown["timeline"] = [f"{s.get('step')} +{(float(s.get('at', t0)) - t0) * 1000:.1f} ms"
                             for s in steps]  # fmt: skip
    downtime = migration.get("downtime")
    if isinstance(downtime, dict):
        shown["downtime"] = [
            f"{d.get('name')}: longest gap {float(d.get('gap_s', 0.0)) * 1000:.1f} ms, "
            f"lost {d.get('lost')}"
            for d in downtime.get("directions") or []
            if isinstance(d, dict)
        ]
    return shown


def abort(conn: Client, args: argparse.Namespace) -> Output:
    migration = conn.abort(args.id)
    state = migration.get("state", "aborted")
    return Output(migration, f"migration {migration.get('id', args.id)}: {state}")


# -- their command line --------------------------------------------------------------


def add_cluster_commands(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """The seven commands, each with `parents` (--json and the API flags after the command)."""

    def add(name: str, help_text: str, command: Command, example: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(
            name, help=help_text, description=textwrap.fill(help_text), parents=parents,
            epilog=f"example:\n  {example}\n\nexit status and where the API and token come "
            "from: see `vportctl --help`",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        p.set_defaults(handler=api_command(command))
        return p

    add(
        "status", "show the cluster: leader, members, and which switches each one masters "
        "(exit status 3 while the cluster has no leader, or the answering controller has "
        "no etcd session: its view is stale)", status, "vportctl status",
    )  # fmt: skip
    add(
        "switches", "list the switches: name, datapath id, master, and the answering "
        "controller's role towards each (master, adopting, slave, equal, disconnected)",
        switches, "vportctl switches",
    )  # fmt: skip
    p = add(
        "vports", "list every vPort entry (VM port) the cluster knows", vports,
        "vportctl vports --segment 10",
    )  # fmt: skip
    p.add_argument(
        "--segment", type=count(0, 4095), metavar="TAG",
        help="only the vPorts of this tenant segment (its ports' VLAN tag; 0: untagged)",
    )  # fmt: skip
    p = add(
        "vport", "show one VM's vPort entry: location, migration and port state, sequence",
        vport, "vportctl --json vport 02:00:00:00:00:01",
    )  # fmt: skip
    p.add_argument("vm", metavar="VM", help="the VM, named by its MAC address")
    _add_migrate(add)
    p = add(
        "migrations", "list migrations and their state (preparing, ready, activated, "
        "completed, aborted, failed), oldest first, or show one", migrations,
        "vportctl migrations --state failed --limit 20",
    )  # fmt: skip
    p.add_argument("id", metavar="ID", nargs="?", help="show only this migration")
    p.add_argument(
        "--state", choices=MIGRATION_STATES, help="list only the migrations in this state"
    )
    p.add_argument(
        "--limit", type=count(1, MAX_LIMIT), metavar="N",
        help=f"list only the newest N (1 to {MAX_LIMIT})",
    )  # fmt: skip
    p = add(
        "abort", "abort a migration and roll it back on every controller", abort,
        "vportctl abort m-42",
    )  # fmt: skip
    p.add_argument("id", metavar="ID", help="the migration id (see `vportctl migrations`)")


def _add_migrate(add: Callable[[str, str, Command, str], argparse.ArgumentParser]) -> None:
    p = add(
        "migrate",
        "notify the cluster of a VM live migration and wait until the network is ready "
        "(exits 0 once the cluster answered notify complete; only then start moving the VM). "
        "The same notify again is harmless (the same migration), so on 503 or a lost "
        "connection (a leader failover) it is sent again until --wait SECONDS have passed.",
        migrate,
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
        "--wait", type=non_negative_float, default=DEFAULT_WAIT, metavar="SECONDS",
        help="keep retrying through 503s and connection errors for SECONDS; 0: one attempt; "
        "an attempt in progress may add --timeout (default: %(default)g)",
    )  # fmt: skip
