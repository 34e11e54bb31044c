"""The chaos tier's hold on a running lab: its processes, its cluster's views, its store.

`ChaosLab` wraps a lab that `vportctl lab up` started (3 controllers, 3
hypervisors, 4 VMs): it kills, stops and starts the lab's controllers and
etcd by pid (restarting them as `lab up` started them, `vportd_lab.bed.restart`),
asks every controller's API what it holds, reads the store of record through
etcd's JSON gateway, and says what keeps the cluster from being settled.
Everything here blocks: the tests are synchronous, as the VMM (`lab migrate`) is.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vportd.cluster.codec import decode_record
from vportd.cluster.mastership import everywhere
from vportd.core.model import VPortRecord
from vportd.ctl.client import Client, ClientError
from vportd.ctl.target import read_token
from vportd_lab.bed import controllers as ctl
from vportd_lab.bed import procs, restart, roles, store
from vportd_lab.bed.plan import VM, Plan
from vportd_lab.bed.state import load

PREFIX = "/vportd/vports/"  # the controllers' default store prefix, as the lab configures them
TIMEOUT = 1.0  # per API request: a controller on loopback answers in milliseconds
# The table as the API shows it and as it is compared (the dpid is the API's own
# translation of `ovs`; a controller that lost a switch may not know it for a moment).
FIELDS = ("vm", "ovs", "port", "port_name", "migration_state", "port_state", "seq", "destination")
OPEN_STATES = ("preparing", "ready", "activated")


@dataclass(frozen=True)
class Roles:
    """Who leads, and who masters each bridge, as the cluster says."""

    leader: str
    masters: dict[str, str]  # bridge -> controller id


@dataclass
class ChaosLab:
    dir: Path
    token: str
    pids: dict[str, int]  # controller id -> pid (ours after a restart)
    etcd_pid: int
    etcd_url: str
    plan: Plan = field(init=False)

    def __post_init__(self) -> None:
        self.refresh()

    @classmethod
    def open(cls, lab_dir: Path) -> ChaosLab:
        state = load(lab_dir / "lab.json")
        assert state is not None and state.etcd_pid is not None, f"no lab in {lab_dir}"
        plan = state.plan()
        assert plan.etcd is not None
        return cls(
            lab_dir, read_token(plan.token_file), dict(state.controllers), state.etcd_pid,
            f"http://{plan.etcd.endpoint}",
        )  # fmt: skip

    def refresh(self) -> None:
        """The layout again from the state file: where `lab migrate` put the VMs."""
        state = load(self.dir / "lab.json")
        assert state is not None
        self.plan = state.plan()

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.plan.controllers]

    def vm(self, name: str) -> VM:
        return next(v for v in self.plan.vms if v.name == name)

    def log(self, cid: str) -> Path:
        return next(c.log for c in self.plan.controllers if c.id == cid)

    # -- processes --------------------------------------------------------------
    def _owns(self, cid: str) -> procs.Matcher:
        return ctl.owns(next(c.config for c in self.plan.controllers if c.id == cid))

    def controller_alive(self, cid: str) -> bool:
        return procs.alive(self.pids[cid], self._owns(cid))

    def kill_controller(self, cid: str) -> None:
        """SIGKILL: a crash, nothing flushed, no lease revoked."""
        self._signal(self.pids[cid], self._owns(cid), signal.SIGKILL)
        procs.wait_gone(self.pids[cid], 5.0)
        ctl.exit_status(self.pids[cid])  # reaps it if it was our child

    def stop_controller(self, cid: str) -> None:
        """SIGTERM (a clean stop: the controller revokes its lease), SIGKILL after 5 s."""
        procs.stop(self.pids[cid], self._owns(cid))
        ctl.exit_status(self.pids[cid])

    def start_controller(self, cid: str) -> None:
        """Start it again with its config, unless it runs."""
        if not self.controller_alive(cid):
            self.pids[cid] = restart.controller(self.dir, cid)

    def etcd_alive(self) -> bool:
        return procs.alive(self.etcd_pid, store.owned_by(self.dir))

    def signal_etcd(self, sig: signal.Signals) -> None:
        self._signal(self.etcd_pid, store.owned_by(self.dir), sig)

    def kill_etcd(self) -> None:
        self.signal_etcd(signal.SIGKILL)
        procs.wait_gone(self.etcd_pid, 5.0)

    def start_etcd(self) -> None:
        """Start it again on its data and ports (waits until healthy), unless it runs; a
        stopped one is continued."""
        if self.etcd_alive():
            self.signal_etcd(signal.SIGCONT)
        else:
            self.etcd_pid = restart.etcd(self.dir)

    def record_pids(self) -> None:
        """The pids of what was restarted, into the state file (no `lab migrate` runs)."""
        restart.record(self.dir, self.pids, self.etcd_pid)

    @staticmethod
    def _signal(pid: int, matches: procs.Matcher, sig: signal.Signals) -> None:
        if procs.alive(pid, matches):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    # -- the API ----------------------------------------------------------------
    def client(self, cid: str, timeout: float = TIMEOUT) -> Client:
        url = next(c.url for c in self.plan.controllers if c.id == cid)
        return Client(url, self.token, timeout, ca=self.plan.ca)

    def ask(self, cid: str, call: Callable[[Client], Any]) -> Any:
        """`call` on controller `cid`'s API; ClientError if it does not answer."""
        with self.client(cid) as c:
            return call(c)

    def roles(self) -> Roles:
        """The leader and the masters, as the first controller that answers says."""
        view = roles.view(self.plan, list(self.plan.controllers), TIMEOUT)
        assert view.error is None and view.leader is not None, f"no cluster view: {view}"
        masters = {b: m for b, m in view.masters.items() if m is not None}
        return Roles(view.leader, masters)

    def table(self, cid: str) -> dict[str, dict[str, Any]]:
        """Controller `cid`'s vPort table, by MAC (ClientError if it does not answer)."""
        rows = self.ask(cid, lambda c: c.vports())
        return {str(r["vm"]): {k: r.get(k) for k in FIELDS} for r in rows}

    def leader_migrations(self, leader: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.ask(leader, lambda c: c.migrations())
        return rows

    # -- the store of record ----------------------------------------------------
    def records(self) -> dict[str, VPortRecord]:
        """Every vPort record in etcd, by MAC (through the JSON gateway)."""
        start = PREFIX.encode()
        end = start[:-1] + bytes([start[-1] + 1])
        body = {
            "key": base64.b64encode(start).decode(),
            "range_end": base64.b64encode(end).decode(),
        }
        answer = self._etcd("/v3/kv/range", body)
        found = {}
        for kv in answer.get("kvs", []):
            key = base64.b64decode(kv["key"]).decode()
            found[key.removeprefix(PREFIX)] = decode_record(base64.b64decode(kv["value"]))
        return found

    def record(self, mac: str) -> VPortRecord | None:
        return self.records().get(mac)

    def store_table(self) -> dict[str, dict[str, Any]]:
        """The records of present VMs, as the API shows a vPort."""
        return {vm: _shown(r) for vm, r in self.records().items() if r.present}

    def etcd_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=TIMEOUT) as resp:
                return bool(json.load(resp).get("health") == "true")
        except (OSError, ValueError):
            return False

    def _etcd(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(
            f"{self.etcd_url}{path}", data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            answer: dict[str, Any] = json.load(resp)
        return answer

    # -- settled? ---------------------------------------------------------------
    def problems(self, *, quiet: bool = True) -> list[str]:
        """What keeps the cluster from being settled (empty: settled).

        Settled: every controller and etcd run and answer; every controller sees
        the same running leader, all three members healthy, every bridge mastered
        by the controller the cluster picks for three members, connected
        to it; with `quiet`, no VM migrating in the store; and every controller's
        table equal to the store's.
        """
        found = [f"controller {c} is not running" for c in self.ids if not self.controller_alive(c)]
        if not self.etcd_healthy():
            return [*found, "etcd does not answer /health"]
        found += roles.missing(self.plan, list(self.plan.controllers), TIMEOUT)
        if found:
            return found
        found += self._membership()
        found += self._tables(quiet=quiet)
        return found

    def _membership(self) -> list[str]:
        found = []
        every = sorted(self.ids)
        for cid in every:
            try:
                status = self.ask(cid, lambda c: c.status())
                switches = self.ask(cid, lambda c: c.switches())
            except ClientError as err:
                found.append(f"{cid}: {err.detail}")
                continue
            cluster, health = status["cluster"], status["health"]
            if health.get("ok") is not True:
                found.append(f"{cid} is not healthy: {health}")
            healthy = sorted(str(m["id"]) for m in cluster["members"] if m.get("healthy"))
            if healthy != every:
                found.append(f"{cid} sees healthy members {healthy}")
            wants = everywhere(sorted(str(s["name"]) for s in switches), every)
            for s in switches:
                want = wants[str(s["name"])]
                if s.get("master") != want:
                    found.append(
                        f"{cid} sees {s['name']} mastered by {s.get('master')}, not {want}"
                    )
        return found

    def _tables(self, *, quiet: bool) -> list[str]:
        try:
            stored = self.store_table()
        except (OSError, ValueError) as err:
            return [f"etcd: {err}"]
        found = []
        if quiet:
            found += [f"{vm} is migrating in the store" for vm, r in stored.items()
                      if r["migration_state"] == "migrating"]  # fmt: skip
        for cid in self.ids:
            try:
                table = self.table(cid)
            except ClientError as err:
                found.append(f"{cid}: {err.detail}")
                continue
            found += [f"{cid}: {line}" for line in table_diff(table, stored)]
        return found

    def await_settled(self, wait: float, *, quiet: bool = True) -> list[str]:
        """Wait (up to `wait` s) until settled; what is still missing then (empty: settled)."""
        deadline = time.monotonic() + wait
        while True:
            found = self.problems(quiet=quiet)
            if not found or time.monotonic() >= deadline:
                return found
            time.sleep(0.2)


def describe(rec: VPortRecord | None) -> str:
    """A record in one line."""
    if rec is None:
        return "no record"
    loc, mark = rec.loc, rec.mig
    text = f"{rec.vm} at {loc.ovs} port {loc.port} ({loc.port_name}) seq {loc.seq}"
    if mark is not None:
        text += f", migration {mark.id} {mark.source}->{mark.destination} {mark.phase.name}"
    return text


def _shown(r: VPortRecord) -> dict[str, Any]:
    """A record as the API shows its vPort (the compared fields)."""
    return {
        "vm": r.vm, "ovs": r.loc.ovs, "port": r.loc.port, "port_name": r.loc.port_name,
        "migration_state": r.migration_state.value, "port_state": r.port_state.value,
        "seq": r.seq, "destination": r.destination,
    }  # fmt: skip


def table_diff(table: dict[str, dict[str, Any]], stored: dict[str, dict[str, Any]]) -> list[str]:
    """How a controller's table differs from the store's (empty: equal)."""
    found = []
    for vm in sorted(set(table) | set(stored)):
        mine, theirs = table.get(vm), stored.get(vm)
        if mine != theirs:
            found.append(f"{vm}: table {mine} != store {theirs}")
    return found
