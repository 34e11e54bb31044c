"""The flood members of the switches a flow compiler masters.

Per mastered switch: the ports of its local VMs, and the flood members (those
ports and its tree links) its gates and flood flow were made for. A VM that
joins or leaves a port changes only the gates and the one flood flow it must.
"""

from __future__ import annotations

from bisect import bisect_left

from vportd.core.flow import Flow, FlowCommand, FlowKey, FlowMod, unchanged
from vportd.core.installed import SwitchFlows
from vportd.core.model import Location, VPortRecord
from vportd.core.pipeline import (
    FLOOD_KEY,
    flood_flow,
    flood_flow_of,
    flood_members,
    gate,
    gate_key,
    output_to,
)
from vportd.core.topology import Topology


def install(
    installed: dict[str, SwitchFlows], switch: str, key: FlowKey, flow: Flow
) -> list[FlowMod]:
    """Add `flow` (a gate, flood or arrival flow: no VM key) unless held as it is."""
    table = installed[switch]
    if unchanged(table.other(key), flow):
        return []
    table.put_other(key, flow)
    return [FlowMod(switch, FlowCommand.ADD, flow)]


def uninstall(installed: dict[str, SwitchFlows], switch: str, key: FlowKey) -> list[FlowMod]:
    """Delete the flow under `key` (no VM key), if held."""
    held = installed[switch].pop_other(key)
    return [] if held is None else [FlowMod(switch, FlowCommand.DELETE, held)]


class Floods:
    """The local VMs' ports and flood members of each mastered switch.

    `topology`, `installed` and `switches` are the compiler's own objects,
    shared: what it installs and masters is what this keeps current.
    """

    def __init__(
        self, topology: Topology, installed: dict[str, SwitchFlows], switches: set[str]
    ) -> None:
        self.topology = topology
        self.installed = installed
        self.switches = switches
        # Per mastered switch: its VMs' ports, and the flood members its floods were made for.
        self.local: dict[str, dict[str, int]] = {s: {} for s in switches}
        self.members: dict[str, tuple[int, ...]] = {}
        # Per VM on a mastered switch: where `local` placed it (the entry's own location).
        self.placed: dict[str, Location] = {}
        # Per switch, the last flood flow made by a join or leave and the members it was
        # made for (that very tuple: compared by identity, so it cannot be another's).
        self._made: dict[str, tuple[tuple[int, ...], Flow]] = {}

    def master(self, switch: str) -> None:
        self.local.setdefault(switch, {})

    def release(self, switch: str) -> None:
        """Forget a switch we no longer master, and the VMs placed on it."""
        self.members.pop(switch, None)
        self._made.pop(switch, None)
        for vm in self.local.pop(switch, {}):
            self.placed.pop(vm, None)

    def synced(
        self,
        switch: str,
        local: dict[str, int],
        placed: dict[str, Location],
        members: tuple[int, ...],
    ) -> None:
        """Take a switch's VMs and flood members as a full sync made them."""
        self.local[switch] = local
        self.members[switch] = members
        self.placed.update(placed)

    def move(self, rec: VPortRecord, before: Location | None) -> list[FlowMod]:
        """Keep the per-switch ports of local VMs, and their floods, current.

        `before` is where `placed` has the VM (on a switch of ours), if anywhere.
        """
        loc = rec.loc
        here = loc.ovs
        port = loc.port
        ours = port is not None and here in self.switches
        if before is not None and ours and before.ovs == here and before.port == port:
            self.placed[rec.vm] = loc  # hold the table's location, not an old one
            return []
        mods: list[FlowMod] = []
        if before is not None:
            assert before.ovs is not None and before.port is not None
            local = self.local.get(before.ovs)
            if local is not None and local.pop(rec.vm, None) is not None:
                mods += self._left(before.ovs, before.port)
        if ours:
            assert here is not None and port is not None
            self.local[here][rec.vm] = port
            self.placed[rec.vm] = loc
            mods += self._joined(here, port)
        elif before is not None:
            del self.placed[rec.vm]
        return mods

    def _joined(self, switch: str, port: int) -> list[FlowMod]:
        """A VM's port on `switch` now: a flood member, if it was not one."""
        before = self.members.get(switch)
        if before is None:
            return self._diff_floods(switch)
        at = bisect_left(before, port)
        if at < len(before) and before[at] == port:
            return []  # another VM's port, or a link
        members = (*before[:at], port, *before[at:])
        flood = self._flood(switch, before, members, at, port)
        self.members[switch] = members
        return [
            *install(self.installed, switch, gate_key(port), gate(port)),
            *install(self.installed, switch, FLOOD_KEY, flood),
        ]

    def _flood(
        self, switch: str, before: tuple[int, ...], members: tuple[int, ...], at: int, port: int
    ) -> Flow:
        """`flood_flow(members)`, `before` with `port` in (or out of) place `at`: made from
        the flow last made for `before` when there is one, in place of one output per
        member (a boot storm adds hundreds of VMs to a switch, one at a time)."""
        made = self._made.get(switch)
        if made is None or made[0] is not before:
            flow = flood_flow(members)
        else:
            outs = made[1].actions
            joined = len(members) > len(before)
            flow = flood_flow_of(
                (*outs[:at], output_to(port), *outs[at:])
                if joined
                else (*outs[:at], *outs[at + 1 :])
            )
        self._made[switch] = (members, flow)
        return flow

    def _left(self, switch: str, port: int) -> list[FlowMod]:
        """A VM left `port` of `switch`: no flood member any more, unless still used."""
        before = self.members.get(switch)
        if before is None:
            return self._diff_floods(switch)
        if (
            port not in before
            or port in self.local[switch].values()
            or port in self.topology.tree_ports(switch)
        ):
            return []
        at = before.index(port)
        members = (*before[:at], *before[at + 1 :])
        if not members:
            return self._set_members(switch, before, members)
        flood = self._flood(switch, before, members, at, port)
        self.members[switch] = members
        mods = install(self.installed, switch, FLOOD_KEY, flood)
        mods += uninstall(self.installed, switch, gate_key(port))
        return mods

    def _diff_floods(self, switch: str) -> list[FlowMod]:
        """Bring the switch's gates and flood flow in line with its members, from scratch."""
        members = flood_members(self.topology, switch, self.local[switch].values())
        return self._set_members(switch, self.members.get(switch, ()), members)

    def _set_members(
        self, switch: str, before: tuple[int, ...], members: tuple[int, ...]
    ) -> list[FlowMod]:
        """A member that joins gets its gate, one that leaves loses it; the flood flow
        is rewritten once: one flow floods for every member."""
        if members == before:
            return []
        installed = self.installed
        mods: list[FlowMod] = []
        for port in set(before).difference(members):
            mods += uninstall(installed, switch, gate_key(port))
        for port in set(members).difference(before):
            mods += install(installed, switch, gate_key(port), gate(port))
        if members:
            mods += install(installed, switch, FLOOD_KEY, flood_flow(members))
        else:
            mods += uninstall(installed, switch, FLOOD_KEY)
        self.members[switch] = members
        return mods
