"""A port status that comes while the port's OVSDB events wait for their slice is
applied after them: the core sees the port before its link, and the switch's
link change is not overwritten by the older link state of OVSDB's events."""

from __future__ import annotations

from vportd.core.controller import Controller
from vportd.core.messages import EventKind, PortEvent
from vportd.node.pacing import Unfed

MAC = "02:00:00:00:0b:01"


def event(kind: EventKind, link_up: bool) -> PortEvent:
    return PortEvent(kind, "hv0", 3, MAC, "vnet3", link_up, (), "iface", "vm")


def test_a_port_status_waits_for_the_ports_last_ovsdb_event() -> None:
    core = Controller("c0")
    core.switch_seen("hv0", 1)
    core.gain_switch("hv0", [], 0.0)
    unfed = Unfed()
    ovsdb = [event(EventKind.ADD, False), event(EventKind.MODIFY, False)]  # read while down
    unfed.expect(ovsdb)

    assert unfed.hold(event(EventKind.MODIFY, True))  # the switch: the link came up

    applied = []
    for ev in ovsdb:
        applied.append(ev)
        held = unfed.fed(ev)
        if held is not None:
            applied.append(held)
    for n, ev in enumerate(applied):
        core.port_event(ev, float(n))  # no CoreError: the port is known before its link
    assert core.vport(MAC).loc.link_up
    assert not unfed.hold(event(EventKind.MODIFY, False))  # nothing waits any more


def test_a_port_with_nothing_waiting_is_not_held() -> None:
    unfed = Unfed()
    unfed.expect([event(EventKind.ADD, False)])
    unfed.forget([event(EventKind.ADD, False)])  # the runtime stopped mid-way
    assert not unfed.hold(event(EventKind.MODIFY, True))
