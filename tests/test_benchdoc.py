"""BENCHMARKS.md: a section replaces only itself, and the table at the top lists every goal."""

from __future__ import annotations

from pathlib import Path

from vportd_lab.bench.doc import SUMMARY, TITLE, write_markdown


def section(name: str, commit: str, measured: str) -> str:
    return "\n".join([
        f"## {name}: what it measures",
        "",
        "Command: `x`  ",
        f"Date: 2026-12-06 10:00 UTC, commit `{commit}`  ",
        "",
        "| goal | target | measured | result |",
        "|---|---:|---:|---|",
        f"| speed | >= 1 | {measured} | PASS |",
        "| same, p99 | <= 2 | 1 | PASS |",
        "",
        "Narrative.",
    ])  # fmt: skip


def test_a_section_replaces_itself_and_the_summary_follows(tmp_path: Path) -> None:
    doc = tmp_path / "BENCHMARKS.md"
    write_markdown(doc, section("Core", "aaa", "5"))
    write_markdown(doc, section("Cluster", "bbb", "7"))
    write_markdown(doc, section("Core", "ccc", "6"))
    text = doc.read_text()
    assert text.startswith(f"{TITLE}\n\n{SUMMARY}\n")
    assert text.count("## Core") == 1 and text.count(SUMMARY) == 1
    assert text.index("## Core") < text.index("## Cluster")  # the order is kept
    rows = [
        line
        for line in text.splitlines()
        if line.startswith("| Core") or line.startswith("| Cluster")
    ]
    assert rows == [
        "| Core | speed | >= 1 | 6 | PASS | `ccc` | 2026-12-06 10:00 UTC |",
        "| Core | same, p99 | <= 2 | 1 | PASS | `ccc` | 2026-12-06 10:00 UTC |",
        "| Cluster | speed | >= 1 | 7 | PASS | `bbb` | 2026-12-06 10:00 UTC |",
        "| Cluster | same, p99 | <= 2 | 1 | PASS | `bbb` | 2026-12-06 10:00 UTC |",
    ]
    assert text.rstrip().endswith("Narrative.")
