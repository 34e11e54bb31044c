"""`vportctl demo` (= `make demo`): live migrations on the real lab, measured, then torn down.

As root, in-process with the lab's own code: `bed.up` builds a private lab in
a fresh directory under /tmp with free ports, so an operator's lab in
/run/vportd-lab is never touched: by default the overlay (3 hypervisor hosts,
each a namespace with its own userspace-datapath Open vSwitch, joined by
Geneve tunnels; an etcd and 3 vportd controllers in namespaces of their own;
6 VMs in 2 segments), or with `--fabric patch` one Open vSwitch with a bridge
per hypervisor and 3 VMs. `migrate.migrate` moves one VM of each segment
around the hypervisors (hv0 -> hv1 -> hv2 -> hv0 for 3 hops) as its VMM,
under the traffic probe (with a peer of its segment); the lab's teardown
removes everything.

Progress goes to stderr (the lab's own `lab: ...` lines, with ms, and the
demo's `demo: ...` lines); stdout gets the report (a table per migration, the
cluster's leader and masters) and, last, one JSON line. `--json`: the JSON
line only on stdout. The lab is torn down before the report is printed, also
after an error, Ctrl-C or SIGTERM (exit 1 or 130, with a message saying why);
`--keep` leaves it up after a run that got that far and says how to remove it.

Only one userspace datapath can run per network namespace: the demo refuses
to start, and names the lab to stop, when one is up already.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from vportd_lab.bed import bed, netns, procs, roles, teardown
from vportd_lab.bed.announce import AnnounceError
from vportd_lab.bed.commands import LabError
from vportd_lab.bed.downtime import report_downtime
from vportd_lab.bed.migrate import MigrateError, MigrateOptions, MigrationReport, find_vm, migrate
from vportd_lab.bed.ovs import OVSError
from vportd_lab.bed.plan import (
    DATAPATH_TAP,
    OVERLAY,
    OVERLAY_NAMESPACE,
    PATCH,
    VM_NAMESPACE,
    Plan,
    make_plan,
)
from vportd_lab.bed.ports import free_block
from vportd_lab.bed.probe import ProbeError
from vportd_lab.bed.probe_plot import plot_report
from vportd_lab.bed.state import StateError, load

CONTROLLERS = HYPERVISORS = 3
VMS = {PATCH: 3, OVERLAY: 6}  # on the overlay, each host has a VM of each of 2 segments
SEGMENTS = 2  # on the overlay
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
UP_WAIT = 30.0  # s per `lab up` step: 3 controllers settling on 2 cores can take a while
# Controller ports are picked below the kernel's ephemeral range (32768+), where an
# outgoing connection could take a port between our check and the controller's bind.
_STEP_ERRORS = (
    MigrateError, LabError, OVSError, ProbeError, AnnounceError, StateError, OSError,
)  # fmt: skip


class DemoError(RuntimeError):
    """The demo cannot go on; the message is for the operator."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class DemoOptions:
    hops: int = 3  # per VM
    vms: tuple[str, ...] = ()  # the VMs to migrate; none: the first of each segment
    fabric: str = OVERLAY
    precopy: float = 1.0  # s
    pause_ms: float = 50.0  # stop-and-copy
    keep: bool = False
    json: bool = False
    plots: Path | None = None  # where each migration's plot goes; None: a new dir under /tmp


@dataclass
class Outcome:
    """What a run got to: the lab, the migrations done, the cluster, and how it ended."""

    dir: Path
    hops: list[MigrationReport] = field(default_factory=list)
    cluster: roles.View | None = None
    up_s: float | None = None
    error: str | None = None
    exit_code: int = EXIT_OK
    kept: bool = False
    left: list[str] = field(default_factory=list)  # what teardown could not remove
    plots: list[Path] = field(default_factory=list)  # one per migration (see `_plot`)


def say(message: str) -> None:
    """Progress on stderr, beside the lab's own `lab: ...` lines."""
    print(f"demo: {message}", file=sys.stderr, flush=True)


# -- before anything is built ------------------------------------------------------
def preflight(opts: DemoOptions) -> list[str]:
    """Refuse what cannot work (not root, a lab up, bad options); the VMs to migrate."""
    if os.geteuid() != 0:
        raise DemoError(
            "vportctl demo needs root: it builds a lab of network namespaces, veths, a private "
            "Open vSwitch, etcd and 3 controllers (run `sudo make demo`); "
            "`vportctl demo --sim` runs the in-process narration without root"
        )
    if opts.hops < 1:
        raise DemoError("--hops must be at least 1", EXIT_USAGE)
    plan = _layout(Path("/tmp/vportd-demo"), opts.fabric)
    try:
        vms = [find_vm(plan, name).name for name in opts.vms] or _first_of_each_segment(plan)
    except MigrateError as err:
        raise DemoError(f"--vm: {err.detail}", EXIT_USAGE) from None
    if opts.fabric == OVERLAY:
        _check_overlay_free()
    else:
        _check_datapath_free()
    return vms


def _layout(lab_dir: Path, fabric: str) -> Plan:
    """The demo lab's layout (names only: ports do not matter for it)."""
    segments = SEGMENTS if fabric == OVERLAY else 1
    return make_plan(
        lab_dir, hypervisors=HYPERVISORS, vms=VMS[fabric], controllers=CONTROLLERS,
        fabric=fabric, segments=segments,
    )  # fmt: skip


def _first_of_each_segment(plan: Plan) -> list[str]:
    first: dict[int, str] = {}
    for vm in plan.vms:
        first.setdefault(vm.segment, vm.name)
    return list(first.values())


def _check_overlay_free() -> None:
    """The overlay lab's namespace names are fixed: one overlay lab at a time."""
    taken = sorted(n for n in netns.namespaces() if OVERLAY_NAMESPACE.match(n))
    if taken:
        raise DemoError(
            f"the namespaces of another overlay lab exist ({', '.join(taken)}): `vportctl lab "
            "down --dir DIR` removes that lab; then run the demo again (or `--fabric patch`)"
        )


def _check_datapath_free() -> None:
    """One userspace datapath per network namespace, and fixed VM namespace names: a lab
    that is up (ours or an operator's) would make ours fail half-way, so say so now."""
    for pid in procs.tap_holders().get(DATAPATH_TAP, []):
        raise DemoError(
            f"a userspace-datapath Open vSwitch runs in this network namespace already (pid "
            f"{pid}, {_whose(pid)}) and only one can: stop it and run the demo again, or run "
            "`vportctl demo --sim` (in-process, no lab)"
        )
    taken = sorted(n for n in netns.namespaces() if VM_NAMESPACE.match(n))
    if taken:
        raise DemoError(
            f"the VM namespaces of another lab exist ({', '.join(taken)}): `vportctl lab down "
            "--dir DIR` removes that lab; then run the demo again"
        )


def _whose(pid: int) -> str:
    """Whose ovs-vswitchd `pid` is: a lab's (from its pidfile under DIR/ovs) or another's."""
    argv = procs.cmdline(pid) or []
    for arg in argv:
        if arg.startswith("--pidfile="):
            lab = Path(arg.partition("=")[2]).parent.parent
            if (lab / "lab.json").exists():
                return f"the lab in {lab}: `vportctl lab down --dir {lab}` stops it"
    return " ".join(argv)[:80] or "unknown"


# -- the run -----------------------------------------------------------------------
def run(opts: DemoOptions, out: TextIO | None = None) -> int:
    """The demo (see the module's docstring); its exit status."""
    stream = out or sys.stdout
    try:
        vms = preflight(opts)
    except DemoError as err:
        print(f"vportctl demo: {err}", file=sys.stderr)
        return err.exit_code
    outcome = Outcome(Path(tempfile.mkdtemp(prefix="vportd-demo-", dir="/tmp")))
    started = time.monotonic()
    with _signals_interrupt():
        try:
            _attempt(opts, vms, outcome)
        finally:
            with _shielded():
                _finish_lab(opts, outcome)
    if not opts.json:
        print(report(outcome, time.monotonic() - started, opts.fabric), file=stream)
    doc = summary_json(outcome, time.monotonic() - started, opts.fabric)
    print(json.dumps(doc), file=stream, flush=True)
    return _conclude(outcome)


def _attempt(opts: DemoOptions, vms: list[str], outcome: Outcome) -> None:
    """Build the lab and migrate; what went wrong, if anything, goes into `outcome`."""
    try:
        _build(opts, outcome)
        for vm in vms:
            _tour(opts, vm, outcome)
    except DemoError as err:
        outcome.error, outcome.exit_code = str(err), err.exit_code
    except _STEP_ERRORS as err:
        outcome.error, outcome.exit_code = f"{err}", EXIT_FAILED
    except KeyboardInterrupt:
        outcome.error, outcome.exit_code = "interrupted", EXIT_INTERRUPTED
    except Exception as err:  # a bug: the lab still goes, and the traceback helps
        traceback.print_exc()
        outcome.error, outcome.exit_code = f"{type(err).__name__}: {err}", EXIT_FAILED


def _port_block(avoid: set[int]) -> int:
    first = free_block(CONTROLLERS, avoid)
    if first is None:
        raise DemoError(f"no {CONTROLLERS} consecutive free TCP ports on 127.0.0.1")
    return first


def _build(opts: DemoOptions, outcome: Outcome) -> None:
    """`lab up` in the demo's directory, with free ports; the cluster's view once settled."""
    of_port = _port_block(set())
    api_port = _port_block(set(range(of_port, of_port + CONTROLLERS)))
    say(f"building a lab in {outcome.dir}: {lab_words(opts.fabric)}")
    t = time.monotonic()
    segments = SEGMENTS if opts.fabric == OVERLAY else 1
    up = bed.UpOptions(
        dir=outcome.dir, hypervisors=HYPERVISORS, vms=VMS[opts.fabric], controllers=CONTROLLERS,
        openflow_port=of_port, api_port=api_port, wait=UP_WAIT, fabric=opts.fabric,
        segments=segments,
    )  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):  # its summary: the report has what matters
        rc = bed.up(up)
    if rc == EXIT_INTERRUPTED:
        raise KeyboardInterrupt
    if rc != EXIT_OK:
        raise DemoError(f"the lab did not come up (lab up exit {rc}; its messages are above)")
    outcome.up_s = time.monotonic() - t
    outcome.cluster = _cluster(outcome.dir)
    say(f"lab up in {outcome.up_s:.1f} s; {_cluster_line(outcome.cluster)}")


def _plan(lab_dir: Path) -> Plan:
    state = load(lab_dir / "lab.json")
    if state is None:
        raise DemoError(f"the lab in {lab_dir} has no state file")
    return state.plan()


def _cluster(lab_dir: Path) -> roles.View:
    plan = _plan(lab_dir)
    return roles.view(plan, list(plan.controllers))


def _tour(opts: DemoOptions, vm_name: str, outcome: Outcome) -> None:
    """Migrate the VM to the next hypervisor, `hops` times, under the probe."""
    for hop in range(1, opts.hops + 1):
        plan = _plan(outcome.dir)
        vm = find_vm(plan, vm_name)
        here = int(vm.hypervisor.removeprefix("hv"))
        to = f"hv{(here + 1) % HYPERVISORS}"
        say(
            f"migration {hop}/{opts.hops}: {vm.name} ({vm.mac}, {vm.ip}, segment {vm.segment}) "
            f"{vm.hypervisor} -> {to}, pre-copy {opts.precopy:g} s, pause {opts.pause_ms:g} ms, "
            "under the probe"
        )
        done = migrate(MigrateOptions(
            outcome.dir, vm.name, to, precopy=opts.precopy, pause_ms=opts.pause_ms, probe=True,
        ))  # fmt: skip
        outcome.hops.append(done)
        report_downtime(outcome.dir, done)  # for the dashboard (a warning if it cannot)
        say(f"migration {hop}/{opts.hops} done: {_hop_line(done)}")
        _plot(opts, outcome, done)
        for warning in warnings(done):
            say(f"warning: {warning}")
    outcome.cluster = _cluster(outcome.dir)


def _plot(opts: DemoOptions, outcome: Outcome, r: MigrationReport) -> None:
    """The migration's plot into the plots directory (made on first use); a failed plot
    is a warning, not the demo's end."""
    if opts.plots is None:
        opts.plots = Path(tempfile.mkdtemp(prefix="vportd-demo-plots-", dir="/tmp"))
    path = opts.plots / f"migration-{len(outcome.hops)}-{r.source}-{r.destination}.png"
    try:
        outcome.plots.append(plot_report(r, path))
    except (OSError, ValueError) as err:
        say(f"warning: no plot for this migration: {err}")
        return
    say(f"plot of migration {len(outcome.hops)}: {path}")


def _hop_line(r: MigrationReport) -> str:
    return (
        f"handshake {_ms(r.handshake_ms)}, switchover gap {_ms(r.switchover_gap_ms)}, "
        f"longest gap {_ms(r.longest_gap_ms)}, lost {r.lost_ab}/{r.lost_ba} "
        f"({r.vm}->{r.peer}/{r.peer}->{r.vm})"
    )


def _finish_lab(opts: DemoOptions, outcome: Outcome) -> None:
    """Tear the lab down, unless --keep and it came up; say what is left, if anything."""
    if opts.keep and outcome.up_s is not None and outcome.exit_code != EXIT_INTERRUPTED:
        outcome.kept = True
        d = outcome.dir
        say(
            f"the lab is kept in {d} (--keep): `vportctl lab status --dir {d}`, "
            f"`vportctl status --lab {d}`; `vportctl lab down --dir {d}` takes it down"
        )
        return
    say("tearing the lab down")
    t = time.monotonic()
    work = teardown.Teardown(outcome.dir.absolute())
    work.run()
    outcome.left = list(work.failed)
    if outcome.dir.exists():  # teardown removes it once empty: anything in it is a leftover
        outcome.left.append(f"directory {outcome.dir}")
    if outcome.left:
        for what in outcome.left:
            say(f"error: could not remove {what}")
        say(f"`vportctl lab down --dir {outcome.dir}` retries")
    else:
        say(f"lab torn down in {time.monotonic() - t:.1f} s: nothing left")


def _conclude(outcome: Outcome) -> int:
    """The exit status, with the reason on stderr when it is not 0."""
    if outcome.error is not None:
        print(f"vportctl demo: failed: {outcome.error}", file=sys.stderr)
        return outcome.exit_code
    if outcome.left:
        print("vportctl demo: failed: the lab could not be fully removed", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


# -- signals -------------------------------------------------------------------------
@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP (a closed terminal, `kill`) stop the demo as Ctrl-C does, so the
    lab is torn down and not left behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    saved = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """Teardown runs to its end: a second Ctrl-C would leave half a lab."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    saved = {s: signal.signal(s, signal.SIG_IGN) for s in signals}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


# -- the report ----------------------------------------------------------------------
def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _sent(r: MigrationReport, direction: str) -> str:
    sent = (r.probe or {}).get(direction, {}).get("sent")
    return "" if sent is None else f" of {sent}"


def hop_table(n: int, r: MigrationReport) -> str:
    """One migration as a two-column table."""
    rows = [
        ("handshake (notify -> notify complete)", _ms(r.handshake_ms)),
        ("switchover gap (old down -> new up)", _ms(r.switchover_gap_ms)),
        ("longest gap (probe, either direction)", _ms(r.longest_gap_ms)),
        ("excess (longest gap - switchover gap)", _ms(r.excess_ms)),
        (f"lost {r.vm} -> {r.peer}", f"{r.lost_ab}{_sent(r, 'a_to_b')}"),
        (f"lost {r.peer} -> {r.vm}", f"{r.lost_ba}{_sent(r, 'b_to_a')}"),
        ("cluster converged after the source delete", _ms(r.converged_ms)),
    ]
    head = f"migration {n}: {r.vm} {r.source} -> {r.destination} ({r.migration_id}, {r.outcome})"
    width = max(len(k) for k, _ in rows)
    table = [head, *(f"  {k:<{width}}  {v:>14}" for k, v in rows)]
    return "\n".join(table + [f"  WARNING: {w}" for w in warnings(r)])


def warnings(r: MigrationReport) -> list[str]:
    """Directions that lost most of their packets: the probe's longest gap (between two
    received packets) cannot show a direction that received almost nothing."""
    found = []
    for direction, src, dst in (("a_to_b", r.vm, r.peer), ("b_to_a", r.peer, r.vm)):
        d = (r.probe or {}).get(direction, {})
        sent, received = d.get("sent", 0), d.get("received", 0)
        if sent and received < sent / 2:
            found.append(
                f"{src} -> {dst}: {received} of {sent} packets arrived: the network did not "
                "carry this direction (run with --keep and see the controllers' logs)"
            )
    return found


def _cluster_line(view: roles.View | None) -> str:
    if view is None:
        return "cluster: not seen"
    if view.error is not None:
        return f"cluster: unknown ({view.error})"
    masters = ", ".join(f"{b} {m or 'none'}" for b, m in view.masters.items())
    return f"cluster: leader {view.leader}; masters {masters} (as {view.source} sees it)"


def lab_words(fabric: str) -> str:
    if fabric == OVERLAY:
        return (
            f"{HYPERVISORS} hypervisor hosts (a namespace and a userspace OVS each, Geneve "
            f"tunnels), etcd and {CONTROLLERS} controllers, {VMS[OVERLAY]} VMs in {SEGMENTS} "
            "segments"
        )
    return (
        f"{CONTROLLERS} controllers on etcd, {HYPERVISORS} hypervisors (bridges of one "
        f"userspace OVS), {VMS[PATCH]} VMs"
    )


def report(outcome: Outcome, elapsed_s: float, fabric: str = OVERLAY) -> str:
    """The report for people: a table per migration, the cluster, how it ended."""
    lab = (
        f"{lab_words(fabric)}; up in {outcome.up_s:.1f} s"
        if outcome.up_s is not None
        else "the lab did not come up"
    )
    lines = [f"vportd demo: {len(outcome.hops)} live migration(s), probe every 1 ms", lab, ""]
    for n, hop in enumerate(outcome.hops, 1):
        lines += [hop_table(n, hop), ""]
    lines.append(_cluster_line(outcome.cluster))
    if outcome.plots:
        lines.append(f"plots (one per migration): {outcome.plots[0].parent}")
    where = f"kept in {outcome.dir}" if outcome.kept else "torn down"
    how = "completed" if outcome.error is None else f"FAILED: {outcome.error}"
    lines.append(f"{how} in {elapsed_s:.1f} s; lab {where}")
    return "\n".join(lines)


def hop_json(r: MigrationReport) -> dict[str, Any]:
    return {
        "vm": r.vm, "from": r.source, "to": r.destination, "handshake_ms": r.handshake_ms,
        "switchover_gap_ms": r.switchover_gap_ms, "longest_gap_ms": r.longest_gap_ms,
        "lost_ab": r.lost_ab, "lost_ba": r.lost_ba, "excess_ms": r.excess_ms,
        "converged_ms": r.converged_ms, "peer": r.peer, "migration_id": r.migration_id,
        "outcome": r.outcome, "warnings": warnings(r),
    }  # fmt: skip


def _lab_json(outcome: Outcome, fabric: str) -> dict[str, Any]:
    up_s = None if outcome.up_s is None else round(outcome.up_s, 3)
    return {
        "dir": str(outcome.dir), "fabric": fabric, "controllers": CONTROLLERS,
        "hypervisors": HYPERVISORS, "vms": VMS[fabric],
        "segments": SEGMENTS if fabric == OVERLAY else 1, "up_s": up_s, "kept": outcome.kept,
        "left": outcome.left,
    }  # fmt: skip


def summary_json(outcome: Outcome, elapsed_s: float, fabric: str = OVERLAY) -> dict[str, Any]:
    """The final JSON line: the migrations, the cluster, the lab, how it ended."""
    view = outcome.cluster
    return {
        "migrations": [hop_json(r) for r in outcome.hops],
        "cluster": None if view is None else {"leader": view.leader, "masters": view.masters},
        "lab": _lab_json(outcome, fabric),
        "elapsed_s": round(elapsed_s, 3),
        "ok": outcome.error is None and not outcome.left,
        "error": outcome.error,
        "plots": [str(p) for p in outcome.plots],
    }
