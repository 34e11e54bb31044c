"""`vportctl lab up`: bring the test bed up.

On the overlay fabric (`--fabric overlay`) the OVS, bridges and VMs are
built by `hosts` instead (a namespace and an OVS per host, controllers and
etcd in namespaces of their own); the rest is the same. On the patch fabric,
in this order, recording each step in the state file before taking it: with
`--tls`, a CA and the certificates it signs in DIR/tls (`plan.Tls`); a
private Open vSwitch (userspace datapath) in DIR/ovs; the hypervisor bridges;
the patch-port mesh between them; the VM namespaces with their veths (host
ends on the bridges, with libvirt-style external_ids); the API and peer
tokens; with controllers, a private etcd (their store, detached in DIR/etcd);
the controllers' configs and processes. Once the controllers listen, every
bridge is pointed at every controller (so OVS's first attempt connects), and
`up` waits (each step up to --wait) for the connections, then for the cluster
to settle: a leader, and a master connected to every bridge (the cluster
spreads mastership by itself). If a step fails, what was built is taken down
again (`teardown.down`) and nothing is left behind.

`--mode` (recorded in the state, see `plan.MODES`): `naive` writes
`migration.aware = false` into every controller's config; `standalone` runs
no controllers (--controllers is ignored) and no etcd, and sets every bridge
to fail_mode=standalone with no controller, so OVS forwards with its own NORMAL
learning switch (the bridges are then linked in a star, see `plan`).

`--tls` runs every channel encrypted with the lab's CA: the controllers' API
is https only, the bridges connect to `ssl:` targets (OVS's `set-ssl`), and
the controllers read the OVS's OVSDB over `ssl:` (ovsdb-server's `pssl:`).

`up` refuses (exit 1) when a lab is already up in DIR, when DIR holds the
leftovers of a crashed lab, or when something the lab needs is taken: a VM
namespace or interface name, an OpenFlow/API port, or the one userspace
datapath that a network namespace can hold. It never adopts or repairs half
a lab: `lab down` first.

The controllers are not needed for the lab to come up: a controller that
exits at once is reported with the tail of its log, and a cluster that does
not settle with what is missing (exit 3 for both); the rest stays.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vportd_lab.bed import controllers as ctl
from vportd_lab.bed import hosts, netns, pki, procs, roles, store
from vportd_lab.bed.commands import LabError, tool
from vportd_lab.bed.etcd import EtcdError
from vportd_lab.bed.messages import (
    EXIT_CONTROLLER_DOWN,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    say,
)  # fmt: skip
from vportd_lab.bed.ovs import OVSError, OvsTls, PrivateOVS
from vportd_lab.bed.plan import (
    AWARE,
    DATAPATH_TAP,
    GENEVE,
    PATCH,
    STANDALONE,
    Controller,
    Plan,
)
from vportd_lab.bed.report import describe, openflow_connections, summary
from vportd_lab.bed.state import UP, Options, State, StateError, load
from vportd_lab.bed.teardown import down, leftovers

_TOOLS = (
    "ip", "ethtool", "sysctl", "ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl",
    "ovs-appctl",
)  # fmt: skip
OVS_CERT = "ovs"  # the name of the OVS's certificate among the lab's (DIR/tls/ovs.pem)


@dataclass
class UpOptions:
    dir: Path
    hypervisors: int = 2
    vms: int = 3
    controllers: int = 1
    openflow_port: int = 6653
    api_port: int = 8080
    vportd: Path | None = None
    wait: float = 10.0
    keep_on_error: bool = False
    json: bool = False
    mode: str = AWARE  # plan.MODES
    tls: bool = False
    fabric: str = PATCH  # plan.FABRICS
    segments: int = 1
    encap: str = GENEVE  # plan.ENCAPS (overlay)


# -- up --------------------------------------------------------------------
def up(opts: UpOptions) -> int:
    try:
        options = _options(opts)
        plan = State(str(opts.dir), options).plan()
        vportd = (opts.vportd or ctl.default_vportd()) if options.controllers else None
        if vportd is not None and not (vportd.is_file() and os.access(vportd, os.X_OK)):
            raise LabError(f"--vportd {vportd}: not an executable file")
    except LabError as err:
        return _fail(opts, "bad-option", f"error: {err}", EXIT_USAGE)
    try:
        for name in (*_TOOLS, *(["openssl"] if opts.tls else [])):
            tool(name)
        _preflight(plan)
    except LabError as err:
        return _fail(opts, "cannot-start", f"cannot start: {err}", EXIT_FAILED)

    state = State(str(plan.dir), options, started_at=time.time(), vportd=str(vportd or ""))
    ovs = PrivateOVS(plan.ovs_rundir, dummy=False, tls=_ovs_tls(plan))
    started = time.monotonic()
    try:
        _build(plan, state, ovs, vportd, opts.wait)
    except (
        LabError, OVSError, EtcdError, pki.PKIError, OSError, subprocess.SubprocessError
    ) as err:  # fmt: skip
        say(f"lab up failed: {err}")
        _show_ovs_errors(ovs)
        _give_up(plan, opts)
        return _fail(opts, "failed", "", EXIT_FAILED, detail=str(err))
    except KeyboardInterrupt:
        say("lab up interrupted")
        _give_up(plan, opts)
        return _fail(opts, "interrupted", "", EXIT_INTERRUPTED, detail="interrupted")

    rc = _await_controllers(plan, state, ovs, opts.wait)
    say(f"lab is up in {plan.dir} ({time.monotonic() - started:.1f} s)")
    if opts.json:
        print(json.dumps(describe(state), indent=2))
    else:
        print(summary(describe(state)))
    return rc


def _options(opts: UpOptions) -> Options:
    """The options to record, with the etcd's ports (and with --tls the OVSDB's ssl: port)
    picked now (free ones, fixed from here on)."""
    controllers = 0 if opts.mode == STANDALONE else opts.controllers
    busy = {
        port
        for first in (opts.openflow_port, opts.api_port)
        for port in range(first, first + controllers)
    }
    client, peer, ovsdb = store.free_ports(busy, 3)
    return Options(
        opts.hypervisors, opts.vms, controllers, opts.openflow_port, opts.api_port,
        etcd_port=client, etcd_peer_port=peer, mode=opts.mode,
        tls_ovsdb_port=ovsdb if opts.tls else None, fabric=opts.fabric, segments=opts.segments,
        encap=opts.encap,
    )  # fmt: skip


def _ovs_tls(plan: Plan) -> OvsTls | None:
    """The OVS's certificate, key and CA in a lab with TLS (made by `_certificates`)."""
    tls = plan.tls
    if tls is None:
        return None
    return OvsTls(tls.key(OVS_CERT), tls.cert(OVS_CERT), tls.ca, tls.ovsdb_port)


def _fail(opts: UpOptions, code: str, message: str, rc: int, detail: str | None = None) -> int:
    """Say what went wrong (and with --json, print it as the API's error object)."""
    if message:
        say(message)
    if opts.json:
        print(json.dumps({"error": code, "detail": detail or message.partition(": ")[2]}))
    return rc


def _give_up(plan: Plan, opts: UpOptions) -> None:
    if opts.keep_on_error:
        say(f"kept what was built for inspection; `vportctl lab down --dir {plan.dir}` removes it")
    else:
        say("removing what was built")
        down(plan.dir, quiet=True)


def _preflight(plan: Plan) -> None:
    """Refuse before touching anything if a lab is here already or a resource is taken."""
    try:
        existing = load(plan.state_file)
    except StateError as err:
        raise LabError(
            f"{err}; `vportctl lab down --dir {plan.dir}` removes what is left"
        ) from None
    if existing is not None:
        how = "is already up" if existing.phase == UP else "did not finish starting"
        o = existing.options
        raise LabError(
            f"a lab {how} in {plan.dir} ({o.hypervisors} hypervisors, {o.vms} VMs, "
            f"{o.controllers} controllers): `vportctl lab status --dir {plan.dir}` shows it, "
            f"`vportctl lab down --dir {plan.dir}` removes it"
        )
    if leftovers(plan.dir):
        raise LabError(
            f"{plan.dir} holds the leftovers of an earlier lab (no state file): "
            f"run `vportctl lab down --dir {plan.dir}` first"
        )
    if plan.overlay:  # its own namespaces: no datapath, name or port of this one is used
        hosts.preflight(plan)
        return

    holders = procs.tap_holders()
    for tap in (DATAPATH_TAP, *(hv.bridge for hv in plan.hypervisors)):
        for pid in holders.get(tap, []):
            raise LabError(
                f"tap device {tap} is held by pid {pid}: another Open vSwitch with the userspace "
                f"datapath runs in this network namespace, and only one can; {_whose(pid)}"
            )
    taken = sorted(set(netns.namespaces()) & {vm.netns for vm in plan.vms})
    if taken:
        raise LabError(
            f"network namespace(s) {', '.join(taken)} exist already (another lab? "
            "`vportctl lab status`, `vportctl lab down --dir DIR`)"
        )
    names = {e["ifname"]: e for e in netns.links()}
    for vm in plan.vms:
        if vm.host_if in names:
            raise LabError(f"interface {vm.host_if} exists already (another lab?)")
    for tap in (DATAPATH_TAP, *(hv.bridge for hv in plan.hypervisors)):
        if tap in names and netns.kind(names[tap]) != "tun":
            raise LabError(f"interface {tap} exists already and is not a tap of Open vSwitch")
    for what, addr, hint in _addresses(plan):
        host, _, port = addr.rpartition(":")
        with socket.socket() as s:
            # as a server binds: connections in TIME_WAIT do not make the port busy
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, int(port)))
            except OSError as err:
                raise LabError(f"{what} {addr} is not free ({err.strerror}): {hint}") from None


def _addresses(plan: Plan) -> list[tuple[str, str, str]]:
    """(what, HOST:PORT, what to do if it is busy) of every address the lab will listen on."""
    found = []
    for c in plan.controllers:
        found.append((f"OpenFlow address of controller {c.id}", c.openflow,
                      "choose another --openflow-port"))  # fmt: skip
        found.append((f"API address of controller {c.id}", c.api, "choose another --api-port"))
    if plan.etcd is not None:
        # picked free a moment ago: only a race makes it busy
        again = "try again (the lab picks free ones)"
        found.append(("etcd client address", plan.etcd.endpoint, again))
        found.append(("etcd peer address", f"127.0.0.1:{plan.etcd.peer_port}", again))
    if plan.tls is not None:
        again = "try again (the lab picks a free one)"
        found.append(("OVSDB ssl address", plan.tls.ovsdb_listen, again))
    return found


def _whose(pid: int) -> str:
    """How to stop the process `pid`: `lab down` if it is another lab's ovs-vswitchd."""
    argv = procs.cmdline(pid) or ["?"]
    for arg in argv:
        if arg.startswith("--pidfile="):
            lab = Path(arg.partition("=")[2]).parent.parent
            if (lab / "lab.json").exists():
                return f"it is the lab in {lab}: `vportctl lab down --dir {lab}` stops it"
    return f"stop it first ({' '.join(argv)})"


def _build(plan: Plan, state: State, ovs: PrivateOVS, vportd: Path | None, wait: float) -> None:
    def save() -> None:
        state.save(plan.state_file)

    plan.dir.mkdir(parents=True, exist_ok=True)
    plan.dir.chmod(0o755)
    save()
    _certificates(plan)
    if plan.overlay:
        hosts.build(plan, state, save)
    else:
        _build_patch(plan, state, ovs, save)
    _start_controllers(plan, state, vportd, wait, save)
    if plan.overlay:
        hosts.set_controllers(plan)
    else:
        targets = [c.target for c in plan.controllers]
        for hv in plan.hypervisors:
            ovs.set_controllers(hv.bridge, targets)
    state.phase = UP
    save()


def _build_patch(plan: Plan, state: State, ovs: PrivateOVS, save: Callable[[], None]) -> None:
    """The patch fabric: one OVS with a bridge per hypervisor, patch links, the VMs."""
    say(f"starting Open vSwitch (userspace datapath) in {plan.ovs_rundir}")
    state.ovs_started = True
    save()
    ovs.start()
    if ovs.running("ovs-vswitchd") is None:
        raise LabError("ovs-vswitchd did not start")

    state.bridges = [hv.bridge for hv in plan.hypervisors]
    save()
    for hv in plan.hypervisors:
        ovs.add_bridge(hv.bridge, hv.dpid)
        if plan.mode == STANDALONE:
            # No controller ever: OVS forwards with its NORMAL learning switch.
            ovs.vsctl("set-fail-mode", hv.bridge, "standalone")
    _add_links(plan, ovs)
    say(
        "bridges "
        + ", ".join(f"{hv.bridge} (dpid {hv.dpid_hex})" for hv in plan.hypervisors)
        + (f"; {len(plan.links)} patch link(s)" if plan.links else "")
    )

    for vm in plan.vms:
        state.namespaces.append(vm.netns)
        state.host_ifs.append(vm.host_if)
        save()
        netns.add_namespace(vm.netns)
        netns.disable_ipv6(netns=vm.netns)
        netns.add_vm_link(
            netns=vm.netns, host=vm.host_if, guest=vm.guest_if, mac=vm.mac, cidr=vm.cidr,
            alias=plan.marker,
        )  # fmt: skip
        ovs.vsctl(
            "add-port", vm.hypervisor, vm.host_if, "--", "set", "Interface", vm.host_if,
            f"ofport_request={vm.port}",
            f"external_ids:attached-mac={vm.mac}", f"external_ids:iface-id={vm.iface_id}",
            f"external_ids:vm-id={vm.vm_id}", "external_ids:iface-status=active",
        )  # fmt: skip
        say(f"VM {vm.name}: {vm.mac} {vm.cidr} on {vm.hypervisor} port {vm.port} ({vm.host_if})")
    _check_ports(plan, ovs)


def _start_controllers(
    plan: Plan, state: State, vportd: Path | None, wait: float, save: Callable[[], None]
) -> None:
    """The tokens, the etcd and the controllers; returns once these listen (or `wait` s)."""
    ctl.write_token(plan.token_file)
    ctl.write_token(plan.peer_token_file)
    if plan.etcd is not None:
        say(f"starting etcd on {plan.etcd.endpoint} in {plan.etcd.workdir}")
        state.etcd_started = True
        save()
        state.etcd_pid = store.start(plan.etcd)
        save()
        say(f"etcd started (pid {state.etcd_pid})")
    for c in plan.controllers:
        assert vportd is not None
        c.config.write_text(ctl.config_text(plan, c))
        pid = ctl.start(c, vportd, plan.dir)
        state.controllers[c.id] = pid
        save()
        say(f"controller {c.id} started (pid {pid}): OpenFlow {c.target}, API {c.url}")
    # Point the bridges at the controllers once these listen: OVS's first attempt
    # then succeeds instead of failing and backing off.
    procs.wait_until(
        lambda: all(_listening(c, state) or not _running(c, state) for c in plan.controllers), wait
    )


def _add_links(plan: Plan, ovs: PrivateOVS) -> None:
    """The patch-port pairs between the bridges, in one ovs-vsctl call."""
    if not plan.links:
        return
    args: list[str] = []
    for link in plan.links:
        for bridge, name, port, peer in (
            (link.a, link.a_name, link.a_port, link.b_name),
            (link.b, link.b_name, link.b_port, link.a_name),
        ):
            args += [
                "--", "add-port", bridge, name, "--", "set", "Interface", name, "type=patch",
                f"options:peer={peer}", f"ofport_request={port}",
            ]  # fmt: skip
    ovs.vsctl(*args)


def _certificates(plan: Plan) -> None:
    """With --tls: the lab's CA, and a certificate for the OVS and each controller."""
    if plan.tls is None:
        return
    ca = pki.Authority.create(plan.tls.dir)
    for name in (OVS_CERT, *(c.id for c in plan.controllers)):
        ca.issue(name, ips=("127.0.0.1",))
    say(f"TLS: the lab's CA {ca.cert}, certificates for the OVS and each controller")


def _running(c: Controller, state: State) -> bool:
    pid = state.controllers.get(c.id)
    return pid is not None and ctl.exit_status(pid) is None and procs.alive(pid, ctl.owns(c.config))


def _listening(c: Controller, state: State) -> bool:
    pid = state.controllers.get(c.id)
    return pid is not None and procs.listens(pid, c.openflow)


def _check_ports(plan: Plan, ovs: PrivateOVS) -> None:
    """Every interface exists in OVS with the OpenFlow port it asked for and no error."""
    want = {hv.bridge: 65534 for hv in plan.hypervisors}
    for link in plan.links:
        want[link.a_name], want[link.b_name] = link.a_port, link.b_port
    for vm in plan.vms:
        want[vm.host_if] = vm.port
    rows = {r["name"]: r for r in ovs.rows("Interface", "name", "ofport", "error")}
    for name, port in want.items():
        row = rows.get(name)
        if row is None:
            raise LabError(f"Open vSwitch has no interface {name}")
        if row["error"]:
            raise LabError(f"Open vSwitch could not add {name}: {row['error']}")
        if row["ofport"] != port:
            raise LabError(f"{name} got OpenFlow port {row['ofport']}, not {port}")


def _show_ovs_errors(ovs: PrivateOVS) -> None:
    log = ovs.rundir / "ovs-vswitchd.log"
    errors = [line for line in ctl.log_tail(log, 200) if "|ERR|" in line or "|WARN|" in line]
    for line in errors[-8:]:
        say(f"  {log.name}: {line}")


def _await_controllers(plan: Plan, state: State, ovs: PrivateOVS, wait: float) -> int:
    """Wait for the connections, then for the cluster; EXIT_CONTROLLER_DOWN if a controller
    is not running or the cluster did not settle within `wait` s (each)."""
    if plan.mode == STANDALONE:
        say("standalone mode: no controllers; the bridges forward with OVS NORMAL learning")
        return EXIT_OK
    if not plan.controllers:
        say("no controllers (--controllers 0): the bridges are in secure mode and forward nothing")
        return EXIT_OK
    _await_connections(plan, state, ovs, wait)
    dead = [c for c in plan.controllers if not _running(c, state)]
    for c in dead:
        _report_dead(c, state)
    settled = _await_cluster(plan, state, wait)
    if dead or not settled:
        say(
            "the lab's switches and VMs are up, but a bridge without a running master "
            "forwards nothing (secure mode)"
        )
        return EXIT_CONTROLLER_DOWN
    return EXIT_OK


def _await_connections(plan: Plan, state: State, ovs: PrivateOVS, wait: float) -> None:
    """Wait until every bridge has a TCP connection to every running controller (or `wait` s).

    OVSDB's Controller.is_connected would say so too, but seconds later (see
    `report.connections`).
    """

    def connections() -> dict[str, int]:
        return openflow_connections(plan, ovs)

    def settled() -> bool:
        count = connections()
        return all(
            count[c.id] >= len(plan.hypervisors) for c in plan.controllers if _running(c, state)
        )

    procs.wait_until(settled, wait)
    count = connections()
    for c in plan.controllers:
        if not _running(c, state):
            continue
        if not _listening(c, state):
            pid = state.controllers[c.id]
            say(f"warning: controller {c.id} (pid {pid}) does not listen on {c.openflow}")
        elif count[c.id] < len(plan.hypervisors):
            n = len(plan.hypervisors)
            say(f"warning: only {count[c.id]} of {n} bridges connected to {c.id}")
        else:
            say(f"controller {c.id}: all {len(plan.hypervisors)} bridges connected")


def _report_dead(c: Controller, state: State) -> None:
    pid = state.controllers[c.id]
    code = ctl.exit_status(pid)
    how = f"exited with status {code}" if code is not None else "is not running"
    say(f"warning: controller {c.id} (pid {pid}) {how}; last lines of {c.log}:")
    for line in ctl.log_tail(c.log):
        say(f"  | {line}")


def _await_cluster(plan: Plan, state: State, wait: float) -> bool:
    """Wait until the running controllers agree on a leader and every bridge has a
    connected master (their REST API says so); say what is missing after `wait` s."""

    def running() -> list[Controller]:
        return [c for c in plan.controllers if _running(c, state)]

    problems: list[str] = []

    def settled() -> bool:
        nonlocal problems
        live = running()
        problems = roles.missing(plan, live) if live else ["no controller runs"]
        return not problems or not live  # with none left, nothing can change any more

    # A pause between rounds: each round asks every controller's API.
    if procs.wait_until(settled, wait, step=0.2) and not problems:
        seen = roles.view(plan, running())
        masters = ", ".join(f"{bridge} {master}" for bridge, master in seen.masters.items())
        say(f"cluster settled: leader {seen.leader}; masters {masters}")
        return True
    say(f"warning: the cluster did not settle within {wait:g} s (--wait):")
    for problem in problems:
        say(f"  {problem}")
    return False
