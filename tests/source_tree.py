"""A copy of the source tree as a build or a checkout has it, without what an install added.

A build writes into the tree it builds, and the project's editable install
leaves `src/vportd.egg-info` (metadata that `importlib.metadata` finds on
`sys.path`); the copy has neither.
"""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def copy_source(root: Path) -> Path:
    """pyproject.toml, the README and src/ copied into `root/source` (no caches, no egg-info)."""
    where = root / "source"
    where.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, where / name)
    junk = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(REPO / "src", where / "src", ignore=junk)
    return where
