"""`vportctl bench --suite fuzz`: the fuzz tier at full size, its counts in BENCHMARKS.md.

The fuzzers drive the controller's real parts on the test fakes and the rig
(`tests/fuzz`, `tests/fakes`, `tests/rig`), which the lab does not import:
the suite runs `pytest tests/fuzz` from the repository's checkout, in a
process of its own, with `VPORTD_FUZZ_SCALE` (the cases each fuzzer sends at
least) and `VPORTD_FUZZ_REPORT` (the JSON summary the fuzz tests write) set,
then writes the `## Fuzzing` section from that summary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vportd_lab.bench.doc import notes, write_markdown
from vportd_lab.bench.machine import machine

CASES = 10_000
RESULTS = Path("bench-results") / "fuzz.json"  # next to the Markdown file
SECTION = "## Fuzzing: the REST API, the OpenFlow endpoint, the OVSDB monitor"
TOP = 8  # refusal and log reasons shown


def checkout(start: Path) -> Path | None:
    """The repository checkout holding `start` (it has `tests/fuzz`), if any."""
    for where in (start, *start.parents):
        if (where / "tests" / "fuzz" / "__init__.py").is_file() and (
            where / "pyproject.toml"
        ).is_file():
            return where
    return None


def run_fuzz_bench(output: Path, cases: int = CASES) -> int:
    """Run the fuzz tier with `cases`, write `output`'s section and the raw JSON."""
    if cases < 1:
        raise ValueError("cases must be >= 1")
    root = checkout(Path.cwd())
    if root is None:
        print("bench --suite fuzz: run it from the repository's checkout (it runs tests/fuzz)")
        return 2
    raw = (output.parent / RESULTS).resolve()
    raw.unlink(missing_ok=True)
    env = {**os.environ, "VPORTD_FUZZ_SCALE": str(cases), "VPORTD_FUZZ_REPORT": str(raw)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/fuzz"]
    print(f"fuzzing, {cases:,} cases each: {' '.join(command[1:])} (in {root})", flush=True)
    started = time.monotonic()
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    tail = done.stdout.strip().splitlines()[-1:] or ["(no output)"]
    summary: dict[str, Any] = json.loads(raw.read_text()) if raw.exists() else {}
    run = {"cases": cases, "pytest_exit": done.returncode, "seconds": round(seconds, 1),
           "pytest": tail[0], "machine": machine(),
           "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}  # fmt: skip
    summary["run"] = run
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    goals = goal_rows(summary, cases)
    write_markdown(output, markdown(summary, goals))
    print(f"  pytest: {tail[0]} ({seconds:.0f} s)")
    for goal, target, measured, result in goals:
        print(f"  {result:8} {goal}: {measured} (target {target})")
    print(f"  written: {output}, {raw}")
    return 0 if done.returncode == 0 and all(g[3] == "PASS" for g in goals) else 1


# -- the report ---------------------------------------------------------------------------------
Goal = tuple[str, str, str, str]


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "**FAIL**"


def _at_least(what: str, value: int, target: int) -> Goal:
    return (what, f"≥ {target:,}", f"{value:,}", _verdict(value >= target))


def _none(what: str, value: int) -> Goal:
    return (what, "0", f"{value:,}", _verdict(value == 0))


def _findings(part: dict[str, Any], *left_out: str) -> int:
    """A fuzzer's findings but those with rows of their own; a part not reported counts one."""
    found = part.get("findings")
    if found is None:
        return 1
    return sum(v for k, v in found.items() if k not in left_out)


def _rest_goals(r: dict[str, Any], cases: int) -> list[Goal]:
    return [
        _at_least("REST cases (schemathesis, every route, both modes, right and wrong tokens)",
                  r.get("cases", 0), cases),
        _none("same: 5xx answers or a traceback in a body",
              r.get("server_errors", 1) + r.get("tracebacks", 1)),
        _none("same: refusals (4xx) that changed a table, a migration or the store",
              r.get("refusal_changes", 1)),
        _none("same: other findings (a refusal not `{error, detail}`, a wrong token let in)",
              _findings(r, "5xx", "traceback", "refusal changed the state")),
    ]  # fmt: skip


def _openflow_goals(o: dict[str, Any], real: dict[str, Any], cases: int) -> list[Goal]:
    down = len(o.get("controllers_down", ["?"])) + len(real.get("controllers_down", ["?"]))
    touched = o.get("displaced", 1) + (not o.get("real_switches_unchanged", False))
    return [
        _at_least("OpenFlow fuzz messages (raw sockets, before, in and after the handshake)",
                  o.get("messages", 0), cases),
        _none("same: controllers stopped or not answering `/healthz`", down),
        _none("same: connections not closed, or closed without a logged reason",
              _findings(o)),
        _none("same: tracebacks logged", o.get("exceptions", 1) + real.get("exceptions", 1)),
        _none("same: real switches displaced, reconnected or with other flows; rig unsettled",
              touched + (o.get("unsettled", "?") is not None)),
    ]  # fmt: skip


def _ovsdb_goals(d: dict[str, Any], cases: int) -> list[Goal]:
    clean = bool(d.get("snapshot_clean")) and bool(d.get("table_clean"))
    return [
        _at_least("OVSDB mutations (update2s, monitor replies, echoes, framings)",
                  d.get("mutations", 0), cases),
        _none("same: runtime stopped, tracebacks logged, sessions left stuck",
              (not d.get("runtime_alive", False)) + d.get("exceptions", 1) + _findings(d)),
        ("same: the clean state served again: snapshot and vPort table as it says", "yes",
         "yes" if clean else "no", _verdict(clean)),
    ]  # fmt: skip


def goal_rows(s: dict[str, Any], cases: int) -> list[Goal]:
    """The goal table's rows; a part the run did not report fails its rows."""
    return [
        *_rest_goals(s.get("rest", {}), cases),
        *_openflow_goals(s.get("openflow", {}), s.get("openflow_real_dpid", {}), cases),
        *_ovsdb_goals(s.get("ovsdb", {}), cases),
    ]


def _table(rows: list[tuple[str, object]], head: str) -> list[str]:
    return [f"| {head} | count |", "|---|---:|", *(f"| {k} | {v:,} |" for k, v in rows)]


def _top(counts: dict[str, int]) -> list[tuple[str, object]]:
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    shown: list[tuple[str, object]] = [(k.replace("|", "/"), v) for k, v in ranked[:TOP]]
    rest = sum(v for _, v in ranked[TOP:])
    return [*shown, (f"{len(ranked) - TOP} other kinds", rest)] if rest else shown


def _rest_md(r: dict[str, Any]) -> list[str]:
    statuses = ", ".join(f"{k} {v:,}" for k, v in r.get("statuses", {}).items())
    tokens = ", ".join(f"{k} {v:,}" for k, v in r.get("tokens", {}).items())
    other = ", ".join(f"{k}: {v}" for k, v in r.get("conflicts_that_are_no_refusal", {}).items())
    return [
        f"**REST** ({r.get('cases', 0):,} requests to a three-controller rig, "
        f"{len(r.get('operations', {}))} operations and modes; `tests/fuzz/rest.py`): answers "
        f"{statuses}. Tokens: {tokens}. {r.get('to_followers', 0):,} went to a follower, "
        f"{r.get('naming_known_values', 0):,} named a booted VM, its switches, an open "
        f"migration or the leader. {r.get('refusals', 0):,} refusals, each checked to leave "
        "every controller's table, records and migrations, and the store, as they were; "
        f"{r.get('accepted_changes', 0)} accepted requests changed the state (allowed). "
        f"409s that are no refusal, counted apart: {other or 'none'}.",
        "",
    ]


def _openflow_md(o: dict[str, Any], real: dict[str, Any]) -> list[str]:
    kinds = ", ".join(f"{k} {v:,}" for k, v in o.get("messages_by_session_kind", {}).items())
    return [
        f"**OpenFlow** ({o.get('messages', 0):,} fuzz messages on {o.get('sessions', 0):,} "
        "connections to the three controllers of a rig whose three switches stay connected; "
        f"`tests/fuzz/ofmutate.py`, `ofpeer.py`): by where in the connection: {kinds}. "
        f"{o.get('taken', 0):,} were read past (an echo probe after each was answered), "
        f"{o.get('refused', 0):,} connections were refused for what they sent, "
        f"{o.get('read_through', 0):,} read to the end, {o.get('fuzz_handshakes', 0):,} got "
        f"through the handshake. F-g: {o.get('real_dpids_hidden', 0):,} FEATURES_REPLYs "
        "named a real switch's datapath id and were made to name a stranger before they were "
        f"sent; apart, {real.get('connections', 0)} connections naming a real datapath "
        f"displaced a real switch {real.get('displaced', 0)} times, and the rig settled "
        f"again after each: {'yes' if real.get('unsettled', 'x') is None else 'no'}. "
        "Reasons the endpoint logged:",
        "",
        *_table(_top(o.get("reasons", {})), "closed because"),
        "",
    ]


def _ovsdb_md(d: dict[str, Any]) -> list[str]:
    framings = ", ".join(f"{k} {v:,}" for k, v in d.get("framings", {}).items())
    return [
        f"**OVSDB** ({d.get('mutations', 0):,} mutations on {d.get('sessions', 0):,} sessions "
        "of a solo runtime's monitor with a scripted server; `tests/fuzz/ovsdbmutate.py`, "
        f"`ovsdbserver.py`): {d.get('mutated_monitor_replies', 0):,} of them monitor replies, "
        f"{d.get('valid_between', 0):,} valid notifications between them; framings: "
        f"{framings}. {d.get('taken', 0):,} were taken, {d.get('sessions_ended', 0):,} "
        "ended the session (the monitor logged why and reconnected). Reasons it logged:",
        "",
        *_table(_top(d.get("logged_reasons", {})), "session ended because"),
        "",
    ]


def markdown(s: dict[str, Any], goals: list[Goal]) -> str:
    run, m = s.get("run", {}), s.get("run", {}).get("machine", {})
    return "\n".join([
        SECTION, "",
        f"Command: `vportctl bench --suite fuzz` (= `VPORTD_FUZZ_SCALE={run.get('cases', '?')} "
        "pytest tests/fuzz`, from the checkout)  ",
        f"Date: {run.get('date', '?')}, commit `{m.get('commit', '?')}`  ",
        f"Machine: {m.get('platform', '?')}; {m.get('cpu', '?')}, {m.get('cores', '?')} cores; "
        f"{m.get('python', '?')}; pytest: {run.get('pytest', '?')}, {run.get('seconds', '?')} s",
        "",
        "| goal | target | measured | result |",
        "|---|---:|---:|---|",
        *(f"| {g} | {t} | {v} | {r} |" for g, t, v, r in goals),
        "",
        *_rest_md(s.get("rest", {})),
        *_openflow_md(s.get("openflow", {}), s.get("openflow_real_dpid", {})),
        *_ovsdb_md(s.get("ovsdb", {})),
        notes("fuzz"),
        "",
        f"Raw counts: `{RESULTS}`.",
        "",
    ])  # fmt: skip
