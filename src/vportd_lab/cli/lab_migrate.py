"""`vportctl lab migrate VM --to HV`: a live migration of a lab VM, the lab acting as its VMM.

Progress goes to stderr, the report (or one JSON object, --json) to stdout;
the migration itself is `vportd_lab.bed.migrate`'s.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from vportd.ctl.argtypes import count, non_negative_float, positive_float
from vportd_lab.bed.announce import AnnounceError
from vportd_lab.bed.commands import LabError
from vportd_lab.bed.downtime import report_downtime
from vportd_lab.bed.messages import EXIT_FAILED, EXIT_OK, EXIT_USAGE, say
from vportd_lab.bed.migrate import (
    FAIL_PHASES,
    MigrateError,
    MigrateOptions,
    MigrationReport,
    migrate,
)
from vportd_lab.bed.ovs import OVSError
from vportd_lab.bed.probe import ProbeError
from vportd_lab.bed.probe_plot import plot_report

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
its longest gap per direction beside the switchover gap. --plot FILE.png (with
--probe) draws the packets received per ms each way, with the migration's
steps (notify, notify complete, destination port added, old interface down,
new interface up, source deleted) as vertical lines.

--json prints one object: vm, mac, source, destination, outcome, fail_at,
migration_id, handshake_ms, switchover_gap_ms, switchover_start_ms and
switchover_end_ms (from the probe's t0), longest_gap_ms (max of both
directions), longest_gap_ab_ms, longest_gap_ba_ms, lost_ab, lost_ba (ab: VM
to peer), excess_ms, converged_ms, phases (ms each), host_if, port, peer,
announce_errors, probe (the probe's report; null without --probe),
timeline (each step's time, ms from the probe's t0; empty without --probe).

exit status:
  0  migrated (with --fail-at: aborted and the VM back at the source)
  1  a step failed (undone: the VM left where it runs), or the cluster
     refused the notify (unknown VM/OVS, another migration running)
  2  usage: bad options, unknown VM or hypervisor, no lab in --dir
  3  cluster unavailable (as vportctl migrate), or the controllers did not
     all show the expected result within --wait
  4  the API token was refused
"""


def add_lab_migrate(lab_sub: Any, parents: list[argparse.ArgumentParser]) -> Any:
    """`lab migrate`'s parser (its handler is the caller's to set: `run`, as root)."""
    lp = lab_sub.add_parser(
        "migrate",
        help="live-migrate a lab VM between hypervisors through the cluster (as its VMM)",
        description=_LAB_MIGRATE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=parents,
    )
    lp.add_argument("vm", metavar="VM", help="the VM: name (vm0) or MAC")
    lp.add_argument("--to", required=True, metavar="HV", help="destination hypervisor (hv1)")
    lp.add_argument(
        "--precopy", type=non_negative_float, default=1.0, metavar="S",
        help="pre-copy phase, seconds (default: %(default)s)",
    )  # fmt: skip
    lp.add_argument(
        "--pause", type=non_negative_float, default=50.0, metavar="MS",
        help="stop-and-copy pause between old down and new up, ms (default: %(default)s)",
    )  # fmt: skip
    lp.add_argument("--fail-at", choices=FAIL_PHASES, help="fail the migration in this phase")
    lp.add_argument(
        "--probe", nargs="?", const="", default=None, metavar="PEER_VM",
        help="run the traffic probe between the VM and PEER_VM (default: chosen)",
    )  # fmt: skip
    lp.add_argument(
        "--plot", type=Path, metavar="FILE.png",
        help="with --probe: draw the probe's packets and the migration's steps to FILE.png",
    )  # fmt: skip
    lp.add_argument(
        "--settle", type=non_negative_float, default=0.3, metavar="S",
        help="how long the probe runs on after the source delete (default: %(default)s)",
    )  # fmt: skip
    lp.add_argument(
        "--wait", type=positive_float, default=10.0, metavar="S",
        help="notify retries and waiting for the cluster, seconds (default: %(default)s)",
    )  # fmt: skip
    lp.add_argument(
        "--announce-rounds", type=count(0, 100), default=1, metavar="N",
        help="GARP+RARP rounds after the switchover; 0: a silent VM, which announces "
        "nothing (its first frame at the destination is all the network sees) "
        "(default: %(default)s)",
    )  # fmt: skip
    return lp


def run(args: argparse.Namespace, as_json: bool) -> int:
    """`lab migrate` on the lab in `args.dir`: its exit status."""
    opts = MigrateOptions(
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
    if args.plot is not None and args.probe is None:
        return _error(opts, "bad-option", "lab migrate: --plot needs --probe", EXIT_USAGE)
    return _migrate(opts, args.plot)


def summary(r: MigrationReport) -> str:
    """The report for people."""
    head = (
        f"{r.vm} ({r.mac}) {r.source} -> {r.destination}: {r.outcome}"
        + (f" (--fail-at {r.fail_at})" if r.fail_at else "")
        + f", migration {r.migration_id}, now on port {r.port} ({r.host_if})"
    )
    lines = [head, f"  handshake (notify -> notify complete): {r.handshake_ms:.1f} ms"]
    lines += [f"  {name:<10} {ms:9.1f} ms" for name, ms in r.phases.items()]
    if r.switchover_gap_ms is not None:
        lines.append(f"  switchover gap (old down -> new up): {r.switchover_gap_ms:.1f} ms")
    lines.append(f"  cluster converged {r.converged_ms:.1f} ms after the last step")
    if r.probe is not None:
        lines.append(f"  probe with {r.peer}: longest gap {r.longest_gap_ms:.1f} ms "
                     f"(excess over the switchover: {_num(r.excess_ms)} ms)")  # fmt: skip
        for label, gap, lost in (("vm->peer", r.longest_gap_ab_ms, r.lost_ab),
                                 ("peer->vm", r.longest_gap_ba_ms, r.lost_ba)):  # fmt: skip
            lines.append(f"    {label}: longest gap {_num(gap)} ms, lost {lost}")
        if r.switchover_start_ms is not None:
            span = f"{r.switchover_start_ms:.1f}..{_num(r.switchover_end_ms)}"
            lines.append(f"    switchover at {span} ms from the probe's t0")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _migrate(opts: MigrateOptions, plot: Path | None) -> int:
    try:
        report = migrate(opts)
    except MigrateError as err:
        return _error(opts, err.code, f"lab migrate failed: {err.detail}", err.exit_code)
    except (LabError, OVSError, ProbeError, AnnounceError, OSError) as err:
        return _error(opts, "failed", f"lab migrate failed: {err}", EXIT_FAILED)
    except KeyboardInterrupt:
        return _error(opts, "interrupted", "lab migrate interrupted (undone)", 130)
    print(json.dumps(report.to_dict()) if opts.json else summary(report))
    report_downtime(Path(opts.dir).absolute(), report)  # (a warning if it cannot)
    return EXIT_OK if plot is None else _plot(opts, report, plot)


def _plot(opts: MigrateOptions, report: MigrationReport, path: Path) -> int:
    try:
        plot_report(report, path)
    except (OSError, ValueError) as err:
        return _error(opts, "plot-failed", f"lab migrate: the plot failed: {err}", EXIT_FAILED)
    say(f"plot written to {path}")
    return EXIT_OK


def _error(opts: MigrateOptions, code: str, message: str, rc: int) -> int:
    say(message)
    if opts.json:
        print(json.dumps({"error": code, "detail": message.partition(": ")[2]}))
    return rc
