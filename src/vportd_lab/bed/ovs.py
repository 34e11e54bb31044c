"""A private Open vSwitch: its own ovsdb-server and ovs-vswitchd in a run directory.

Nothing here touches the system's OVS: every path (database, sockets, pid and
log files) lives under `rundir`, and every command is pointed at it. With
`dummy=True` ovs-vswitchd runs with `--enable-dummy=override` (no traffic, no
kernel, any number per machine); otherwise it is the userspace datapath, of
which only one may run per network namespace (they clash on `ovs-netdev`).
These calls block: run them in a thread from asyncio code.

With `tls` (`OvsTls`: a key, its certificate and the CA), ovsdb-server also
listens for `ssl:` clients on 127.0.0.1 (`pssl:`), and ovs-vswitchd is given
the same files (`set-ssl`) for its `ssl:` controller targets; both refuse a
peer whose certificate the CA did not sign.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vportd_lab.bed import procs
from vportd_lab.bed.commands import tool

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")


class OVSError(RuntimeError):
    pass


@dataclass(frozen=True)
class OvsTls:
    """OVS's own certificate and key, the CA it checks its peers against, its pssl: port."""

    key: Path
    cert: Path
    ca: Path
    ovsdb_port: int


@dataclass
class PrivateOVS:
    rundir: Path
    dummy: bool = True
    tls: OvsTls | None = None
    # A host of the overlay lab: every command runs in its network namespace, and
    # ovsdb-server also listens on `listen` (e.g. ptcp:6640:HOST).
    netns: str | None = None
    listen: tuple[str, ...] = ()

    @property
    def db_sock(self) -> Path:
        return self.rundir / "db.sock"

    @property
    def db(self) -> str:
        return f"unix:{self.db_sock}"

    @property
    def env(self) -> dict[str, str]:
        run = str(self.rundir)
        return {
            **os.environ,
            "OVS_RUNDIR": run, "OVS_DBDIR": run, "OVS_LOGDIR": run, "OVS_SYSCONFDIR": run,
        }  # fmt: skip

    def _pidfile(self, daemon: str) -> Path:
        return self.rundir / f"{daemon}.pid"

    def _ctl(self, daemon: str) -> Path:
        return self.rundir / f"{daemon}.ctl"

    # -- life ------------------------------------------------------------
    def start(self) -> PrivateOVS:
        self.rundir.mkdir(parents=True, exist_ok=True)
        conf = self.rundir / "conf.db"
        if not conf.exists():
            self._run(["ovsdb-tool", "create", str(conf), str(SCHEMA)])
        self.start_ovsdb()
        self.vsctl("--no-wait", "init")
        if self.tls is not None:
            t = self.tls
            self.vsctl("--no-wait", "set-ssl", str(t.key), str(t.cert), str(t.ca))
        self.start_vswitchd()
        return self

    def start_ovsdb(self) -> None:
        conf = self.rundir / "conf.db"
        self._run([
            "ovsdb-server", str(conf), f"--remote=punix:{self.db_sock}", *self._pssl(),
            *(f"--remote={remote}" for remote in self.listen),
            f"--pidfile={self._pidfile('ovsdb-server')}", f"--unixctl={self._ctl('ovsdb-server')}",
            f"--log-file={self.rundir / 'ovsdb-server.log'}", "--detach",
        ])  # fmt: skip

    def _pssl(self) -> list[str]:
        """ovsdb-server's ssl: listener and its files (none without `tls`)."""
        t = self.tls
        if t is None:
            return []
        return [
            f"--remote=pssl:{t.ovsdb_port}:127.0.0.1", f"--private-key={t.key}",
            f"--certificate={t.cert}", f"--ca-cert={t.ca}",
        ]  # fmt: skip

    def start_vswitchd(self) -> None:
        args = [
            "ovs-vswitchd", self.db, f"--pidfile={self._pidfile('ovs-vswitchd')}",
            f"--unixctl={self._ctl('ovs-vswitchd')}",
            f"--log-file={self.rundir / 'ovs-vswitchd.log'}", "--detach",
        ]  # fmt: skip
        if self.dummy:
            args.append("--enable-dummy=override")
        self._run(args)

    def stop_vswitchd(self) -> None:
        self._kill("ovs-vswitchd")

    def stop_ovsdb(self) -> None:
        self._kill("ovsdb-server")

    def stop(self) -> None:
        self._kill("ovs-vswitchd")
        self._kill("ovsdb-server")

    def pid(self, daemon: str) -> int | None:
        try:
            return int(self._pidfile(daemon).read_text().strip())
        except (OSError, ValueError):
            return None

    def owns(self, daemon: str) -> procs.Matcher:
        """A command-line test: is this `daemon` of this instance (not a reused pid)?"""
        pidfile = f"--pidfile={self._pidfile(daemon)}"

        def matches(argv: procs.Cmdline) -> bool:
            return bool(argv) and Path(argv[0]).name == daemon and pidfile in argv

        return matches

    def running(self, daemon: str) -> int | None:
        """The pid of `daemon` if its pidfile names a live process of this instance."""
        pid = self.pid(daemon)
        return pid if procs.alive(pid, self.owns(daemon)) else None

    def daemons(self, daemon: str) -> list[int]:
        """Every live `daemon` of this instance, found by command line (pidfile or not)."""
        return procs.find(self.owns(daemon))

    def _kill(self, daemon: str, wait: float = 5.0) -> None:
        pids = set(self.daemons(daemon))
        pid = self.running(daemon)
        if pid is not None:
            pids.add(pid)
        for pid in sorted(pids):
            procs.stop(pid, self.owns(daemon), wait)

    def exit_cleanup(self, wait: float = 5.0) -> None:
        """Stop ovs-vswitchd with `exit --cleanup`: it deletes its datapath and tap devices.

        A plain SIGTERM leaves the userspace datapath's persistent taps
        (`ovs-netdev` and one per bridge) behind in the network namespace.
        """
        pid = self.running("ovs-vswitchd")
        if pid is None:
            return
        ctl = str(self._ctl("ovs-vswitchd"))
        with contextlib.suppress(OVSError, subprocess.TimeoutExpired):
            self._run(["ovs-appctl", "-t", ctl, "--timeout=5", "exit", "--cleanup"], wait + 2)
        if not procs.wait_gone(pid, wait):
            procs.stop(pid, self.owns("ovs-vswitchd"), 1.0)

    # -- commands ----------------------------------------------------------
    def _run(self, args: list[str], timeout: float = 30.0) -> str:
        if self.netns is not None:
            args = [tool("ip"), "netns", "exec", self.netns, *args]
        done = subprocess.run(
            args, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise OVSError(f"{' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def vsctl(self, *args: str) -> str:
        return self._run(["ovs-vsctl", f"--db={self.db}", "--timeout=20", *args])

    def appctl(self, *args: str, daemon: str = "ovs-vswitchd") -> str:
        return self._run(["ovs-appctl", "-t", str(self._ctl(daemon)), *args])

    def mgmt(self, bridge: str) -> str:
        return f"unix:{self.rundir / bridge}.mgmt"

    def ofctl(self, *args: str, bridge: str) -> str:
        cmd, *rest = args
        return self._run(["ovs-ofctl", "-O", "OpenFlow13", cmd, self.mgmt(bridge), *rest])

    def add_bridge(self, name: str, dpid: int, controllers: list[str] | None = None) -> None:
        dp = "dummy" if self.dummy else "netdev"
        self.vsctl(
            "--may-exist", "add-br", name, "--", "set", "bridge", name,
            f"datapath_type={dp}", "fail_mode=secure", "protocols=OpenFlow13",
            f"other-config:datapath-id={dpid:016x}", "other-config:disable-in-band=true",
        )  # fmt: skip
        if controllers:
            self.vsctl("set-controller", name, *controllers)

    def set_controllers(self, bridge: str, targets: list[str], max_backoff_ms: int = 1000) -> None:
        """Point `bridge` at `targets`, retrying a refused connection every `max_backoff_ms`.

        OVS's default backoff grows to 8 s, so a bridge that tried before its
        controller listened could wait that long; 1 s keeps a lab snappy.
        """
        args: list[str] = []
        refs = []
        for n, target in enumerate(targets):
            refs.append(f"@c{n}")
            args += ["--", f"--id=@c{n}", "create", "Controller", f'target="{target}"',
                     f"max_backoff={max_backoff_ms}"]  # fmt: skip
        value = f"[{','.join(refs)}]" if refs else "[]"
        self.vsctl("set", "Bridge", bridge, f"controller={value}", *args)

    def rows(self, table: str, *columns: str) -> list[dict[str, Any]]:
        """The rows of an OVSDB table as dicts (sets as lists, maps as dicts, uuids as str)."""
        out = self.vsctl("--format=json", f"--columns={','.join(columns)}", "list", table)
        doc = json.loads(out)
        return [
            dict(zip(doc["headings"], (_decode(v) for v in row), strict=True))
            for row in doc["data"]
        ]


def _decode(value: Any) -> Any:
    """One OVSDB JSON value as `ovs-vsctl --format=json` prints it."""
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):  # noqa: PLR2004
        tag, body = value
        if tag in ("uuid", "named-uuid"):
            return body
        if tag == "set":
            return [_decode(v) for v in body]
        if tag == "map":
            return {_decode(k): _decode(v) for k, v in body}
    return value


@contextlib.contextmanager
def temporary_ovs(dummy: bool = True) -> Iterator[PrivateOVS]:
    """A started private OVS in a fresh short temp dir, stopped and removed after."""
    rundir = Path(tempfile.mkdtemp(prefix="ovs"))  # short: unix sockets take 108 chars
    switch = PrivateOVS(rundir, dummy=dummy).start()
    try:
        yield switch
    finally:
        switch.stop()
        shutil.rmtree(rundir, ignore_errors=True)
