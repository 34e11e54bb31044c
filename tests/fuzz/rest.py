"""Schemathesis over the rig's API: requests made from each route's schema, checked one by one.

Every route the controller serves, northbound and east-west, in both of
schemathesis's modes (requests the schema allows and requests it does not),
to the leader or a follower (which forwards what only the leader answers),
with the route's token or a wrong one (the other realm's, none, a garbled
one). In the schema's mode, a share of the requests name what the cluster
holds (a booted VM's MAC, its switch and another, an open migration, the
leader), so that they reach past "not found" (a 201 notify, a vPort sync
applied or refused). Each request is checked: no 5xx and no traceback in any answer; a
refusal (4xx) is `{"error", "detail"}` and leaves every controller's table,
records and migrations, and the store, as they were; a request without its
realm's token is refused. Accepted requests may change the state (a 201
notify); they are only counted. Two answers in the 4xx range are no refusal
of the request and may change the state too (`_answer`): the east-west
route's 409 "sync refused" and a notify's 409 once its handshake ran and
failed; they are counted apart.

Hypothesis runs in a worker thread, so that the rig's event loop runs on
between requests as it would (leases renewed, watches delivered); each
request and each look at the state is made on that loop. Cases are shared
out over the operations and modes in rounds, each round with its own fixed
seed, until the budget is spent: an operation whose inputs run out (one
without parameters has a single request to make) leaves its share to the
others. Findings are collected, not raised inside Hypothesis, so that a run
reports every one and its counts.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode

from tests.rig.cluster import Rig
from tests.rig.fabric import VmPort
from tests.rig.http import AUTH, PEER_AUTH, PEER_PREFIX

PATIENCE = 30.0  # for one request or one look at the state
HTTP_SERVER_ERROR = 500
HTTP_CLIENT_ERROR = 400
HTTP_CONFLICT = 409
KEPT = 10  # findings of each kind kept in full (the count is always whole)
OPERATIONS = [
    ("GET", "/v1/migrations"), ("POST", "/v1/migrations"),
    ("GET", "/v1/migrations/{migration_id}"), ("DELETE", "/v1/migrations/{migration_id}"),
    ("PUT", "/v1/migrations/{migration_id}/downtime"),
    ("GET", "/v1/vports"), ("GET", "/v1/vports/{vm}"), ("GET", "/v1/cluster"),
    ("GET", "/v1/switches"), ("PUT", "/v1/peer/vports/{vm}"), ("GET", "/v1/healthz"),
    ("GET", "/healthz"), ("GET", "/metrics"),
]  # fmt: skip
# Open routes without parameters or body: no invalid request to make of them.
OPEN = {"/healthz", "/v1/healthz", "/metrics"}
CASES = [
    (method, path, mode)
    for method, path in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if not (mode is GenerationMode.NEGATIVE and path in OPEN)
]
# The token a request carries: its realm's most of the time.
TOKENS = ["valid"] * 5 + ["other realm's", "none", "garbled"]
WRONG = {
    "none": {},
    "garbled": {"Authorization": "Bearer not-the-token"},
}
KNOWN = [None, None, None, 0, 1]  # no known values, or those of VM 0 or 1 (positive mode)
T = TypeVar("T")


def _auth(path: str, token: str) -> dict[str, str]:
    peer = path.startswith(PEER_PREFIX)
    if token == "valid":
        return PEER_AUTH if peer else AUTH
    if token == "other realm's":
        return AUTH if peer else PEER_AUTH
    return WRONG[token]


def _headers(case: Any, path: str, token: str) -> dict[str, str]:
    headers = {
        str(k): str(v)
        for k, v in dict(case.headers or {}).items()
        if str(k).lower() not in {"authorization", "content-length", "host"}
        and str(k).isascii() and str(v).isascii()
    }  # fmt: skip
    return {**headers, **_auth(path, token)}


def request_of(case: Any, path: str, token: str) -> dict[str, Any]:
    """httpx's arguments for a schemathesis case, with the token chosen."""
    kwargs: dict[str, Any] = {
        "method": case.method.upper(),
        "url": case.formatted_path,
        "headers": _headers(case, path, token),
        "params": case.query or None,
    }
    body = case.body
    if type(body).__name__ != "NotSet":
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        kwargs["content"] = raw
        kwargs["headers"]["content-type"] = case.media_type or "application/json"
    return kwargs


class OnLoop:
    """Runs coroutines on the rig's loop from Hypothesis's thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(PATIENCE)


async def quiet_state(rig: Rig) -> dict[str, Any]:
    """The state, once no runtime has work queued (what an earlier request set going is done)."""
    await rig.until(lambda: all(m.runtime.idle for m in rig.live()), "every runtime idle")
    return rig.state()


@dataclass
class Tally:
    """What the requests got, and every finding (the first `KEPT` of each kind in full)."""

    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    operations: Counter[str] = field(default_factory=Counter)
    tokens: Counter[str] = field(default_factory=Counter)
    followers: int = 0  # requests sent to a follower
    named_known: int = 0  # requests naming what the cluster holds
    refusals: int = 0
    accepted_changes: int = 0  # accepted requests that changed the state (allowed)
    failed_answers: Counter[str] = field(default_factory=Counter)  # 409s that are no refusal
    findings: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def found(self, kind: str, what: str) -> None:
        self.findings[kind] += 1
        kept = self.examples.setdefault(kind, [])
        if len(kept) < KEPT:
            kept.append(what)

    def summary(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "operations": dict(sorted(self.operations.items())),
            "tokens": dict(sorted(self.tokens.items())),
            "to_followers": self.followers,
            "naming_known_values": self.named_known,
            "refusals": self.refusals,
            "accepted_changes": self.accepted_changes,
            "conflicts_that_are_no_refusal": dict(self.failed_answers),
            "server_errors": self.findings["5xx"],
            "tracebacks": self.findings["traceback"],
            "refusal_changes": self.findings["refusal changed the state"],
            "findings": dict(self.findings),
            "examples": self.examples,
        }


@dataclass
class Sent:
    """One request as sent, and what came back."""

    label: str
    path: str
    token: str
    status: int
    text: str
    migrations_changed: bool  # the leader's migrations differ after it


def name_known(
    case: Any, vm: VmPort, others: list[str], migrations: list[str], leader: str
) -> None:
    """Put what the cluster holds into a case's path and body (module docstring)."""
    params = case.path_parameters
    if isinstance(params, dict):
        if "vm" in params:
            params["vm"] = vm.mac
        if "migration_id" in params and migrations:
            params["migration_id"] = migrations[-1]
    body = case.body
    if not isinstance(body, dict):
        return
    known = {"vm": vm.mac, "source": vm.switch, "destination": others[0], "leader": leader}
    for key, value in known.items():
        if key in body:
            body[key] = value
    if isinstance(body.get("record"), dict) and "vm" in body["record"]:
        body["record"]["vm"] = vm.mac


class RestFuzzer:
    """Sends generated requests to the rig (module docstring), from Hypothesis's thread."""

    def __init__(self, rig: Rig, schema: Any, on_loop: OnLoop, vms: list[VmPort]) -> None:
        self.rig, self.schema, self.on_loop, self.vms = rig, schema, on_loop, vms
        self.clients: dict[str, httpx.AsyncClient] = {
            m.id: rig.client(m.id, auth=False) for m in rig.live()
        }
        self.tally = Tally()

    def run(self, total: int, base_seed: int) -> Tally:
        """At least `total` requests, shared out over `CASES` in rounds (module docstring)."""
        active = list(CASES)
        rounds = 0
        while self.tally.cases < total and active:
            share = math.ceil((total - self.tally.cases) / len(active))
            for method, path, mode in list(active):
                made = self.fuzz(method, path, mode, share, base_seed + rounds)
                if made < share:
                    active.remove((method, path, mode))  # its inputs ran out
            rounds += 1
        return self.tally

    def fuzz(self, method: str, path: str, mode: GenerationMode, examples: int, at: int) -> int:
        """Up to `examples` requests of one operation and mode; how many were sent."""
        made = 0
        leader = self.rig.leader.id
        targets = [leader, *(m.id for m in self.rig.followers())]

        @seed(at)
        @settings(
            max_examples=examples, deadline=None, database=None,
            suppress_health_check=list(HealthCheck),
        )  # fmt: skip
        @given(
            case=self.schema[path][method].as_strategy(mode),
            token=st.sampled_from(TOKENS),
            target=st.sampled_from([leader, leader, *targets]),
            known=st.sampled_from(KNOWN if mode is GenerationMode.POSITIVE else [None]),
        )
        def send(case: Any, token: str, target: str, known: int | None) -> None:
            nonlocal made
            made += 1
            if known is not None:
                self.name_known(case, self.vms[known])
                self.tally.named_known += 1
            self.one(case, f"{method} {path} {mode.value}", path, token, target)

        send()
        return made

    def name_known(self, case: Any, vm: VmPort) -> None:
        leader = self.rig.leader
        migrations = self.on_loop.run(_migration_ids(self.rig))
        others = [s for s in self.rig.fabric.names if s != vm.switch]
        name_known(case, vm, others, migrations, leader.id)

    def one(self, case: Any, label: str, path: str, token: str, target: str) -> None:
        before = self.on_loop.run(quiet_state(self.rig))
        response = self.on_loop.run(self.clients[target].request(**request_of(case, path, token)))
        after = self.on_loop.run(quiet_state(self.rig))
        leader = self.rig.leader.id
        self.tally.followers += target != leader
        ran = _migrations_of(before, leader) != _migrations_of(after, leader)
        sent = Sent(label, path, token, response.status_code, response.text, ran)
        self.check(sent, before, after)

    def check(self, sent: Sent, before: dict[str, Any], after: dict[str, Any]) -> None:
        tally = self.tally
        tally.cases += 1
        tally.statuses[sent.status] += 1
        tally.operations[sent.label] += 1
        tally.tokens[sent.token] += 1
        what = f"{sent.label} token {sent.token}: {sent.status} {sent.text[:300]}"
        if sent.status >= HTTP_SERVER_ERROR:
            tally.found("5xx", what)
        if "Traceback" in sent.text:
            tally.found("traceback", what)
        if sent.token != "valid" and sent.path not in OPEN and sent.status not in (401, 403):
            tally.found("wrong token not refused", what)
        kind = _answer(sent)
        if kind is not None:  # a 409 that is no refusal (`_answer`): counted, may change
            tally.failed_answers[kind] += 1
        elif HTTP_CLIENT_ERROR <= sent.status < HTTP_SERVER_ERROR:
            tally.refusals += 1
            if not _error_body(sent.text):
                tally.found("refusal not {error, detail}", what)
            if after != before:
                tally.found("refusal changed the state", what)
        elif after != before:
            tally.accepted_changes += 1


def _answer(sent: Sent) -> str | None:
    """What kind of 409 this is, if it is not a refusal of the request: the east-west
    route's "sync refused" (its documented answer, given once the leader's record is
    merged: the leader's copy is authoritative), or a notify that started a migration
    whose handshake then failed (the leader wrote its records before it sent the syncs,
    and keeps the failed migration)."""
    if sent.status != HTTP_CONFLICT:
        return None
    if sent.path.startswith(PEER_PREFIX) and '"status":"sync-refused"' in sent.text:
        return "sync refused (east-west answer)"
    if sent.label.startswith("POST /v1/migrations ") and sent.migrations_changed:
        return "notify whose handshake failed"
    return None


def _migrations_of(state: dict[str, Any], leader: str) -> object:
    held = state.get(leader)
    return None if held is None else held[2]


async def _migration_ids(rig: Rig) -> list[str]:
    return [m.id for m in rig.leader.core.migrations()]


def _error_body(text: str) -> bool:
    try:
        body = json.loads(text)
    except ValueError:
        return False
    return isinstance(body, dict) and set(body) == {"error", "detail"}
