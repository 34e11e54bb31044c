"""BENCHMARKS.md: each benchmark owns one `## ` section and replaces only that one.

A section ends with prose that is not measured by the run (what changed to
reach the figures, what profiling found): it is kept in `notes/NAME.md`,
package data, and `notes()` reads it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def notes(name: str) -> str:
    """The prose of `notes/{name}.md`, without its final newline."""
    return resources.files(__package__).joinpath("notes", f"{name}.md").read_text().rstrip("\n")


def write_markdown(path: Path, section: str) -> None:
    """Replace this benchmark's section of `path`, keeping every other section."""
    heading = section.splitlines()[0].strip()
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == heading), None)
    if start is None:
        body = text.rstrip("\n") + "\n\n" + section
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        before = "\n".join(lines[:start]).rstrip("\n")
        after = "\n".join(lines[end:]).strip("\n")
        body = (before + "\n\n" if before else "") + section + ("\n" + after if after else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body.rstrip("\n") + "\n")
