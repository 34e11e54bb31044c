"""BENCHMARKS.md: each benchmark owns one `## ` section and replaces only that one.

The file opens with one short table, rebuilt from the sections whenever one
is written: every goal of every section (the rows of the first `| goal |
target | measured | result |` table a section has), with the commit and date
its section gives. A section ends with prose that is not measured by the run
(what changed to reach the figures, what profiling found): it is kept in
`notes/NAME.md`, package data, and `notes()` reads it.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

TITLE = "# Benchmarks"
SUMMARY = "## Goals at a glance"
_GOAL_HEADER = re.compile(r"^\|\s*goal\s*\|\s*target\s*\|\s*measured\s*\|\s*result\s*\|")
_INTRO = "Every goal of the sections below; the sections say how each was measured."
_DATE = re.compile(r"^Date: (?P<date>[^,]+), commit `(?P<commit>[^`]+)`")


def notes(name: str) -> str:
    """The prose of `notes/{name}.md`, without its final newline."""
    return resources.files(__package__).joinpath("notes", f"{name}.md").read_text().rstrip("\n")


def write_markdown(path: Path, section: str) -> None:
    """Replace this benchmark's section of `path`, keeping every other one; the summary
    table at the top is rebuilt from all of them."""
    text = path.read_text() if path.exists() else ""
    sections = _sections(text)
    heading = section.splitlines()[0].strip()
    sections[heading] = section.strip("\n")
    body = [TITLE, summary(sections), *_preamble(text), *sections.values()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(body) + "\n")


def _preamble(text: str) -> list[str]:
    """What stands between the title (and the summary) and the first section: kept."""
    lines: list[str] = []
    in_summary = False
    for line in text.splitlines():
        if line.startswith("## "):
            if line.strip() != SUMMARY:
                break
            in_summary = True
        elif in_summary and line.startswith("|"):
            lines = []  # the summary's own lines end with its table
        elif line.strip() != TITLE:
            lines.append(line)
    kept = "\n".join(lines).strip("\n")
    if in_summary and kept.startswith(_INTRO):
        kept = kept[len(_INTRO) :].strip("\n")
    return [kept] if kept else []


def _sections(text: str) -> dict[str, str]:
    """The `## ` sections of a BENCHMARKS.md by heading, in order, without the summary."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line.strip(), [])
        if current is not None:
            current.append(line)
    sections.pop(SUMMARY, None)
    return {h: "\n".join(lines).strip("\n") for h, lines in sections.items()}


def summary(sections: dict[str, str]) -> str:
    """The table of every section's goals, with where and when each was measured."""
    rows = [
        "| benchmark | goal | target | measured | result | commit | date |",
        "|---|---|---:|---:|---|---|---|",
    ]
    for heading, text in sections.items():
        name = heading.removeprefix("## ").split(":")[0]
        commit, date = _measured_at(text)
        rows += [
            f"| {name} | {goal} | {target} | {measured} | {result} | `{commit}` | {date} |"
            for goal, target, measured, result in _goals(text)
        ]
    return "\n".join([SUMMARY, "", _INTRO, "", *rows])


def _measured_at(text: str) -> tuple[str, str]:
    for line in text.splitlines():
        found = _DATE.match(line.strip())
        if found:
            return found["commit"], found["date"]
    return "?", "?"


def _goals(text: str) -> list[tuple[str, str, str, str]]:
    """The rows of the section's first goal table."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _GOAL_HEADER.match(line)), None)
    if start is None:
        return []
    goals = []
    for line in lines[start + 2 :]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) != 4:  # noqa: PLR2004 (the four columns)
            break
        goals.append((cells[0], cells[1], cells[2], cells[3]))
    return goals
