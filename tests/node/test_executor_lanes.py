"""The executor's two lanes: urgent outputs overtake queued bulk ones, and whatever the
order flow mods leave in, every flow ends as the last output submitted set it.

A fake flow sender stands for the switches: it applies the mods it is given in
order, and holds each batch's barrier until the test releases it. It can also
take its time queuing (a turn of the loop per mod, or waiting for room on a
switch), so that an urgent run starts while a bulk run is being queued.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from vportd.core.flow import FORWARD_TABLE, Flow, FlowCommand, FlowMod, Match
from vportd.core.flow import Output as Out
from vportd.core.messages import Output
from vportd.node.executor import Confirm, Executor

MACS = [f"02:00:00:00:00:{i:02x}" for i in range(1, 5)]


def mod(switch: str, mac: str, port: int) -> FlowMod:
    flow = Flow(FORWARD_TABLE, 100, Match(eth_dst=mac), (Out(port),), 0)
    return FlowMod(switch, FlowCommand.ADD, flow)


class Switches:
    """Applies mods in the order queued; each batch's barrier waits for `answering`."""

    def __init__(self, *, slow: bool = False) -> None:
        self.tables: dict[tuple[str, object], int] = {}
        self.answering = asyncio.Event()
        self.answering.set()
        self.room = {"hv0": asyncio.Event(), "hv1": asyncio.Event()}  # cleared: switch full
        for event in self.room.values():
            event.set()
        self.slow = slow
        self.order: list[FlowMod] = []

    async def queue_mods(self, mods: Sequence[FlowMod]) -> Confirm:
        for m in mods:
            await self.room[m.switch].wait()
            if self.slow:
                await asyncio.sleep(0)
            self.order.append(m)
            out = m.flow.actions[0]
            assert isinstance(out, Out)
            self.tables[(m.switch, m.flow.key)] = out.port

        async def confirm() -> None:
            await self.answering.wait()

        return confirm


async def started(executor: Executor) -> asyncio.Task[None]:
    task = asyncio.create_task(executor.run())
    await asyncio.sleep(0)
    return task


async def test_an_urgent_output_overtakes_the_queued_bulk_ones() -> None:
    switches = Switches()
    executor = Executor(switches, None, lambda _: None)
    task = await started(executor)
    switches.answering.clear()  # the first bulk run's barrier hangs
    executor.submit(Output(flow_mods=[mod("hv0", MACS[0], 1)]))
    await asyncio.sleep(0.01)
    for port in range(2, 2 + 3 * 2_000):  # queued behind it, several runs' worth
        executor.submit(Output(flow_mods=[mod("hv0", MACS[1], port)]))
    urgent = [mod("hv1", MACS[2], 9)]
    executor.submit(Output(flow_mods=urgent), urgent=True)
    await asyncio.sleep(0.01)
    # Sent right after the run in flight, before the bulk queued ahead of it.
    assert switches.order.index(urgent[0]) == 1
    switches.answering.set()
    await asyncio.sleep(0.01)
    task.cancel()


async def test_an_urgent_output_goes_while_a_bulk_run_waits_for_room_on_a_switch() -> None:
    switches = Switches()
    executor = Executor(switches, None, lambda _: None)
    task = await started(executor)
    switches.room["hv0"].clear()  # hv0 reads nothing: the bulk run cannot be queued
    executor.submit(Output(flow_mods=[mod("hv1", MACS[0], 1), mod("hv0", MACS[1], 2)]))
    await asyncio.sleep(0.01)
    urgent: Output[None] = Output(flow_mods=[mod("hv1", MACS[2], 3)])
    await asyncio.wait_for(executor.carry_out(urgent, urgent=True), 1.0)
    assert switches.tables[("hv1", urgent.flow_mods[0].flow.key)] == 3
    switches.room["hv0"].set()
    task.cancel()


async def test_an_urgent_output_for_a_flow_of_the_bulk_run_being_queued_lands_after_it() -> None:
    switches = Switches()
    executor = Executor(switches, None, lambda _: None)
    task = await started(executor)
    switches.room["hv0"].clear()
    executor.submit(Output(flow_mods=[mod("hv1", MACS[0], 1), mod("hv0", MACS[0], 2)]))
    await asyncio.sleep(0.01)
    urgent: Output[None] = Output(
        flow_mods=[mod("hv1", MACS[0], 7)]
    )  # hv1's flow for MACS[0] again
    done = asyncio.ensure_future(executor.carry_out(urgent, urgent=True))
    await asyncio.sleep(0.01)
    assert not done.done()  # it waits for the bulk run, whose hv1 mod is queued already
    switches.room["hv0"].set()
    await asyncio.wait_for(done, 1.0)
    assert switches.tables[("hv1", urgent.flow_mods[0].flow.key)] == 7
    task.cancel()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.booleans(), st.sampled_from(["hv0", "hv1"]), st.sampled_from(MACS), st.integers(1, 9)
        ),
        min_size=1,
        max_size=40,
    ),
    st.integers(0, 40),
    st.booleans(),
)
def test_every_flow_ends_as_the_last_output_set_it(
    submissions: list[tuple[bool, str, str, int]], hang_at: int, slow: bool
) -> None:
    async def scenario() -> None:
        switches = Switches(slow=slow)
        executor = Executor(switches, None, lambda _: None)
        task = await started(executor)
        last: dict[tuple[str, object], int] = {}
        for n, (urgent, switch, mac, port) in enumerate(submissions):
            if n == hang_at:
                switches.answering.clear()
            m = mod(switch, mac, port)
            executor.submit(Output(flow_mods=[m]), urgent=urgent)
            last[(switch, m.flow.key)] = port
            if n % 3 == 0:
                await asyncio.sleep(0)
        switches.answering.set()
        for _ in range(200):
            if executor.idle:
                break
            await asyncio.sleep(0)
        assert executor.idle
        assert switches.tables == last
        task.cancel()

    asyncio.run(scenario())
