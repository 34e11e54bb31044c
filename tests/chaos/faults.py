"""The chaos tier's faults, their recovery, and a watch on the port states while they act.

A fault hits one thing once: `leader`, `source-master`, `destination-master`
(a controller, `kill -9`, started again `DOWNTIME` s later with the same
config), `etcd-stop` (SIGSTOP, SIGCONT `ETCD_OUTAGE` s later: requests hang)
or `etcd-kill` (`kill -9`, started again `ETCD_OUTAGE` s later on the same
data and ports: connections are refused meanwhile). Both etcd outages
outlast the controllers' lease TTL (3 s), so every session ends. The
hit is synchronous; the recovery runs in a thread of its own, so that the
migration goes on meanwhile, as it would for a VMM that knows nothing of it.
`Fault.recover()` waits for the recovery and makes sure everything runs
again, also when the case failed half-way.

`DownWatch` asks every controller for its table every few tens of
milliseconds while a case runs and keeps every VM it saw reported `down`.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from tests.chaos.harness import ChaosLab
from vportd.ctl.client import Client, ClientError

CONTROLLER_KINDS = ("leader", "source-master", "destination-master")
KINDS = (*CONTROLLER_KINDS, "etcd-stop", "etcd-kill")
DOWNTIME = 1.0  # s from a controller's kill -9 to its restart (a supervisor's restart delay)
ETCD_OUTAGE = 5.0  # s etcd stays stopped, or killed before it is started again
POLL = 0.05  # s between two rounds of DownWatch


@dataclass
class Fault:
    lab: ChaosLab
    kind: str
    victim: str | None = None  # the controller, for CONTROLLER_KINDS
    fired: bool = False
    reached_at: float | None = None  # time.monotonic() when its moment came
    fired_at: float | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)
    _errors: list[BaseException] = field(default_factory=list, repr=False)

    def describe(self) -> str:
        text = f"{self.kind} ({self.victim})" if self.victim else self.kind
        if self.reached_at is not None and self.fired_at is not None:
            text += f", hit {(self.fired_at - self.reached_at) * 1e3:.1f} ms into its moment"
        return text

    def fire(self) -> None:
        """Hit now (once); the recovery starts in the background."""
        if self.fired:
            return
        self.fired = True
        self.fired_at = time.monotonic()
        self._thread = threading.Thread(
            target=self._guarded, args=(self._hit(),), name=f"chaos-{self.kind}", daemon=True
        )
        self._thread.start()

    def _hit(self) -> Callable[[], None]:
        """Do the hit; the recovery to run after it."""
        lab, victim = self.lab, self.victim
        if self.kind in CONTROLLER_KINDS:
            assert victim is not None
            lab.kill_controller(victim)
            return lambda: _after(DOWNTIME, lambda: lab.start_controller(victim))
        if self.kind == "etcd-stop":
            lab.signal_etcd(signal.SIGSTOP)
            return lambda: _after(ETCD_OUTAGE, lambda: lab.signal_etcd(signal.SIGCONT))
        assert self.kind == "etcd-kill", self.kind
        lab.kill_etcd()
        return lambda: _after(ETCD_OUTAGE, lab.start_etcd)

    def _guarded(self, recovery: Callable[[], None]) -> None:
        try:
            recovery()
        except BaseException as err:  # reported by recover()
            self._errors.append(err)

    def recover(self) -> None:
        """Wait for the recovery; then make sure the victim runs (whatever happened)."""
        if self._thread is not None:
            self._thread.join()
        if self.kind in CONTROLLER_KINDS and self.victim is not None:
            self.lab.start_controller(self.victim)
        elif self.kind in ("etcd-stop", "etcd-kill"):
            self.lab.start_etcd()
        if self._errors:
            raise self._errors[0]


def _after(delay: float, action: Callable[[], None]) -> None:
    time.sleep(delay)
    action()


class DownWatch:
    """Every VM reported `down` by any controller while the watch runs."""

    def __init__(self, lab: ChaosLab) -> None:
        self.lab = lab
        self.seen: dict[tuple[str, str], str] = {}  # (controller, vm) -> first report
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-downwatch", daemon=True)
        self.rounds = 0

    def __enter__(self) -> DownWatch:
        self._thread.start()
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        clients = {cid: self.lab.client(cid, timeout=0.5) for cid in self.lab.ids}
        try:
            while not self._stop.is_set():
                for cid, client in clients.items():
                    self._look(cid, client)
                self.rounds += 1
                self._stop.wait(POLL)
        finally:
            for client in clients.values():
                client.close()

    def _look(self, cid: str, client: Client) -> None:
        try:
            rows = client.vports()
        except ClientError:
            return  # a killed or busy controller: nothing it says
        for row in rows:
            if row.get("port_state") != "up":
                key = (cid, str(row.get("vm")))
                self.seen.setdefault(key, f"{cid} reported {row}")

    def downs(self) -> list[str]:
        return list(self.seen.values())
