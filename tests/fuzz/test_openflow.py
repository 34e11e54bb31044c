"""The OpenFlow endpoint fuzzed from raw sockets, on a running three-controller rig.

Fuzz connections (`ofmutate.plan`: random bytes, truncated and lying
headers, wrong versions, and mutations of the messages a real switch sends,
before, in and after the handshake) go to the controllers' OpenFlow ports in
turn, while the fabric's switches stay connected to all three. Checked:
every fuzz connection is closed by the controller, with a reason its
endpoint logged for that peer (a connection it found nothing wrong with
ends when the fuzzer hangs up: "connection closed by the peer"); nothing
is logged with a traceback; every controller runs on and answers
`/healthz`; the real switches never reconnect, their flows are what they
were and what their masters' compilers believe, and the rig is settled.

F-g: a connection whose FEATURES_REPLY names a real switch's datapath id
replaces that switch's connection (switches are not authenticated; TLS with
client certificates is the fix, made elsewhere). The fuzzer mutates a real
switch's messages, so many of its replies would name one and the check of
the real switches would mean nothing: every FEATURES_REPLY naming a real
datapath is made to name a stranger before it is sent (`hide_dpids`), and
how many were is reported. `test_a_connection_naming_a_real_datapath`
measures F-g apart: how many such connections displaced the switch, and
that the rig settles again after them.
"""

from __future__ import annotations

import contextlib
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import VM_A, VM_B
from tests.fuzz.budget import budget, report, seed
from tests.fuzz.ofmutate import Corpus, Plan, corpus, plan, with_dpid
from tests.fuzz.ofpeer import BY_THE_PEER, CloseLog, Outcome, session
from tests.rig.cluster import Rig, running

pytestmark = pytest.mark.fuzz

KEPT = 10
STRANGER = 0xF022_0000_0000_0000  # datapath ids from here on belong to no switch
STRANGERS = 16  # distinct ones the fuzz connections use


@dataclass
class OfTally:
    """What the fuzz connections sent and how each ended; the findings."""

    sessions: Counter[str] = field(default_factory=Counter)  # by kind
    messages: Counter[str] = field(default_factory=Counter)  # fuzzed messages sent, by kind
    operators: Counter[str] = field(default_factory=Counter)
    taken: int = 0  # fuzzed messages the controller read past (an echo answered after)
    refused: int = 0  # connections closed by the controller for what it read
    read_through: int = 0  # connections read to the end: closed when the fuzzer hung up
    handshakes: int = 0  # fuzz connections that got through the handshake
    hidden: int = 0  # FEATURES_REPLYs naming a real datapath, made to name a stranger
    reasons: Counter[str] = field(default_factory=Counter)
    refused_later: Counter[str] = field(default_factory=Counter)
    findings: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.messages.values())

    def found(self, kind: str, what: str) -> None:
        self.findings[kind] += 1
        kept = self.examples.setdefault(kind, [])
        if len(kept) < KEPT:
            kept.append(what)

    def add(self, outcome: Outcome, reasons: list[str]) -> None:
        """One connection, and the reasons logged for its peer since it connected."""
        p = outcome.plan
        self.sessions[p.kind] += 1
        self.messages[p.kind] += outcome.fuzzed
        self.taken += outcome.taken
        self.operators.update(p.operators)
        self.handshakes += outcome.connected
        self.hidden += outcome.hidden
        what = f"{p.kind} {list(p.operators)}: sent {bytes(outcome.sent[:96]).hex()}"
        if not outcome.closed:
            self.found("not closed by the controller", what)
            return
        if not reasons:
            self.found("closed without a logged reason", what)
            return
        reason = reasons[-1]
        self.reasons[_kind_of(reason)] += 1
        if reason == BY_THE_PEER:
            self.read_through += 1
        else:
            self.refused += 1
        if reason != BY_THE_PEER and outcome.taken == outcome.fuzzed:
            # Refused after it was read past: what a handshake request got (an error, the
            # wrong reply) fails that request, and the connection, a moment later.
            self.refused_later[_kind_of(reason)] += 1

    def summary(self) -> dict[str, Any]:
        return {
            "messages": self.total,
            "taken": self.taken,
            "messages_by_session_kind": dict(self.messages),
            "sessions": sum(self.sessions.values()),
            "sessions_by_kind": dict(self.sessions),
            "operators": dict(self.operators.most_common()),
            "refused": self.refused,
            "read_through": self.read_through,
            "fuzz_handshakes": self.handshakes,
            "real_dpids_hidden": self.hidden,
            "reasons": dict(self.reasons.most_common()),
            "refused_after_being_read_past": dict(self.refused_later),
            "findings": dict(self.findings),
            "examples": self.examples,
        }


def _kind_of(reason: str) -> str:
    """A logged reason without its numbers and details: what kind of refusal."""
    text = re.sub(r"0x[0-9a-f]+|\d+(\.\d+)?", "N", reason.split(": ", 1)[0])
    return text[:80]


def rig_corpus(rig: Rig) -> Corpus:
    switch = rig.fabric.switch("hv0")
    ports = [*sorted(switch.ports.values(), key=lambda p: p.no), switch.local_port()]
    return corpus(switch.dpid, ports, list(switch.table)[:12], VM_A.mac)


def real_switches(rig: Rig) -> dict[str, object]:
    """What the fuzz must not change: each switch's handshakes per controller, and flows."""
    return {
        name: (
            [(c.port, c.handshakes, c.ready) for c in sw.channels],
            frozenset(sw.table.core_flows()),
        )
        for name, sw in rig.fabric.switches.items()
    }


async def fuzz(rig: Rig, total: int, rng: random.Random, log: CloseLog) -> OfTally:
    """Fuzz connections, round robin over the controllers, until `total` messages."""
    tally, source = OfTally(), rig_corpus(rig)
    known = {sw.dpid for sw in rig.fabric.switches.values()}
    ports = [m.runtime.openflow.port for m in rig.members.values()]
    n = 0
    while tally.total < total:
        stranger = STRANGER + n % STRANGERS
        outcome = await session(ports[n % len(ports)], plan(rng, source, stranger), known, stranger)
        # One connection at a time: what was logged for its peer is about it.
        tally.add(outcome, log.closings.pop(outcome.peer, []))
        n += 1
    return tally


async def stopped_or_silent(rig: Rig) -> list[str]:
    """The controllers that stopped or do not answer `/healthz`."""
    bad = []
    for m in rig.members.values():
        if not m.alive or (await rig.client(m.id).get("/healthz")).status_code != 200:
            bad.append(m.id)
    return bad


async def settled(rig: Rig) -> str | None:
    """None once the rig has settled; else what it still waits for."""
    with contextlib.suppress(AssertionError):
        await rig.settle()
    return rig.unsettled()


async def test_no_crash_bad_peers_closed_with_a_reason_switches_unaffected(
    tmp_path: Path,
) -> None:
    total = budget().openflow
    with CloseLog.installed() as log:
        async with running(tmp_path) as rig:
            await rig.boot(VM_A, VM_B)
            before = real_switches(rig)
            tally = await fuzz(rig, total, random.Random(seed()), log)
            unsettled = await settled(rig)
            unchanged = real_switches(rig) == before
            down = await stopped_or_silent(rig)
    report("openflow", {
        "budget": total, **tally.summary(), "displaced": len(log.replaced),
        "exceptions": len(log.exceptions), "exception_examples": log.exceptions[:KEPT],
        "controllers_down": down, "real_switches_unchanged": unchanged, "unsettled": unsettled,
    })  # fmt: skip
    assert tally.total >= total
    assert not tally.findings, tally.examples
    assert not log.exceptions, log.exceptions[:KEPT]
    assert not down, f"stopped or silent: {down}"
    assert not log.replaced, "a fuzz connection displaced a real switch"
    assert unchanged, "a real switch reconnected, or its flows changed"
    assert unsettled is None, unsettled


async def test_a_connection_naming_a_real_datapath(tmp_path: Path) -> None:
    """F-g, measured: connections whose handshake names a real switch's datapath id, each
    followed by mutated messages. How many displaced the switch is reported; the rig must
    settle again after each (the switch reconnects, its flows are reconciled)."""
    count = max(budget().openflow // 200, 1)
    rng = random.Random(seed() + 1)
    with CloseLog.installed() as log:
        async with running(tmp_path) as rig:
            await rig.boot(VM_A, VM_B)
            source, switches = rig_corpus(rig), list(rig.fabric.switches.values())
            ports = [m.runtime.openflow.port for m in rig.members.values()]
            before = sum(c.handshakes for sw in switches for c in sw.channels)
            for n in range(count):
                dpid = switches[n % len(switches)].dpid
                real = Plan(
                    "a real datapath", source.messages["hello"][0],
                    with_dpid(source.features, dpid), tuple(source.port_desc),
                    plan(rng, source, dpid).messages,
                )  # fmt: skip
                await session(ports[n % len(ports)], real, set(), STRANGER)
                if (unsettled := await settled(rig)) is not None:
                    break
            displaced = sum(c.handshakes for sw in switches for c in sw.channels) - before
            down = await stopped_or_silent(rig)
    report("openflow_real_dpid", {
        "connections": count, "displaced": displaced, "exceptions": len(log.exceptions),
        "controllers_down": down, "unsettled": unsettled,
    })  # fmt: skip
    assert not log.exceptions, log.exceptions[:KEPT]
    assert not down, f"stopped or silent: {down}"
    assert unsettled is None, unsettled
