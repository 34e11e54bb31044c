"""How vportctl shows the API's answers to people: aligned columns and `key: value` lines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns, two spaces apart; None shows as '-'."""
    cells = [list(headers)] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def fields(doc: Mapping[str, object]) -> str:
    """A JSON object as `key: value` lines (lists comma-separated)."""
    width = max((len(k) for k in doc), default=0)
    return "\n".join(f"{k + ':':<{width + 1}} {cell(v)}" for k, v in doc.items())


def cell(value: object) -> str:
    """One value: a list comma-separated ('-' if empty), None as '-'."""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    return "-" if value is None else str(value)
