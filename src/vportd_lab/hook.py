"""The lab package's hook for vportctl (see `vportd.ctl.hook`).

vportctl imports this module by name, and only this one: it adds the
commands `lab up|status|migrate|down`, `demo` and `bench` to vportctl's
parser, and says where a running lab's API and token are (`find_lab`).
"""

from __future__ import annotations

import argparse
from typing import Any

from vportd_lab.bed.endpoints import find_lab
from vportd_lab.cli import bench, demo, lab

__all__ = ["add_commands", "find_lab"]


def add_commands(sub: Any, json_flag: argparse.ArgumentParser) -> None:
    """`lab`, `demo` and `bench`, in that order, each accepting --json after the command."""
    lab.add_lab(sub, json_flag)
    demo.add_demo(sub, json_flag)
    bench.add_bench(sub, json_flag)
