"""The protocol under a random schedule: a hypothesis state machine over the sim cluster.

Three controllers (c0 leads) master five switches: four hypervisors hv0..hv3 on a
spine `sp`, with direct links hv0-hv1 and hv2-hv3, so that some MACs need a flow
off the default path. Rules boot, flap and remove VMs (never one in a migration
the VMM drives), and a VMM migrates them: notify, then, once notify complete,
destination port add, source link down, destination link up (or the VM's RARP
first), source port delete, one step per turn, interleaved with everything else.
A migration's script, drawn with its notify, may instead end it early with an
abort or by letting its deadline pass. The same notify is repeated now and then.
What the sim queues (each record written to the store of record, for every
controller's watch; the leader's vPort syncs and their answers) is delivered
one item at a time in any order, some twice, or all at once; time passes in
small steps (syncs expire) or jumps past a deadline.

The machine keeps the physical truth: which (switch, port) each VM's live
interface is on, and whether its link is up. The invariants:

(a) once everything is delivered, every controller holds the records the store
    of record holds, tombstones and version fields included (each table is the
    join of the same writes, so anything less than equality is a replica that
    will diverge);
(b) a VM under a notified migration (answer ok, not yet ended) is never `down`
    on a controller whose entry carries that migration's mark (after every step);
(c) after a migration completes and everything is delivered, every switch sends
    the VM's MAC to its new port only, and no flow outputs to the old port;
(d) once everything is delivered, no entry is `migrating` unless the VM is in a
    migration the VMM is still driving, and the leader runs exactly those;
and, once everything is delivered: every VM is where it runs, with its link
state, on every controller, reachable from every switch at that port; a removed
VM is on none and reachable from none; no flow outputs to an edge port without
a live VM; the destination of each migration not yet active (and only it) holds
the VM's arrival flow. The VMM also checks its answers: a notify is answered
"ready" or refused, a repeated notify gets the same migration, a new one a new
id, and a migration fails after notify complete only when its deadline passed.

Run with --hypothesis-show-statistics to see how the migrations ended.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import TypeVar

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from vportd.core.controller import Controller
from vportd.core.coordinator import Status, Timeouts
from vportd.core.errors import CoreError
from vportd.core.flow import (
    CLASSIFY_TABLE,
    COOKIE_HANDOVER,
    COOKIE_KIND_MASK,
    FLOOD_TABLE,
    FORWARD_TABLE,
    Output,
)
from vportd.core.messages import EventKind, NotifyRequest, PortEvent
from vportd.core.model import Phase, PortState, VPortRecord
from vportd.core.topology import Topology
from vportd_lab.sim.cluster import SimCluster

T = TypeVar("T")

HYPERVISORS = ("hv0", "hv1", "hv2", "hv3")
SPINE = "sp"
SWITCHES = (*HYPERVISORS, SPINE)
MACS = tuple(f"02:00:00:00:01:{i:02x}" for i in range(1, 5))
EDGE_IN = 4000  # an edge port no VM uses, where test frames enter a switch
# Small clock steps reach the sync and completion deadlines, never the activation
# one: only `pass_deadline` does, once the leader has heard of every activation.
TIMEOUTS = Timeouts(sync=2.0, activation=1000.0, completion=10.0)

Place = tuple[str, int]
FINISHED = (Status.COMPLETED, Status.ABORTED, Status.FAILED)


def fabric_topology() -> Topology:
    """hv0..hv3 each on spine port 100+i (their port 100), plus hv0-hv1 and hv2-hv3."""
    topo = Topology()
    for i, name in enumerate(SWITCHES):
        topo.add_switch(name, i + 1)
    for i, hv in enumerate(HYPERVISORS):
        topo.add_link(hv, 100, SPINE, 100 + i)
    topo.add_link("hv0", 101, "hv1", 101)
    topo.add_link("hv2", 101, "hv3", 101)
    return topo


def pick(items: Sequence[T], index: int) -> T:
    return items[index % len(items)]


def add(place: Place, mac: str) -> PortEvent:
    return PortEvent(EventKind.ADD, place[0], place[1], mac, port_name=f"tap{place[1]}")


def link(place: Place, mac: str, up: bool) -> PortEvent:
    sw, port = place
    return PortEvent(EventKind.MODIFY, sw, port, mac, port_name=f"tap{port}", link_up=up)


def delete(place: Place, mac: str) -> PortEvent:
    return PortEvent(EventKind.DELETE, place[0], place[1], mac, port_name=f"tap{place[1]}")


def entry(ctl: Controller, mac: str) -> VPortRecord | None:
    """The controller's entry for `mac`, None if it has none (or a tombstone)."""
    rec = ctl.record(mac)
    return rec if rec is not None and rec.present else None


def refusal(detail: str) -> str:
    """Why a notify was refused, without the names in it (for the statistics)."""
    for why in ("refused the sync", "no sync complete", "aborted by request", "moved"):
        if why in detail:
            return why
    return detail


class Step(IntEnum):
    """How far the VMM got with a migration."""

    NOTIFIED = 0  # waiting for notify complete
    READY = 1  # notify complete: the VMM may move the VM
    DEST_ADDED = 2  # the destination tap exists, link down
    SOURCE_DOWN = 3  # the VM is paused at the source
    ACTIVATED = 4  # the VM runs at the destination (its link is up there)


class Ending(Enum):
    FINISH = "finish"  # the VM moves and its source port goes away
    ABORT = "abort"  # the hypervisor's migration fails: the VMM asks the leader to abort
    DEADLINE = "deadline"  # the migration stalls until the leader's deadline passes


@dataclass(frozen=True, slots=True)
class Script:
    """How a migration will end, decided when the VMM sends the notify."""

    ending: Ending
    at: Step  # the step from which the VMM acts it out (FINISH: unused)


# Half of the migrations finish; the others end early, at every step they can.
SCRIPTS = (
    *[Script(Ending.FINISH, Step.ACTIVATED)] * 9,
    *[Script(Ending.ABORT, step) for step in Step if step < Step.ACTIVATED],
    *[Script(Ending.DEADLINE, step) for step in Step],
)


@dataclass
class Plan:
    """One migration as the VMM drives it."""

    id: str
    source: Place
    destination: str
    script: Script
    answers_seen: int  # how many notify answers existed when it was sent
    step: Step = Step.NOTIFIED
    dest_port: int | None = None
    ended: bool = False  # the cluster finished it (forced completion) while the VMM goes on

    @property
    def dest(self) -> Place:
        assert self.dest_port is not None
        return (self.destination, self.dest_port)

    @property
    def due(self) -> bool:
        """The VMM has something to do: a next step, or its early ending."""
        if self.script.ending is not Ending.FINISH and self.step >= self.script.at:
            return True
        return self.step is not Step.NOTIFIED


@dataclass
class Vm:
    """The physical truth for one MAC."""

    mac: str
    port: Place | None = None  # where its live interface is; None: not running
    link_up: bool = False
    plan: Plan | None = None


class ClusterMachine(RuleBasedStateMachine):
    """Three controllers, five switches, four VMs, one VMM: see the module's docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.sim = SimCluster.build(fabric_topology(), 3, timeouts=TIMEOUTS)
        self.vms = {mac: Vm(mac) for mac in MACS}
        self.next_port = dict.fromkeys(SWITCHES, 1)
        self.migration_ids: set[str] = set()
        # Migrations the VMM finished (mac, old place, new place), for invariant (c).
        self.moved: list[tuple[str, Place, Place]] = []
        self.deadline_passed = False  # only then may a migration fail after notify complete
        self.turns = 0  # the VMM's steps so far: whose turn it is
        self.seen: Counter[str] = Counter()  # what happened, for --hypothesis-show-statistics

    # -- helpers -----------------------------------------------------------
    def fresh_port(self, switch: str) -> Place:
        port = self.next_port[switch]
        self.next_port[switch] += 1
        return (switch, port)

    def event(self, ev: PortEvent) -> None:
        self.sim.port_event(ev)

    def free_vms(self, running: bool) -> list[Vm]:
        """VMs in no migration the VMM drives, running or not."""
        return [v for v in self.vms.values() if v.plan is None and (v.port is not None) == running]

    def plans_at(self, *steps: Step) -> list[Vm]:
        return [v for v in self.vms.values() if v.plan is not None and v.plan.step in steps]

    def planned(self) -> list[Vm]:
        """VMs in a migration the VMM drives."""
        return self.plans_at(*Step)

    def cancel(self, vm: Vm) -> None:
        """The VMM gives up a migration that did not activate: the VM stays at the source."""
        plan = vm.plan
        assert plan is not None and plan.step < Step.ACTIVATED
        if plan.dest_port is not None:
            self.event(delete(plan.dest, vm.mac))
        if plan.step >= Step.SOURCE_DOWN:
            self.event(link(plan.source, vm.mac, up=True))
        vm.port, vm.link_up, vm.plan = plan.source, True, None

    def follow_leader(self) -> None:
        """The VMM reads the leader's answers and its migration status."""
        for vm in self.vms.values():
            plan = vm.plan
            if plan is None or plan.ended:
                continue
            if plan.step is Step.NOTIFIED:
                answers = [
                    a for a in self.sim.answers[plan.answers_seen :] if a.migration.id == plan.id
                ]
                if not answers:
                    continue
                error = answers[0].error
                if error is not None:
                    vm.plan = None  # refused: the VMM never moves the VM
                    self.seen[f"notify answered {error.code}: {refusal(error.detail)}"] += 1
                    continue
                assert answers[0].migration.state == "ready", answers[0]
                plan.step = Step.READY
            state = Status(self.sim.leader.migration(plan.id).state)
            if state in (Status.ABORTED, Status.FAILED):
                reason = self.sim.leader.migration(plan.id).reason
                assert plan.step < Step.ACTIVATED, (
                    f"migration {plan.id} rolled back ({state}: {reason}) although its VM "
                    f"runs at {plan.dest}"
                )
                # A migration fails after notify complete when its deadline passes, or
                # when the cluster learns that the VM's history went past it (a
                # previous life of its MAC heard of late): it could not activate.
                moved = reason is not None and "moved" in reason
                assert state is Status.ABORTED or self.deadline_passed or moved, (
                    f"migration {plan.id} failed after notify complete: {reason}"
                )
                self.seen[f"migration {state} at {plan.step.name.lower()}"] += 1
                self.cancel(vm)
            elif state is Status.COMPLETED:
                assert plan.step is Step.ACTIVATED, f"{plan.id} completed before activation"
                plan.ended = True
                self.seen["migration force-completed"] += 1

    def unobserved_activation(self) -> bool:
        """A VM runs at its destination but the leader has not heard of it yet."""
        return any(
            self.sim.leader.migration(v.plan.id).state not in (Status.ACTIVATED, Status.COMPLETED)
            for v in self.plans_at(Step.ACTIVATED)
            if v.plan is not None
        )

    # -- VM life -----------------------------------------------------------
    @initialize(switches=st.lists(st.sampled_from(HYPERVISORS), min_size=3, max_size=3))
    def start(self, switches: list[str]) -> None:
        """Three VMs are running and known everywhere; the fourth boots later."""
        for vm, switch in zip(self.vms.values(), switches, strict=False):
            place = self.fresh_port(switch)
            self.event(add(place, vm.mac))
            self.event(link(place, vm.mac, up=True))
            vm.port, vm.link_up = place, True
        self.sim.deliver_all()

    @precondition(lambda self: bool(self.free_vms(running=False)))
    @rule(which=st.integers(0, 7), switch=st.sampled_from(HYPERVISORS))
    def boot(self, which: int, switch: str) -> None:
        vm = pick(self.free_vms(running=False), which)
        place = self.fresh_port(switch)
        self.event(add(place, vm.mac))
        self.event(link(place, vm.mac, up=True))
        vm.port, vm.link_up = place, True

    @precondition(lambda self: bool(self.free_vms(running=True)))
    @rule(which=st.integers(0, 7))
    def flap(self, which: int) -> None:
        vm = pick(self.free_vms(running=True), which)
        assert vm.port is not None
        vm.link_up = not vm.link_up
        self.event(link(vm.port, vm.mac, up=vm.link_up))

    @precondition(lambda self: bool(self.free_vms(running=True)))
    @rule(which=st.integers(0, 7))
    def remove(self, which: int) -> None:
        vm = pick(self.free_vms(running=True), which)
        assert vm.port is not None
        self.event(delete(vm.port, vm.mac))
        vm.port, vm.link_up = None, False

    # -- the VMM's migrations ------------------------------------------------
    @precondition(lambda self: any(v.link_up for v in self.free_vms(running=True)))
    @rule(
        which=st.integers(0, 7),
        hops=st.integers(1, len(HYPERVISORS) - 1),
        script=st.sampled_from(SCRIPTS),
    )
    def notify(self, which: int, hops: int, script: Script) -> None:
        """The VMM asks to move a running VM to another hypervisor, `hops` further on."""
        vm = pick([v for v in self.free_vms(running=True) if v.link_up], which)
        assert vm.port is not None
        source = vm.port
        destination = pick(HYPERVISORS, HYPERVISORS.index(source[0]) + hops)
        seen = len(self.sim.answers)
        request = NotifyRequest(vm.mac, source[0], destination)
        try:
            out = self.sim.leader.notify(request, self.sim.now)
        except CoreError:
            self.seen["notify refused"] += 1
            return  # the leader does not see the VM there yet, or sees it migrating
        self.sim.run(out)
        assert out.reply is not None
        view = out.reply.migration
        if not out.reply.new:
            # The leader's table lags behind the VM (it has not heard that the VM
            # came back to the source): it answers as to a repeated notify, with
            # the last migration along this path. The VMM sees no new migration.
            assert view.id in self.migration_ids, f"{vm.mac}: answered with {view}"
            self.seen["notify answered with an earlier migration"] += 1
            return
        assert view.id not in self.migration_ids, f"migration id {view.id} used twice"
        self.migration_ids.add(view.id)
        vm.plan = Plan(view.id, source, destination, script, seen)
        self.follow_leader()

    @precondition(lambda self: bool(self.planned()))
    @rule(which=st.integers(0, 7))
    def notify_again(self, which: int) -> None:
        """Idempotence: the same notify gives the same migration, and starts nothing."""
        vm = pick(self.planned(), which)
        plan = vm.plan
        assert plan is not None
        if plan.ended:
            return
        request = NotifyRequest(vm.mac, plan.source[0], plan.destination)
        out = self.sim.leader.notify(request, self.sim.now)
        assert not out, f"a repeated notify asked for {out}"
        assert out.reply is not None and (out.reply.migration.id, out.reply.new) == (plan.id, False)

    @precondition(lambda self: bool(self.due_plans()))
    @rule()
    def vmm_step(self) -> None:
        """The VMM takes the next step of one of its migrations, in turn.

        No arguments, and one rule for every step, so that hypothesis picks it
        often enough for most migrations to get to their end.
        """
        self.turns += 1
        vm = pick(self.due_plans(), self.turns)
        plan = vm.plan
        assert plan is not None
        if plan.script.ending is not Ending.FINISH and plan.step >= plan.script.at:
            self.end_early(vm, plan)
        elif plan.step is Step.READY:
            self.destination_added(vm, plan)
        elif plan.step is Step.DEST_ADDED:
            self.source_down(vm, plan)
        elif plan.step is Step.SOURCE_DOWN:
            self.destination_up(vm, plan, announce=self.turns % 3 == 0)
        else:
            self.source_deleted(vm, plan)

    def due_plans(self) -> list[Vm]:
        return [v for v in self.vms.values() if v.plan is not None and v.plan.due]

    def end_early(self, vm: Vm, plan: Plan) -> None:
        ending = plan.script.ending
        plan.script = Script(Ending.FINISH, Step.ACTIVATED)  # what remains is the usual
        if ending is Ending.ABORT:
            self.sim.abort(plan.id)
            self.follow_leader()
            assert vm.plan is None, "an aborted migration is over for the VMM"
        else:
            self.pass_deadline(plan)

    def destination_added(self, vm: Vm, plan: Plan) -> None:
        place = self.fresh_port(plan.destination)
        plan.dest_port = place[1]
        plan.step = Step.DEST_ADDED
        self.event(add(place, vm.mac))

    def source_down(self, vm: Vm, plan: Plan) -> None:
        plan.step = Step.SOURCE_DOWN
        vm.link_up = False
        self.event(link(plan.source, vm.mac, up=False))

    def destination_up(self, vm: Vm, plan: Plan, announce: bool) -> None:
        plan.step = Step.ACTIVATED
        vm.port, vm.link_up = plan.dest, True
        if announce:  # the VM's RARP reaches the controller before the link event
            master = self.sim.master_of(plan.destination)
            self.sim.run(master.vm_announced(*plan.dest, vm.mac, self.sim.now))
        self.event(link(plan.dest, vm.mac, up=True))

    def source_deleted(self, vm: Vm, plan: Plan) -> None:
        self.event(delete(plan.source, vm.mac))
        vm.plan = None
        self.moved.append((vm.mac, plan.source, plan.dest))
        self.seen["migration completed"] += 1

    # -- time and messages ---------------------------------------------------
    @precondition(lambda self: bool(self.planned()))
    @rule(seconds=st.sampled_from([0.25, 0.5, 1.0]))
    def tick(self, seconds: float) -> None:
        """Time passes (it matters to migrations only): syncs expire after 2 s and
        completions after 10 s; activations never do (see TIMEOUTS)."""
        self.sim.advance(seconds)
        self.follow_leader()

    def pass_deadline(self, plan: Plan) -> None:
        """Time jumps past the plan's deadline: it never activated, or its source stays.

        The leader first hears of every activation that already happened: a
        rollback of a VM that runs at its destination is a partition the VMM
        would have to be told of, beyond what this machine models.
        """
        if plan.step is Step.ACTIVATED or self.unobserved_activation():
            self.sim.deliver_all()
            self.follow_leader()
        if plan.step is Step.ACTIVATED:
            self.sim.advance(TIMEOUTS.completion + 1)
        else:
            self.sim.advance(TIMEOUTS.activation + 1)
        self.deadline_passed = True
        self.follow_leader()
        self.deadline_passed = False

    @precondition(lambda self: bool(self.sim.queue))
    @rule(which=st.integers(0, 63), twice=st.booleans())
    def deliver(self, which: int, twice: bool) -> None:
        self.sim.deliver(which % len(self.sim.queue), keep=twice)
        self.follow_leader()

    @precondition(lambda self: bool(self.sim.queue))
    @rule()
    def deliver_everything(self) -> None:
        self.settle()
        self.check_quiescent()

    def settle(self) -> None:
        self.sim.deliver_all()
        self.follow_leader()
        self.sim.deliver_all()  # what the VMM did on hearing the answers
        self.follow_leader()

    def teardown(self) -> None:
        self.settle()
        self.check_quiescent()
        for what in sorted(self.seen):
            event(what)

    # -- invariants --------------------------------------------------------
    @invariant()
    def migrating_vm_never_down(self) -> None:
        """(b) After every step: claims 1 and 4 on each controller that has the mark."""
        for vm in self.vms.values():
            plan = vm.plan
            if plan is None or plan.ended or plan.step < Step.READY:
                continue
            for cid, ctl in self.sim.controllers.items():
                rec = ctl.record(vm.mac)
                if rec is None or rec.mig is None or rec.mig.id != plan.id:
                    continue
                assert rec.port_state is PortState.UP, (
                    f"{cid} shows {vm.mac} down during migration {plan.id}: {rec}"
                )

    def check_quiescent(self) -> None:
        """Everything that must hold once every message is delivered."""
        assert not self.sim.queue
        self.check_tables_equal()
        self.check_migrations_ended()
        self.check_vms_where_they_are()
        self.check_moved_traffic()
        self.check_no_stale_flows()
        self.check_arrival_flows()

    def check_tables_equal(self) -> None:
        """(a) Whole records, tombstones and versions included: equal or diverging."""
        store = self.sim.store
        for cid, ctl in self.sim.controllers.items():
            table = {rec.vm: rec for rec in ctl.records()}
            assert table == store, f"{cid} differs from the store: {table} != {store}"
            present = sum(rec.present for rec in table.values())
            assert ctl.vport_count() == present, f"{cid} counts {ctl.vport_count()} entries"

    def check_migrations_ended(self) -> None:
        """(d) Migrating only under a migration the VMM drives; the leader runs those."""
        driven = {
            v.mac: v.plan.id for v in self.vms.values() if v.plan is not None and not v.plan.ended
        }
        leader = self.sim.leader
        active = {m.vm: m.id for m in leader.migrations() if m.state not in FINISHED}
        assert active == driven, f"leader runs {active}, the VMM drives {driven}"
        assert leader.open_migrations() == len(active)
        for cid, ctl in self.sim.controllers.items():
            for rec in ctl.records():
                if rec.migrating:
                    assert rec.mig is not None
                    assert driven.get(rec.vm) == rec.mig.id, f"{cid}: {rec} stays migrating"

    def check_vms_where_they_are(self) -> None:
        """Every controller has each VM where it runs, with its port state, and every
        switch delivers its frames there; a removed VM is nowhere."""
        topo = self.sim.topology
        fabric = self.sim.fabric
        assert fabric is not None
        for vm in self.vms.values():
            for cid, ctl in self.sim.controllers.items():
                rec = entry(ctl, vm.mac)
                if vm.port is None:
                    assert rec is None, f"{cid} still has removed {vm.mac}: {rec}"
                    continue
                assert rec is not None, f"{cid} lost {vm.mac}, which runs at {vm.port}"
                assert (rec.loc.ovs, rec.loc.port) == vm.port, (
                    f"{cid} has {vm.mac} at {rec.loc.ovs}:{rec.loc.port}, it runs at {vm.port}"
                )
                migrating = vm.plan is not None and not vm.plan.ended
                up = vm.link_up or migrating
                assert (rec.port_state is PortState.UP) == up, f"{cid}: {rec} but link {vm}"
            reached = {vm.port} if vm.port is not None else set()
            # While its destination port exists and it has not activated there, a migrating
            # VM's frames also go to that port (the hand-over flows: see flows.py).
            handover = self._handover_ports(vm.mac)
            for switch in topo.switches:
                got = fabric.deliveries(switch, EDGE_IN, vm.mac)
                assert reached <= got <= reached | handover, (
                    f"from {switch}, {vm.mac} reaches {got}, not {reached} (+ {handover})"
                )

    def _handover_ports(self, mac: str) -> set[tuple[str, int]]:
        ports = set()
        for ctl in self.sim.controllers.values():
            rec = entry(ctl, mac)
            mig = None if rec is None else rec.mig
            if mig is not None and mig.phase is Phase.ARRIVED and mig.dest_port is not None:
                ports.add((mig.destination, mig.dest_port))
        return ports

    def check_moved_traffic(self) -> None:
        """(c) After a migration: its MAC goes to the new port only, none to the old."""
        fabric = self.sim.fabric
        assert fabric is not None
        for mac, old, new in self.moved:
            if self.vms[mac].port != new:
                continue  # moved or removed again since
            # A next migration of the VM may have its hand-over flows already.
            handover = self._handover_ports(mac)
            for switch in self.sim.topology.switches:
                got = fabric.deliveries(switch, EDGE_IN, mac)
                assert new in got and got <= {new} | handover, f"from {switch}: {got}"
            if old not in handover:
                assert fabric.flows_to(*old) == [], f"flows still point at {old}"
        self.moved.clear()

    def check_arrival_flows(self) -> None:
        """The destination of a migration not yet active holds its arrival flow (the
        readiness barrier); no other switch holds one."""
        fabric = self.sim.fabric
        assert fabric is not None
        expected = {
            (v.plan.destination, v.mac)
            for v in self.vms.values()
            if v.plan is not None and Step.READY <= v.plan.step < Step.ACTIVATED
        }
        found = {
            (name, flow.match.eth_src)
            for name, switch in fabric.switches.items()
            for flow in switch.flows.values()
            if flow.table == CLASSIFY_TABLE and flow.match.eth_src is not None
        }
        assert found == expected, f"arrival flows {found}, migrations waiting {expected}"

    def check_no_stale_flows(self) -> None:
        """No flow outputs to, or floods from, an edge port without a live VM."""
        fabric = self.sim.fabric
        assert fabric is not None
        live = {vm.port: vm.mac for vm in self.vms.values() if vm.port is not None}
        arriving = {p: vm.mac for vm in self.vms.values() for p in self._handover_ports(vm.mac)}
        for name, switch in fabric.switches.items():
            links = self.sim.topology.link_ports(name)
            for flow in switch.flows.values():
                if flow.table not in (FORWARD_TABLE, FLOOD_TABLE):
                    continue
                in_port = flow.match.in_port
                if in_port is not None and in_port not in links:
                    assert (name, in_port) in live, f"{name}: flood from dead port {flow}"
                for action in flow.actions:
                    if not isinstance(action, Output) or action.port in links:
                        continue
                    owner = live.get((name, action.port))
                    if owner is None and flow.cookie & COOKIE_KIND_MASK == COOKIE_HANDOVER:
                        # The new port of a VM being handed over, not running there yet.
                        owner = arriving.get((name, action.port))
                    assert owner is not None, f"{name}: flow to dead port: {flow}"
                    if flow.match.eth_dst in MACS:
                        assert flow.match.eth_dst == owner, f"{name}: {flow} is {owner}'s port"


ClusterMachine.TestCase.settings = settings(
    max_examples=1500,
    stateful_step_count=50,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow],
)
TestCluster = ClusterMachine.TestCase
