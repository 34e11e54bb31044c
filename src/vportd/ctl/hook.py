"""How vportctl reaches the lab package (`vportd_lab`): its one import of it.

The lab, the demo and the benchmarks live in `vportd_lab`, which imports the
controller and is never imported by it. vportctl finds them through
`lab_hook()`, which imports the lab package's hook module by name: it adds
the commands `lab`, `demo` and `bench` to vportctl's parser and says where a
running lab's API, token and CA are. Without the lab package, vportctl still
works; those three commands then say what is missing.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

LAB_PACKAGE = "vportd_lab"
LAB_HOOK = f"{LAB_PACKAGE}.hook"
LAB_COMMANDS = ("lab", "demo", "bench")


@dataclass(frozen=True, slots=True)
class LabEndpoints:
    """A running lab, as the client commands use it."""

    urls: tuple[str, ...]  # every controller's API, the first controller first
    token_file: Path
    dir: Path
    ca: Path | None = None  # the lab's CA, when it runs with TLS


class LabHook(Protocol):
    """What the lab package's hook module provides."""

    def add_commands(self, sub: Any, json_flag: argparse.ArgumentParser) -> None:
        """Add `lab`, `demo` and `bench` to vportctl's subparsers (`sub`)."""

    def find_lab(self, lab_dir: Path | None, env: Mapping[str, str]) -> LabEndpoints | None:
        """The lab in `lab_dir` (None: at the default place); None when no lab is up there.

        A `lab_dir` given explicitly without a usable lab is a `TargetError`.
        """


def lab_hook(name: str = LAB_HOOK) -> LabHook | None:
    """The lab package's hook, or None when the lab package is not installed.

    An import error from inside an installed lab package (a missing
    dependency, a bug) is raised, not taken for a missing package.
    """
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name is None or not _names_part_of(err.name, name):
            raise
        return None
    return cast(LabHook, module)


def _names_part_of(missing: str, name: str) -> bool:
    """Is `missing` the module `name` or a package it lives in?"""
    return name == missing or name.startswith(missing + ".")


def add_missing_lab_commands(sub: Any) -> None:
    """`lab`, `demo` and `bench` without the lab package: each says so (exit status 1)."""
    for command in LAB_COMMANDS:
        p = sub.add_parser(command, help=f"(needs the lab package {LAB_PACKAGE})")
        p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        p.set_defaults(handler=_missing)


def _missing(args: argparse.Namespace) -> int:
    print(
        f"vportctl: '{args.command}' needs the lab package ({LAB_PACKAGE}), which is not installed",
        file=sys.stderr,
    )
    return 1
