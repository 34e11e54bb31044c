"""The executor's two lanes: urgent outputs overtake queued bulk ones, and whatever the
order flow mods leave in, every flow ends as the last output submitted set it.

A fake flow sender stands for the switches: it applies the mods it is given in
order, and holds each batch's barrier until the test releases it.
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

    def __init__(self) -> None:
        self.tables: dict[tuple[str, object], int] = {}
        self.answering = asyncio.Event()
        self.answering.set()
        self.order: list[FlowMod] = []

    async def queue_mods(self, mods: Sequence[FlowMod]) -> Confirm:
        for m in mods:
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
)
def test_every_flow_ends_as_the_last_output_set_it(
    submissions: list[tuple[bool, str, str, int]], hang_at: int
) -> None:
    async def scenario() -> None:
        switches = Switches()
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
