"""``vportctl``: the operator's and VM manager's command line for a vportd cluster.

The commands follow DESIGN.md §4. ``status``, ``switches``, ``vports``, ``vport``,
``migrate``, ``migrations`` and ``abort`` talk to the cluster's REST API (see
`vportd.ctl.commands`). ``lab up|status|migrate|down``, ``demo`` and ``bench``
are the lab package's, added through its hook (`vportd.ctl.hook`).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Any

from vportd import __version__
from vportd.ctl import client
from vportd.ctl.argtypes import positive_float
from vportd.ctl.commands import Handler, add_cluster_commands
from vportd.ctl.hook import add_missing_lab_commands, lab_hook

EPILOG = """\
where the API is (first match wins):
  --api URL[,URL...]  >  $VPORTD_API  >  every controller of the lab in --lab DIR
  (or of a lab that is up in $VPORTD_LAB_DIR or /run/vportd-lab), first one first
  >  http://127.0.0.1:8080.  Several URLs: any controller serves the API; a
  request that cannot connect to one goes to the next.
the bearer token: --token-file PATH  >  $VPORTD_TOKEN_FILE  >  the lab's api.token.
the CA an https API is checked against: --ca FILE  >  $VPORTD_CA  >  the lab's CA
  (a lab up with --tls)  >  the system's CAs.

exit status of status, switches, vports, vport, migrate, migrations, abort (for hooks):
  {ok}  done (migrate: notify complete, new or the same migration again)
  {refused}  the cluster refused: unknown VM/OVS/migration (404), conflict such as
     VM not on that source or already migrating (409), bad input (400/422)
  {usage}  usage error (bad options), or --lab names no lab
  {unavailable}  cluster unavailable, safe to retry: unreachable or timed out, no
     leader (503), a controller did not answer and the migration was rolled
     back (503), any other 5xx, the VM moved too often lately (429: after its
     Retry-After); `status`: the cluster has no leader, or the answering
     controller has no etcd session (its view is stale)
  {auth}  authentication: no or wrong token (401/403), token file unreadable
With --json, stdout holds exactly one JSON document: the answer, or
{{"error": CODE, "detail": TEXT, "status": HTTP status or null}}.

examples:
  vportctl status
  vportctl --json vports
  vportctl migrate 02:00:00:00:00:01 --from hv0 --to hv1 && virsh migrate ...
  vportctl --api http://10.0.0.5:8080 --token-file /etc/vportd/api.token migrations
  vportctl --api https://c0.example.net:8080 --ca /etc/vportd/ca.pem status
  vportctl abort m-42
"""


def _add_api_flags(parser: argparse.ArgumentParser, default: Any) -> None:
    """--api, --token-file, --ca, --lab, --timeout: before the command (default None) or after.

    The copy after the command defaults to SUPPRESS so that it does not reset
    a value given before the command, as --json does.
    """
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
        "--ca", type=Path, metavar="FILE", default=default,
        help="CA certificate an https API's certificate is checked against "
        "(default: $VPORTD_CA, else the lab's CA, else the system's CAs)",
    )  # fmt: skip
    parser.add_argument(
        "--lab", type=Path, metavar="DIR", default=default,
        help="take the API and token from the lab that is up in DIR "
        "(default: a lab up in $VPORTD_LAB_DIR or /run/vportd-lab, if any)",
    )  # fmt: skip
    parser.add_argument(
        "--timeout", type=positive_float, metavar="SECONDS",
        default=client.DEFAULT_TIMEOUT if default is None else default,
        help=f"give up on one request after SECONDS (default: {client.DEFAULT_TIMEOUT:g})",
    )  # fmt: skip


def _json_flag() -> argparse.ArgumentParser:
    """--json for after the command: `vportctl --json vports` and `vportctl vports --json`
    mean the same. SUPPRESS keeps it from resetting a --json given before the command."""
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print machine-readable JSON instead of text",
    )
    return json_flag


def build_parser() -> argparse.ArgumentParser:
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
    json_flag = _json_flag()
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_cluster_commands(sub, [json_flag, api_flags])
    hook = lab_hook()
    if hook is None:
        add_missing_lab_commands(sub)
    else:
        hook.add_commands(sub, json_flag)
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
