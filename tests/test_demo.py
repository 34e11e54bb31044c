"""`vportctl demo` runs its migrations to completion and ends with one JSON line."""

from __future__ import annotations

import io
import json

from vportd.demo import run_demo


def test_demo_completes_every_migration_and_ends_with_json() -> None:
    out = io.StringIO()

    assert run_demo(out=out) == 0

    lines = out.getvalue().splitlines()
    assert "switchover" in out.getvalue()
    report = json.loads(lines[-1])
    assert [m["state"] for m in report["migrations"]] == ["completed"] * 3
    assert [m["destination"] for m in report["migrations"]] == ["hv1", "hv2", "hv0"]


def test_demo_json_mode_prints_only_the_json_line() -> None:
    out = io.StringIO()
    assert run_demo(json_output=True, out=out) == 0
    (line,) = out.getvalue().splitlines()
    assert json.loads(line)["migrations"]
