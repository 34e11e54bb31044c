"""`vportctl lab migrate VM --to HV`: the lab acting as the VMM of a live migration.

The order is libvirt's and QEMU's (DESIGN §1 step 4, §5):

1. notify: `Client.migrate` (the same call as `vportctl migrate`), from where
   the lab state says the VM is; `handshake_ms` is its round trip;
2. prepare: the destination tap, a veth `vm{k}h{i}` whose host end joins
   hv{i} (same libvirt external_ids, `ofport_request` k+1) and whose guest end
   `eth0m` (same MAC, kept down, tx offload off) is created in the VM's
   namespace *now*: namespace moves stall the userspace datapath (§5);
3. precopy: `--precopy` s while the traffic still reaches the source;
4. switchover: the old `eth0` goes down, a stop-and-copy `--pause`, then the
   new interface takes the name `eth0`, the IP and the guest's neighbours and
   comes up (two `ip -batch` runs: link state, names, addresses only); the
   switchover gap is from just before the first to just after the second;
5. announce: a gratuitous ARP and a RARP on the new interface, from a helper
   started in the namespace during the pre-copy (`announce.Announcer`);
6. cleanup: the source port is deleted from its bridge and the old veth
   removed; then the command waits until every controller shows the VM
   not-migrating on the destination.

`--fail-at notify|precopy|switchover` fails the migration as a VMM would:
right after notify complete, in the middle of the pre-copy, or after the
stop-and-copy pause (the source VM resumes: its old interface comes up
again). The migration is then aborted through the API, the destination tap
removed, and the command waits until the cluster shows the VM not-migrating
at the source.

The lab state (`lab.json`) records the migration before the new tap exists
and the VM's new place once the switchover is done, atomically each time, so
`lab down` removes the new veths also after a crash, and the next
`lab migrate` finishes (or undoes) a migration a crash interrupted.

The lab's mode (`lab up --mode`, see `plan.MODES`) decides what the VMM
does besides the emulation itself, which is the same in every mode: `aware`
as above; `naive` sends no notify (and so has nothing to abort), the
controllers see only the port events and the announcements; `standalone` has
no controllers: no notify, no abort, and no waiting for a cluster.

`MigrateOptions.hook`, when set, is called with the name of each moment
the migration reaches (`MOMENTS`), so that a test can act at that moment (a
fault, a restart): `notify` just before the notify is sent; `handshake` in a
thread of its own while the notify is under way (the notify's answer is
taken only once the hook has returned too); `precopy` once the pre-copy has
begun (the pre-copy goes on for the rest of its length after the hook);
`switchover` right after the new interface is up and announced; `deleted`
right after the source port's delete, before waiting for the cluster. Only
the moments reached are called (a failed migration stops earlier).

`migrate()` is the entry point (for `vportctl lab migrate`, the demo and the
benchmark); it says its progress on stderr.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vportd.ctl.client import EXIT_UNAVAILABLE, EXIT_USAGE, Client, ClientError
from vportd.ctl.target import Target, connect, resolve_target
from vportd_lab.bed import converge, guest
from vportd_lab.bed.announce import AnnounceError, Announcer
from vportd_lab.bed.commands import LabError
from vportd_lab.bed.endpoints import find_lab
from vportd_lab.bed.messages import EXIT_FAILED, say
from vportd_lab.bed.ovs import OVSError
from vportd_lab.bed.plan import AWARE, STANDALONE, VM, Plan
from vportd_lab.bed.probe import Probe
from vportd_lab.bed.probe_report import ProbeReport
from vportd_lab.bed.state import Migration, Placement, State, StateError, load
from vportd_lab.bed.taps import taps_for

FAIL_PHASES = ("notify", "precopy", "switchover")
# The moments at which `MigrateOptions.hook` is called (see the module's docstring).
MOMENTS = ("notify", "handshake", "precopy", "switchover", "deleted")
NEW_GUEST_IF = "eth0m"  # the new interface in the VM until the switchover names it eth0
PROBE_PORT = 47123


class MigrateError(RuntimeError):
    """The migration could not be done; `exit_code` is the CLI's answer, `code` a short tag."""

    def __init__(self, code: str, detail: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.exit_code = exit_code


@dataclass
class MigrateOptions:
    dir: Path
    vm: str  # name (vm0), namespace or MAC
    to: str  # hypervisor name (hv1)
    precopy: float = 1.0  # s
    pause_ms: float = 50.0  # stop-and-copy
    fail_at: str | None = None  # one of FAIL_PHASES
    probe: bool = False
    peer: str | None = None  # the probe's other VM; None: chosen (see `pick_peer`)
    settle: float = 0.3  # s the probe keeps running after the source delete
    wait: float = 10.0  # s for notify retries and for the cluster to converge
    announce_rounds: int = 1
    json: bool = False
    # Called with each of MOMENTS as the migration reaches it (not from the command line).
    hook: Callable[[str], None] | None = None


@dataclass
class MigrationReport:
    """What one `lab migrate` did; times in ms. `switchover_*_ms`: from the probe's t0."""

    vm: str
    mac: str
    source: str
    destination: str
    outcome: str  # "migrated" or "aborted" (--fail-at)
    fail_at: str | None
    migration_id: str | None
    handshake_ms: float
    switchover_gap_ms: float | None  # old interface down -> new one up (None if never switched)
    switchover_start_ms: float | None
    switchover_end_ms: float | None
    longest_gap_ms: float | None  # the probe's, max over both directions
    longest_gap_ab_ms: float | None  # VM -> peer
    longest_gap_ba_ms: float | None  # peer -> VM
    lost_ab: int | None
    lost_ba: int | None
    excess_ms: float | None  # longest gap minus switchover gap (DESIGN §5)
    converged_ms: float  # from the end of the last step until every controller agreed
    mode: str = AWARE  # the lab's (plan.MODES): what the VMM did besides the emulation
    phases: dict[str, float] = field(default_factory=dict)  # phase -> ms
    host_if: str = ""  # the VM's host-side port now
    port: int = 0
    peer: str | None = None
    announce_errors: list[str] = field(default_factory=list)
    probe: dict[str, Any] | None = None
    timeline: dict[str, float] = field(default_factory=dict)  # step -> ms from the probe's t0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the lab ---------------------------------------------------------------------
@dataclass
class _Lab:
    dir: Path
    state: State
    plan: Plan

    def save(self) -> None:
        self.state.save(self.plan.state_file)
        self.plan = self.state.plan()

    def add_tap(self, vm: VM, rec: Migration) -> None:
        taps_for(self.plan).add_tap(vm, rec)

    def remove_tap(self, host: str, host_if: str) -> None:
        taps_for(self.plan).remove_tap(host, host_if)


@contextmanager
def _locked(lab_dir: Path) -> Iterator[None]:
    """One `lab migrate` at a time per lab (a lock on the directory itself: no file left)."""
    fd = os.open(lab_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MigrateError("busy", f"another `lab migrate` runs on {lab_dir}") from None
        yield
    finally:
        os.close(fd)


def _open_lab(lab_dir: Path) -> _Lab:
    try:
        state = load(lab_dir / "lab.json")
        if state is None:
            raise MigrateError("no-lab", f"no lab is up in {lab_dir}", EXIT_USAGE)
        plan = state.plan()
    except (StateError, LabError) as err:
        raise MigrateError("no-lab", str(err), EXIT_USAGE) from None
    if not plan.controllers and plan.mode != STANDALONE:
        raise MigrateError("no-controllers", "the lab has no controllers to migrate with", 2)
    return _Lab(lab_dir, state, plan)


def find_vm(plan: Plan, name: str) -> VM:
    """A VM by name, namespace or MAC; MigrateError if the lab has none such."""
    for vm in plan.vms:
        if name.lower() in (vm.name, vm.netns, vm.mac):
            return vm
    known = ", ".join(vm.name for vm in plan.vms)
    raise MigrateError("unknown-vm", f"no VM {name!r} in the lab (it has {known})", EXIT_USAGE)


def pick_peer(plan: Plan, vm: VM, destination: str, wanted: str | None = None) -> VM:
    """The probe's other VM, of the VM's segment: `wanted`, else one on neither the source
    nor the destination, else one on the destination, else one on the source."""
    others = [v for v in plan.vms if v.name != vm.name and v.segment == vm.segment]
    if wanted is not None:
        peer = find_vm(plan, wanted)
        if peer not in others:
            why = f"the probe's peer must be another VM of {vm.name}'s segment ({vm.segment})"
            raise MigrateError("bad-peer", why, EXIT_USAGE)
        return peer
    for keep in (
        lambda v: v.hypervisor not in (vm.hypervisor, destination),
        lambda v: v.hypervisor == destination,
        lambda v: True,
    ):
        found = [v for v in others if keep(v)]
        if found:
            return found[0]
    raise MigrateError("no-peer", f"the probe needs a second VM in segment {vm.segment}", 2)


# -- the cluster -----------------------------------------------------------------
def _await_cluster(lab: _Lab, mac: str, ovs: str, port: int, wait: float) -> float:
    """Wait until every controller shows the VM not-migrating on `ovs` port `port`; ms."""
    ms, pending = converge.await_cluster(lab.plan, mac, ovs, port, wait)
    if pending:
        raise MigrateError(
            "not-converged",
            f"after {wait:g} s, controller(s) {', '.join(pending)} do not show {mac} "
            f"not-migrating on {ovs} port {port}",
            EXIT_UNAVAILABLE,
        )
    return ms


# -- the migration ---------------------------------------------------------------
@dataclass
class _Run:
    """One migration's moving parts and clock marks (CLOCK_MONOTONIC ns)."""

    lab: _Lab
    opts: MigrateOptions
    vm: VM
    rec: Migration
    client: Client | None  # None in a standalone lab: no API
    probe: Probe | None = None
    peer: VM | None = None
    announcer: Announcer | None = None
    marks: dict[str, int] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)
    old_ifindex: int = 0
    neighbours: list[tuple[str, str]] = field(default_factory=list)
    tap_added: bool = False
    switched: bool = False
    announced: dict[str, Any] = field(default_factory=dict)  # the announcer's answer

    def mark(self, name: str) -> int:
        self.marks[name] = now = time.monotonic_ns()
        return now

    def phase(self, name: str, since: int) -> float:
        ms = (time.monotonic_ns() - since) / 1e6
        self.phases[name] = round(ms, 3)
        say(f"{name}: {ms:.1f} ms")
        return ms


def migrate(opts: MigrateOptions) -> MigrationReport:
    """Migrate a lab VM (see the module's docstring); MigrateError if it cannot."""
    if opts.fail_at is not None and opts.fail_at not in FAIL_PHASES:
        raise MigrateError("bad-option", f"--fail-at must be one of {', '.join(FAIL_PHASES)}", 2)
    lab_dir = Path(opts.dir).absolute()
    if not lab_dir.is_dir():
        raise MigrateError("no-lab", f"no lab is up in {lab_dir}", EXIT_USAGE)
    with _locked(lab_dir):
        lab = _open_lab(lab_dir)
        if lab.state.migration is not None:
            recover(lab)
        return _migrate(lab, opts)


def _migrate(lab: _Lab, opts: MigrateOptions) -> MigrationReport:
    vm = find_vm(lab.plan, opts.vm)
    hvs = {hv.name for hv in lab.plan.hypervisors}
    if opts.to not in hvs:
        raise MigrateError("unknown-hypervisor", f"no hypervisor {opts.to!r} in the lab", 2)
    if opts.to == vm.hypervisor:
        raise MigrateError("same-hypervisor", f"{vm.name} is on {opts.to} already", EXIT_USAGE)
    peer = pick_peer(lab.plan, vm, opts.to, opts.peer) if opts.probe else None
    client = _connect(lab)
    rec = Migration(
        vm=vm.name, source=vm.hypervisor, destination=opts.to, old_host_if=vm.host_if,
        new_host_if=f"{vm.name}h{opts.to.removeprefix('hv')}", new_guest_if=NEW_GUEST_IF,
    )  # fmt: skip
    run = _Run(lab, opts, vm, rec, client, peer=peer)
    say(f"migrating {vm.name} ({vm.mac}) from {rec.source} to {rec.destination}")
    try:
        return _steps(run)
    except BaseException:
        _undo(run)
        raise
    finally:
        if client is not None:
            client.close()
        if run.announcer is not None:
            run.announcer.close()
        if run.probe is not None:
            run.probe.close()


def _target(lab: _Lab) -> Target:
    """The lab's API, token and CA, as `vportctl --lab DIR` finds them ($VPORTD_API,
    $VPORTD_TOKEN_FILE and $VPORTD_CA first)."""
    return resolve_target(None, None, lab.dir, os.environ, labs=find_lab)


def _connect(lab: _Lab) -> Client | None:
    """The VMM's API client (None in a standalone lab, which has no controllers)."""
    if not lab.plan.controllers:
        return None
    try:
        return connect(_target(lab))
    except ClientError as err:
        raise MigrateError(err.code, err.detail, err.exit_code) from None


def _steps(run: _Run) -> MigrationReport:
    lab, rec, vm, opts = run.lab, run.rec, run.vm, run.opts
    # Intent first: the new tap is named in the state before it exists.
    lab.state.migration = rec
    lab.state.host_ifs.append(rec.new_host_if)
    lab.save()
    if run.peer is not None:
        run.probe = Probe(vm.netns, vm.ip, run.peer.netns, run.peer.ip, PROBE_PORT,
                          series_bin=0.001)  # fmt: skip
        run.probe.start()
        time.sleep(0.2)  # a baseline before the notify
        say(f"probe running between {vm.name} ({vm.ip}) and {run.peer.name} ({run.peer.ip})")
    if lab.plan.notifies:
        _moment(run, "notify")
        _notify(run)
    else:
        run.rec.phase = "prepare"  # naive and standalone: the VMM tells the network nothing
    if opts.fail_at == "notify":
        return _fail(run)
    _prepare(run)
    if _precopy(run):
        return _fail(run)
    if _switchover(run):
        return _fail(run)
    _cleanup(run)
    _moment(run, "deleted")
    converged = _await_cluster(lab, vm.mac, rec.destination, guest.port_of(vm), opts.wait)
    if lab.plan.controllers:
        say(f"every controller shows {vm.name} not-migrating on {rec.destination}: "
            f"{converged:.1f} ms")  # fmt: skip
    return _finish(run, "migrated", converged)


def _notify(run: _Run) -> None:
    t = run.mark("notify")
    assert run.client is not None, "only an aware lab notifies, and it has controllers"
    try:
        with _alongside(run, "handshake"):
            doc, _ = run.client.migrate(run.vm.mac, run.rec.source, run.rec.destination,
                                        wait=run.opts.wait)  # fmt: skip
    except ClientError as err:
        raise MigrateError(err.code, f"notify refused: {err.detail}", err.exit_code) from None
    run.phase("handshake", t)
    run.mark("notified")
    run.rec.migration_id = str(doc.get("id"))
    run.rec.phase = "prepare"
    run.lab.save()
    say(f"notify complete: migration {run.rec.migration_id}")


def _moment(run: _Run, name: str) -> None:
    if run.opts.hook is not None:
        run.opts.hook(name)


@contextmanager
def _alongside(run: _Run, name: str) -> Iterator[None]:
    """The hook's moment `name` in a thread of its own while the body runs; joined after."""
    hook = run.opts.hook
    if hook is None:
        yield
        return
    failed: list[BaseException] = []

    def call() -> None:
        try:
            hook(name)
        except BaseException as err:  # raised again in the caller's thread
            failed.append(err)

    thread = threading.Thread(target=call, name=f"migrate-{name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join()
    if failed:
        raise failed[0]


def _prepare(run: _Run) -> None:
    t = run.mark("prepare")
    run.tap_added = True  # from here on, undo removes it (recorded already)
    run.lab.add_tap(run.vm, run.rec)
    run.mark("port_added")
    run.old_ifindex = guest.ifindex(run.vm.netns, run.vm.guest_if)
    run.phase("prepare", t)
    run.rec.phase = "precopy"
    run.lab.save()


def _precopy(run: _Run) -> bool:
    """Pre-copy: traffic still at the source; the announcer starts meanwhile. True: fail."""
    t = run.mark("precopy")
    if run.opts.announce_rounds:  # 0: a silent VM (no GARP, no RARP)
        run.announcer = Announcer(run.vm.netns, run.rec.new_guest_if, run.vm.mac, run.vm.ip,
                                  rounds=run.opts.announce_rounds)  # fmt: skip
        run.announcer.wait_ready()
    _moment(run, "precopy")
    length = run.opts.precopy / 2 if run.opts.fail_at == "precopy" else run.opts.precopy
    time.sleep(max(0.0, length - (time.monotonic_ns() - t) / 1e9))
    run.phase("precopy", t)
    return run.opts.fail_at == "precopy"


def _switchover(run: _Run) -> bool:
    """Old down, stop-and-copy, new up, announce; True if --fail-at switchover resumed the
    source instead."""
    vm, rec = run.vm, run.rec
    rec.phase = "switchover"
    run.lab.save()
    run.neighbours = guest.neighbours(vm.netns, vm.guest_if)
    t = run.mark("switchover_start")
    guest.switch_down(vm)
    run.mark("old_down")
    time.sleep(run.opts.pause_ms / 1e3)
    if run.opts.fail_at == "switchover":
        guest.resume_source(vm, run.old_ifindex, run.neighbours)
        run.mark("switchover_end")
        run.phase("switchover", t)
        return True
    run.mark("new_up_start")
    guest.switch_up(vm, rec.new_guest_if, run.neighbours)
    run.mark("switchover_end")
    _split(run)
    if run.announcer is not None:
        run.announcer.go()
    run.mark("announce")
    run.switched = True
    # The VM lives at the destination now: record it before anything else can fail.
    placement = Placement(rec.destination, guest.port_of(vm), rec.new_host_if)
    run.lab.state.placements[vm.name] = placement
    rec.phase = "cleanup"
    run.lab.save()
    run.phase("switchover", t)
    _moment(run, "switchover")
    return False


def _split(run: _Run) -> None:
    """How the switchover gap divides: taking the old link down, the pause, the new one up."""
    m = run.marks
    run.phases["switch_down"] = round((m["old_down"] - m["switchover_start"]) / 1e6, 3)
    run.phases["switch_up"] = round((m["switchover_end"] - m["new_up_start"]) / 1e6, 3)


def _cleanup(run: _Run) -> None:
    t = run.mark("cleanup")
    rec = run.rec
    run.lab.remove_tap(rec.source, rec.old_host_if)
    run.mark("source_deleted")
    state = run.lab.state
    state.host_ifs = [n for n in state.host_ifs if n != rec.old_host_if]
    state.migration = None
    run.lab.save()
    run.phase("cleanup", t)


def _fail(run: _Run) -> MigrationReport:
    """The VMM gave up: abort through the API, remove the destination tap, VM at the source."""
    t = run.mark("abort")
    say(f"failing the migration at {run.opts.fail_at} (--fail-at): abort")
    if run.rec.migration_id and run.client is not None:
        try:
            run.client.abort(run.rec.migration_id)
        except ClientError as err:
            raise MigrateError(err.code, f"abort refused: {err.detail}", err.exit_code) from None
    if run.tap_added:
        run.lab.remove_tap(run.rec.destination, run.rec.new_host_if)
    _forget_new_tap(run)
    run.phase("abort", t)
    converged = _await_cluster(run.lab, run.vm.mac, run.rec.source, run.vm.port, run.opts.wait)
    say(f"every controller shows {run.vm.name} not-migrating on {run.rec.source}: "
        f"{converged:.1f} ms")  # fmt: skip
    return _finish(run, "aborted", converged)


def _forget_new_tap(run: _Run) -> None:
    state = run.lab.state
    state.host_ifs = [n for n in state.host_ifs if n != run.rec.new_host_if]
    state.migration = None
    run.lab.save()


def _undo(run: _Run) -> None:
    """After an error (or Ctrl-C): leave the VM where it runs, abort, remove the spare tap."""
    with suppress(Exception):
        if run.switched:
            run.lab.remove_tap(run.rec.source, run.rec.old_host_if)
            run.lab.state.host_ifs.remove(run.rec.old_host_if)
            run.lab.state.migration = None
            run.lab.save()
            return
        if run.rec.migration_id and run.client is not None:
            with suppress(ClientError):
                run.client.abort(run.rec.migration_id)
        if run.tap_added:
            run.lab.remove_tap(run.rec.destination, run.rec.new_host_if)
        if run.old_ifindex:
            guest.resume_source(run.vm, run.old_ifindex, run.neighbours)
        if run.lab.state.migration is not None:
            _forget_new_tap(run)


def recover(lab: _Lab) -> None:
    """Finish what a crashed `lab migrate` left: keep the veth the VM runs on, remove the other."""
    rec = lab.state.migration
    assert rec is not None
    vm = find_vm(lab.plan, rec.vm)
    say(f"an interrupted migration of {rec.vm} ({rec.source} -> {rec.destination}) is cleaned up")
    moved = vm.host_if == rec.new_host_if
    if not moved and rec.migration_id:
        # the VMM's abort first: a destination delete alone may be taken as the VM leaving
        with suppress(ClientError), connect(_target(lab)) as c:
            c.abort(rec.migration_id)
    bridge, spare = (rec.source, rec.old_host_if) if moved else (rec.destination, rec.new_host_if)
    with suppress(LabError, OVSError):
        lab.remove_tap(bridge, spare)
    if not moved:
        with suppress(LabError):
            # the old interface may have been left down (or renamed) by the switchover
            guest.resume_source(vm, guest.ifindex_by_peer(vm), [])
    lab.state.host_ifs = [n for n in lab.state.host_ifs if n != spare]
    lab.state.migration = None
    lab.save()


def _finish(run: _Run, outcome: str, converged_ms: float) -> MigrationReport:
    report: ProbeReport | None = None
    if run.probe is not None:
        time.sleep(run.opts.settle)
        report = run.probe.stop()
        run.probe = None
    if run.announcer is not None:
        with suppress(AnnounceError, ValueError):
            run.announced = dict(run.announcer.result())
    return _report(run, outcome, converged_ms, report)


def _report(
    run: _Run, outcome: str, converged_ms: float, probe: ProbeReport | None
) -> MigrationReport:
    m = run.marks
    start, end = m.get("switchover_start"), m.get("switchover_end")
    gap = (end - start) / 1e6 if start and end else None

    def rel(ns: int | None) -> float | None:
        if ns is None or probe is None:
            return None
        return round((ns - probe.t0_ns) / 1e6, 3)

    ab = probe.a_to_b if probe else None
    ba = probe.b_to_a if probe else None
    longest = probe.longest_gap_ms if probe else None
    errors = run.announced.get("errors", [])
    placed = run.lab.plan.vms[[v.name for v in run.lab.plan.vms].index(run.vm.name)]
    return MigrationReport(
        vm=run.vm.name, mac=run.vm.mac, source=run.rec.source, destination=run.rec.destination,
        outcome=outcome, fail_at=run.opts.fail_at, migration_id=run.rec.migration_id,
        handshake_ms=run.phases.get("handshake", 0.0),
        switchover_gap_ms=round(gap, 3) if gap is not None else None,
        switchover_start_ms=rel(start), switchover_end_ms=rel(end),
        longest_gap_ms=longest, longest_gap_ab_ms=ab.longest_gap_ms if ab else None,
        longest_gap_ba_ms=ba.longest_gap_ms if ba else None,
        lost_ab=ab.lost if ab else None, lost_ba=ba.lost if ba else None,
        excess_ms=round(longest - gap, 3) if longest is not None and gap is not None else None,
        converged_ms=round(converged_ms, 3), mode=run.lab.plan.mode, phases=dict(run.phases),
        host_if=placed.host_if, port=placed.port, peer=run.peer.name if run.peer else None,
        announce_errors=[str(e) for e in errors], probe=probe.to_dict() if probe else None,
        timeline={k: t for k, v in m.items() if (t := rel(v)) is not None},
    )  # fmt: skip
