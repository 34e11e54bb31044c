"""Start a lab's controller or etcd again, as `lab up` started it: same config, data and ports.

For a controller or etcd that was killed (a crash, a test's fault):
`controller` runs `vportd --config DIR/cN.toml` again, detached, its log
appended to DIR/cN.log; `etcd` runs the lab's etcd again on its data dir
and both ports, so the controllers find their keys, leases and revisions.
Neither waits for the cluster to settle. `record` writes the new pids into
the state file, for `lab status` (`lab down` finds the processes by their
command line anyway); call it while no `lab migrate` runs, since that
rewrites the state file from its own copy.
"""

from __future__ import annotations

from pathlib import Path

from vportd_lab.bed import controllers as ctl
from vportd_lab.bed import store
from vportd_lab.bed.commands import LabError
from vportd_lab.bed.plan import Controller
from vportd_lab.bed.state import State, load


def _state(lab_dir: Path) -> State:
    state = load(lab_dir / "lab.json")
    if state is None:
        raise LabError(f"no lab is up in {lab_dir}")
    return state


def _controller(state: State, cid: str) -> Controller:
    for c in state.plan().controllers:
        if c.id == cid:
            return c
    raise LabError(f"the lab has no controller {cid!r}")


def controller(lab_dir: Path, cid: str) -> int:
    """Start controller `cid` again with its config; its new pid."""
    state = _state(lab_dir)
    if not state.vportd:
        raise LabError(f"the lab in {lab_dir} runs no controllers")
    return ctl.start(_controller(state, cid), Path(state.vportd), lab_dir)


def etcd(lab_dir: Path) -> int:
    """Start the lab's etcd again on its data dir and ports, wait until healthy; its pid."""
    plan = _state(lab_dir).plan()
    if plan.etcd is None:
        raise LabError(f"the lab in {lab_dir} has no etcd")
    return store.start(plan.etcd)


def record(
    lab_dir: Path, controllers: dict[str, int] | None = None, etcd_pid: int | None = None
) -> None:
    """Write restarted processes' pids into the lab's state file."""
    state = _state(lab_dir)
    state.controllers.update(controllers or {})
    if etcd_pid is not None:
        state.etcd_pid = etcd_pid
    state.save(lab_dir / "lab.json")
