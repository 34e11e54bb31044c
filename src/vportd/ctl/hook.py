"""How vportctl reaches the lab package (`vportd_lab`): its one import of it.

The lab, the demo and the benchmarks live in `vportd_lab`, which imports the
controller and is never imported by it. It ships in vportd's distribution,
but its dependencies come only with the `lab` extra (`pip install
'vportd[lab]'`). vportctl finds it through `lab_hook()`, which imports the lab
package's hook module by name: it adds the commands `lab`, `demo` and `bench`
to vportctl's parser and says where a running lab's API, token and CA are.
Without the lab package or a requirement of the extra, vportctl still works;
those three commands then say what to install.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, cast

LAB_PACKAGE = "vportd_lab"
LAB_HOOK = f"{LAB_PACKAGE}.hook"
LAB_COMMANDS = ("lab", "demo", "bench")
DISTRIBUTION = "vportd"
LAB_EXTRA = "lab"
INSTALL_LAB = f"pip install '{DISTRIBUTION}[{LAB_EXTRA}]'"


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


def lab_hook(name: str = LAB_HOOK, distribution: str = DISTRIBUTION) -> LabHook | None:
    """The lab package's hook, or None when the lab is not installed: the package is
    missing, or a requirement of `distribution`'s lab extra is (`missing_lab_requirements`).

    An import error from inside an installed lab package (a bug, a dependency its
    extra does not name) is raised, not taken for a missing package.
    """
    if missing_lab_requirements(distribution):
        return None
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


def missing_lab_requirements(distribution: str = DISTRIBUTION) -> list[str]:
    """The requirements of `distribution`'s lab extra that are not installed.

    Empty when `distribution` is not installed itself (run from a source tree):
    the lab's imports then decide.
    """
    try:
        requires = metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:
        return []
    return [name for name in extra_requirements(requires, LAB_EXTRA) if not _installed(name)]


# A requirement as a distribution's metadata writes it (PEP 508):
# `matplotlib==3.11.2; extra == "lab"`.
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_EXTRA = re.compile(r"""\bextra\s*==\s*["']([^"']+)["']""")


def extra_requirements(requires: Iterable[str], extra: str) -> list[str]:
    """The names of the requirements in `requires` that come with `extra` only."""
    names = []
    for requirement in requires:
        spec, _, marker = requirement.partition(";")
        name, wanted = _NAME.match(spec), _EXTRA.search(marker)
        if name is not None and wanted is not None and wanted.group(1) == extra:
            names.append(name.group(1))
    return names


def _installed(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def add_missing_lab_commands(sub: Any) -> None:
    """`lab`, `demo` and `bench` without the lab: each says what to install (exit status 1)."""
    for command in LAB_COMMANDS:
        # Whatever follows the command, its options and --help too, is taken as is
        # (no argument starts with NUL): the answer is what to install, not a usage error.
        p = sub.add_parser(
            command, help=f"(needs the lab extra: {INSTALL_LAB})", prefix_chars="\0", add_help=False
        )
        p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        p.set_defaults(handler=_missing)


def _missing(args: argparse.Namespace) -> int:
    print(
        f"vportctl: '{args.command}' needs vportd's lab extra ({LAB_PACKAGE} and its "
        f"dependencies), which is not installed: {INSTALL_LAB}",
        file=sys.stderr,
    )
    return 1
