"""`vportctl lab up|status|migrate|down`: the local test bed's commands (as root).

Each action works on the lab in `--dir`, else the one the global `--lab`
names, else the default place ($VPORTD_LAB_DIR, else /run/vportd-lab), and
refuses without root. `lab migrate` is in `vportd_lab.cli.lab_migrate`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vportd.ctl.argtypes import count, tcp_port
from vportd_lab.bed.messages import EXIT_FAILED, EXIT_USAGE
from vportd_lab.bed.plan import default_dir
from vportd_lab.cli import lab_migrate

Handler = Callable[[argparse.Namespace], int]
Action = Callable[[argparse.Namespace, bool], int]


def lab_dir(args: argparse.Namespace) -> Path | None:
    """The lab's directory: `--dir`, else the global `--lab` (which names it for the client
    commands), else $VPORTD_LAB_DIR or /run/vportd-lab; None, said why, if the two differ."""
    given, lab = args.dir, getattr(args, "lab", None)
    if given is not None and lab is not None and Path(given).absolute() != Path(lab).absolute():
        print(f"vportctl: --lab {lab} and --dir {given} name two labs: give one", file=sys.stderr)
        return None
    return Path(given or lab or default_dir(os.environ))


def as_root(action: str, run: Action) -> Handler:
    """`run(args, as_json)` on the lab's directory (in `args.dir`), if this process is root."""

    def handler(args: argparse.Namespace) -> int:
        where = lab_dir(args)
        if where is None:
            return EXIT_USAGE
        args.dir = where
        if os.geteuid() != 0:
            print(
                f"vportctl: 'lab {action}' needs root (it creates network namespaces, veths and "
                "an Open vSwitch instance): run it with sudo",
                file=sys.stderr,
            )
            return EXIT_FAILED
        return run(args, bool(getattr(args, "json", False)))

    return handler


# The actions import what they run when they run: vportctl builds this parser for every
# command, and the lab's modules would add tens of milliseconds to each.


def _up(args: argparse.Namespace, as_json: bool) -> int:
    from vportd_lab.bed import bed  # noqa: PLC0415 (lazy: start-up time, see above)

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
            tls=args.tls,
            fabric=args.fabric,
            segments=args.segments,
            encap=args.encap,
        )
    )


def _status(args: argparse.Namespace, as_json: bool) -> int:
    from vportd_lab.bed import report  # noqa: PLC0415 (lazy: start-up time)

    return report.status(args.dir, as_json=as_json)


def _down(args: argparse.Namespace, as_json: bool) -> int:
    from vportd_lab.bed import teardown  # noqa: PLC0415 (lazy: start-up time)

    return teardown.down(args.dir, as_json=as_json)


def add_lab(sub: Any, json_flag: argparse.ArgumentParser) -> None:
    """`lab` and its actions `up`, `status`, `migrate`, `down`."""
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
            "(fail_mode=secure) connect to. With `lab up --fabric overlay`, every hypervisor "
            "is a namespace with its own OVS, joined to the others by tunnels over an underlay, "
            "and the controllers and etcd run in namespaces of their own."
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
  --segments N   VM k's port gets VLAN tag 10*(k mod N + 1) (VNI the same);
                 untagged (the default segment) when N is 1
  --fabric overlay
                 hypervisor i is namespace ov-hv{i} with its own ovsdb-server
                 (tcp:172.30.0.{100+i}:6640) and userspace ovs-vswitchd:
                 br-phy holds its uplink and underlay IP 172.31.0.{i+1} (its
                 tunnel endpoint, external_ids:vportd-encap-ip), br-int (dpid
                 i+1) its tunnel port vportd-tun (OpenFlow port 100, --encap,
                 remote_ip and key from the flow) and its VMs' ports;
                 VM k is namespace ov-vm{k} (veth vm{k}h in its host's
                 namespace); controller c runs in ov-c{c} at 172.30.0.{10+c}
                 (OpenFlow and API on OPENFLOW_PORT and API_PORT), etcd in
                 ov-etcd at 172.30.0.2:2379; the networks are Linux bridges in
                 ov-fab; this namespace reaches them as 172.30.0.1 (ov-mgmt)
  --tls          every channel encrypted with the lab's CA (DIR/tls/ca.pem):
                 the API https only, the bridges' controller targets ssl:,
                 the controllers' OVSDB over ssl: (a free port); a certificate
                 per controller and one for the OVS (IP 127.0.0.1), in DIR/tls.
                 vportctl finds the CA with the lab, as its token

`up` returns once the cluster has settled: a leader, and every bridge
mastered by a controller connected to it (the cluster spreads mastership).
A lab already up in DIR (or its leftovers) is an error: `lab down` first.
Only one patch lab can run at a time: the userspace datapath allows one OVS
per network namespace (an overlay lab runs beside it; one of each at most).
Exit status: 0 up; 1 failed (nothing is left behind); 2 bad options;
3 up, but a controller is not running (its log tail is printed) or the
cluster did not settle within --wait (what is missing is printed);
130 interrupted (nothing is left behind).""",
    )
    up.add_argument(
        "--hypervisors", type=count(1, 32), default=2, metavar="H",
        help="number of hypervisor bridges (default: %(default)s)",
    )  # fmt: skip
    up.add_argument(
        "--vms", type=count(1, 99), default=3, metavar="V",
        help="number of VMs, spread round-robin over the hypervisors (default: %(default)s)",
    )  # fmt: skip
    up.add_argument(
        "--controllers", type=count(0, 9), default=1, metavar="N",
        help="number of controllers, one cluster with the lab's etcd as its store; 0 builds "
        "the data plane only, without etcd (default: %(default)s)",
    )  # fmt: skip
    up.add_argument(
        "--openflow-port", type=tcp_port, default=6653, metavar="PORT",
        help="OpenFlow port of the first controller, on 127.0.0.1 (default: %(default)s)",
    )  # fmt: skip
    up.add_argument(
        "--api-port", type=tcp_port, default=8080, metavar="PORT",
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
        "--tls", action="store_true",
        help="run every channel with TLS: make a CA and certificates in DIR/tls; the API is "
        "https only, OpenFlow and OVSDB use ssl:",
    )  # fmt: skip
    up.add_argument(
        "--fabric", choices=("patch", "overlay"), default="patch",
        help="patch: one OVS, a bridge per hypervisor, patch ports between them; overlay: "
        "every hypervisor a network namespace with its own OVS (br-int, a geneve or vxlan "
        "tunnel port, an underlay uplink), controllers and etcd in namespaces of their own "
        "on a management network (default: %(default)s)",
    )  # fmt: skip
    up.add_argument(
        "--segments", type=count(1, 9), default=1, metavar="N",
        help="spread the VMs round-robin over N segments (VLAN tags 10, 20, ...; VNI = tag); "
        "1: every VM untagged, in the default segment (default: %(default)s)",
    )  # fmt: skip
    up.add_argument(
        "--encap", choices=("geneve", "vxlan"), default="geneve",
        help="the overlay's tunnel type (default: %(default)s)",
    )  # fmt: skip
    up.add_argument(
        "--keep-on-error", action="store_true",
        help="if a step fails, keep what was built for inspection instead of removing it",
    )  # fmt: skip
    up.set_defaults(handler=as_root("up", _up))

    st = lab_sub.add_parser(
        "status",
        help="show the lab's controllers, hypervisors, links and VMs",
        description=(
            "Show the lab in DIR: controllers (pid, alive), the etcd (endpoint, pid), the "
            "leader and each bridge's master (from the controllers' API, when it answers), "
            "hypervisor bridges (dpid, which controllers they are connected to), patch links, "
            "VMs (MAC, IP, namespace, port), the OVSDB socket, the token files and, in a lab "
            "with TLS, its CA. "
            "Exit status 1 when no lab is up."
        ),
        parents=[json_flag, dir_flag],
    )
    st.set_defaults(handler=as_root("status", _status))

    mg = lab_migrate.add_lab_migrate(lab_sub, [json_flag, dir_flag])
    mg.set_defaults(handler=as_root("migrate", lab_migrate.run))

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
    dn.set_defaults(handler=as_root("down", _down))
