"""Where a running lab's API and token are, for vportctl's client commands (`--lab DIR`).

A lab is up in a directory when its state file is there (`DIR/lab.json`);
its controllers' APIs, its token file and (with TLS) its CA follow from the
state's plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from vportd.ctl.client import TargetError
from vportd.ctl.hook import LabEndpoints
from vportd_lab.bed.commands import LabError
from vportd_lab.bed.plan import default_dir
from vportd_lab.bed.state import StateError, load


def find_lab(lab_dir: Path | None, env: Mapping[str, str]) -> LabEndpoints | None:
    """The lab's controllers, token file and CA; None when no lab is up at the default place
    ($VPORTD_LAB_DIR, else /run/vportd-lab).

    An explicit `lab_dir` without a usable state is a TargetError; at the
    default place it only means there is no lab.
    """
    where = lab_dir or default_dir(env)
    try:
        state = load(where / "lab.json")
        plan = state.plan() if state else None
    except (StateError, LabError) as err:
        if lab_dir is None:
            return None
        raise TargetError(f"--lab {lab_dir}: {err}") from None
    if plan is None:
        if lab_dir is None:
            return None
        raise TargetError(f"--lab {lab_dir}: no lab is up there (no lab.json)")
    urls = tuple(c.url for c in plan.controllers)
    return LabEndpoints(urls, plan.token_file, plan.dir, plan.ca)
