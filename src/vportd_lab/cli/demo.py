"""`vportctl demo`: live migrations on a lab it builds and removes, or `--sim` in-process.

The lab demo is `vportd_lab.demo.live`'s (as root), the narration on the
core `vportd_lab.demo.narrated`'s.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vportd.ctl.argtypes import non_negative_float, positive_int

_DEMO = """\
Run the migration demo on a real lab (as root), built in a new directory
under /tmp with free ports (an operator's lab in /run/vportd-lab is never
touched; refused if another lab of the same fabric is up). By default the
overlay: 3 hypervisor hosts, each a network namespace with its own
userspace-datapath Open vSwitch, joined by Geneve tunnels over an underlay;
an etcd and 3 vportd controllers in namespaces of their own; 6 VMs in 2
segments (VLAN tags 10 and 20). --fabric patch: one Open vSwitch with a
bridge per hypervisor, 3 VMs. The first VM of each segment (or each --vm)
then live-migrates around the hypervisors (hv0 -> hv1 -> hv2 -> hv0 for
--hops 3) as `vportctl lab migrate --probe` does it (the probe's peer in its
segment), progress on stderr.
stdout: a table per migration (handshake, switchover gap, longest gap,
excess, lost each way), the cluster's leader and masters, then one JSON line
({"migrations": [{"vm", "from", "to", "handshake_ms", "switchover_gap_ms",
"longest_gap_ms", "lost_ab", "lost_ba", ...}], "cluster", "lab", "ok",
"error", "plots"}); with --json that line only. Each migration's plot
(packets per ms each way, its steps marked) goes to --plots DIR (default: a
new directory under /tmp, named on stderr). The lab is torn down at the end,
also after an error, Ctrl-C or SIGTERM; --keep leaves it up (not after Ctrl-C).

--sim runs the in-process narration on the sans-I/O core instead (no root,
no OVS; the other options do not apply).

exit status: 0 done; 1 failed (the message says why; nothing is left unless
it says so), also when not root or a lab is up already; 2 bad options;
130 interrupted.
"""


def _run_demo(args: argparse.Namespace) -> int:
    # Lazy: the demo's modules import the core and the whole lab; vportctl builds this
    # parser for every command and should not pay for them.
    if args.sim:
        from vportd_lab.demo import narrated  # noqa: PLC0415

        return narrated.run_demo(json_output=args.json)
    from vportd_lab.demo import live  # noqa: PLC0415

    return live.run(
        live.DemoOptions(
            hops=args.hops,
            vms=tuple(args.vm or ()),
            fabric=args.fabric,
            precopy=args.precopy,
            pause_ms=args.pause,
            keep=args.keep,
            json=args.json,
            plots=args.plots,
        )
    )


def add_demo(sub: Any, json_flag: argparse.ArgumentParser) -> None:
    """`demo` and its options."""
    p = sub.add_parser(
        "demo",
        help="run the migration demo: live migrations on a real lab, measured",
        description=_DEMO,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[json_flag],
    )
    p.set_defaults(handler=_run_demo)
    p.add_argument(
        "--sim", action="store_true",
        help="the in-process narration on the core instead (no root, no lab)",
    )  # fmt: skip
    p.add_argument(
        "--hops", type=positive_int, default=3, metavar="N",
        help="migrations of each VM, each to the next hypervisor (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--vm", action="append", metavar="NAME",
        help="a VM to migrate (repeatable; default: the first VM of each segment: vm0 and vm1 "
        "on the overlay, vm0 on the patch fabric)",
    )  # fmt: skip
    p.add_argument(
        "--fabric", choices=("overlay", "patch"), default="overlay",
        help="overlay: 3 hypervisor hosts (namespaces, an OVS each, Geneve tunnels), 6 VMs in "
        "2 segments; patch: one OVS with a bridge per hypervisor, 3 VMs (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--precopy", type=non_negative_float, default=1.0, metavar="S",
        help="pre-copy phase of each migration, seconds (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--pause", type=non_negative_float, default=50.0, metavar="MS",
        help="stop-and-copy pause of each switchover, ms (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--plots", type=Path, metavar="DIR",
        help="write each migration's plot (probe packets, steps) to DIR (default: a new "
        "directory under /tmp; the demo says which)",
    )  # fmt: skip
    p.add_argument(
        "--keep", action="store_true",
        help="leave the lab up afterwards (the demo says how to take it down)",
    )  # fmt: skip
