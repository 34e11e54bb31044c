"""The lab's controllers: their TOML config, their process, their log.

Each controller runs as `vportd --config DIR/cN.toml`, detached (own session,
stdin closed, stdout and stderr to DIR/cN.log), so it outlives `vportctl lab up`.
Every controller, also a lone one, keeps its table in the lab's etcd (one code
path: the cluster elects a leader and spreads the bridges' mastership itself);
the VMM's token and the controllers' own (east-west) token are two files. In
a lab with TLS each controller has a `[tls]` section (the lab's CA, its own
certificate) and reads the OVS's OVSDB over `ssl:`.
The lab never depends on what the controller does: it starts the process,
records its pid and, if the process dies, reports it with the tail of its log.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections import deque
from pathlib import Path

from vportd_lab.bed import procs
from vportd_lab.bed.commands import LabError, tool
from vportd_lab.bed.plan import NAIVE, OVSDB_TCP_PORT, Controller, Plan


def default_vportd() -> Path:
    """The `vportd` next to this Python (the venv's), else the one on PATH."""
    here = Path(sys.executable).parent / "vportd"
    if here.exists():
        return here
    found = shutil.which("vportd")
    if found is None:
        raise LabError(f"vportd is not installed next to {sys.executable} nor on PATH (make env)")
    return Path(found)


def config_text(plan: Plan, ctrl: Controller) -> str:
    """The controller's config; validated against vportd's own schema before it is used."""
    from vportd.node.config import parse_config  # noqa: PLC0415 (pydantic: only `up` needs it)

    def q(value: object) -> str:  # a TOML basic string (JSON's escapes are valid TOML)
        return json.dumps(str(value))

    assert plan.etcd is not None, "a lab with controllers has an etcd"
    tls = plan.tls
    ovsdb = f"unix:{plan.ovs_rundir / 'db.sock'}" if tls is None else tls.ovsdb_remote
    remotes = [ovsdb]
    if plan.overlay:  # every host's OVSDB over the management network
        remotes = [f"tcp:{hv.mgmt_ip}:{OVSDB_TCP_PORT}" for hv in plan.hypervisors]
    text = f"""\
# vportd controller {ctrl.id} of the lab in {plan.dir}, written by `vportctl lab up`.
[controller]
id = {q(ctrl.id)}

[openflow]
listen = {q(ctrl.openflow)}

[ovsdb]
remotes = [{", ".join(q(r) for r in remotes)}]

[api]
listen = {q(ctrl.api)}
token_file = {q(plan.token_file)}
peer_token_file = {q(plan.peer_token_file)}

[store]
kind = "etcd"
endpoints = [{q(plan.etcd.endpoint)}]

[topology]
# No LLDP: on the patch fabric the controller reads the patch ports' options:peer from
# OVSDB; on the overlay the hosts are joined by their tunnel ports.
lldp = false

[logging]
level = "info"

[migration]
# The downtime benchmark and the chaos tier move one VM back and forth many times a
# minute: no flap damping in the lab.
flap_moves = 1000000
"""
    if plan.mode == NAIVE:
        # The downtime benchmark's baseline: no notify accepted, a port delete is the VM leaving.
        text += "aware = false\n"
    if tls is not None:
        # Every channel encrypted, the API https only (its URL: https://{listen}).
        text += (
            f"\n[tls]\nca = {q(tls.ca)}\ncert = {q(tls.cert(ctrl.id))}\n"
            f"key = {q(tls.key(ctrl.id))}\n"
        )
    parse_config(text, str(ctrl.config))
    return text


def write_token(path: Path) -> None:
    """A fresh random bearer token, readable by root only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (secrets.token_urlsafe(32) + "\n").encode())
    finally:
        os.close(fd)


def owns(config: Path) -> procs.Matcher:
    """A command-line test: is this `vportd --config CONFIG`?"""
    return owned_by(config, exact=True)


def owned_by(path: Path, *, exact: bool = False) -> procs.Matcher:
    """A command-line test: a `vportd` whose --config is `path` (or lies under it)."""
    target = str(path)

    def inside(value: str) -> bool:
        return value == target if exact else value.startswith(target.rstrip("/") + "/")

    def matches(argv: procs.Cmdline) -> bool:
        if not any(Path(a).name == "vportd" for a in argv[:2]):
            return False
        for n, arg in enumerate(argv):
            if arg == "--config" and n + 1 < len(argv) and inside(argv[n + 1]):
                return True
            if arg.startswith("--config=") and inside(arg.partition("=")[2]):
                return True
        return False

    return matches


# The controllers this process started, so that their exit can be noticed (and
# reaped) while `lab up` waits; they outlive vportctl, re-parented to init.
_children: dict[int, subprocess.Popen[bytes]] = {}


def start(ctrl: Controller, vportd: Path, cwd: Path) -> int:
    """Start one controller, detached; return its pid."""
    where = [] if ctrl.netns is None else [tool("ip"), "netns", "exec", ctrl.netns]
    with ctrl.log.open("ab") as log:
        proc = subprocess.Popen(
            [*where, str(vportd), "--config", str(ctrl.config)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=cwd, start_new_session=True, close_fds=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    _children[proc.pid] = proc
    return proc.pid


def exit_status(pid: int) -> int | None:
    """The exit code of a controller this process started, once it has ended; else None."""
    proc = _children.get(pid)
    return None if proc is None else proc.poll()


def log_tail(path: Path, lines: int = 15) -> list[str]:
    try:
        with path.open(errors="replace") as f:
            return [line.rstrip("\n") for line in deque(f, maxlen=lines)]
    except OSError:
        return []
