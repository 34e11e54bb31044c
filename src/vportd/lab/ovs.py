"""A private Open vSwitch: its own ovsdb-server and ovs-vswitchd in a run directory.

Nothing here touches the system's OVS: every path (database, sockets, pid and
log files) lives under `rundir`, and every command is pointed at it. With
`dummy=True` ovs-vswitchd runs with `--enable-dummy=override` (no traffic, no
kernel, any number per machine); otherwise it is the userspace datapath, of
which only one may run per network namespace (they clash on `ovs-netdev`).
These calls block: run them in a thread from asyncio code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")


class OVSError(RuntimeError):
    pass


@dataclass
class PrivateOVS:
    rundir: Path
    dummy: bool = True

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
        self.start_vswitchd()
        return self

    def start_ovsdb(self) -> None:
        conf = self.rundir / "conf.db"
        self._run([
            "ovsdb-server", str(conf), f"--remote=punix:{self.db_sock}",
            f"--pidfile={self._pidfile('ovsdb-server')}", f"--unixctl={self._ctl('ovsdb-server')}",
            f"--log-file={self.rundir / 'ovsdb-server.log'}", "--detach",
        ])  # fmt: skip

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

    def stop(self) -> None:
        self._kill("ovs-vswitchd")
        self._kill("ovsdb-server")

    def pid(self, daemon: str) -> int | None:
        try:
            return int(self._pidfile(daemon).read_text().strip())
        except (OSError, ValueError):
            return None

    def _kill(self, daemon: str, wait: float = 5.0) -> None:
        pid = self.pid(daemon)
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)
        os.kill(pid, signal.SIGKILL)

    # -- commands ----------------------------------------------------------
    def _run(self, args: list[str], timeout: float = 30.0) -> str:
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
