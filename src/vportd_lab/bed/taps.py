"""A migrating VM's destination tap on either fabric, for `lab migrate`.

On the patch fabric the host end stays in the root namespace and joins the
destination's bridge of the one OVS (`guest.add_tap`); on the overlay it is
created in the destination host's namespace and joins that host's `br-int`
(with the VM's segment tag). Either way the guest end, `eth0m` with the VM's
MAC, waits down in the VM's namespace, created before the switchover.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from vportd_lab.bed import guest, hosts, netns
from vportd_lab.bed.commands import LabError, run
from vportd_lab.bed.ovs import PrivateOVS
from vportd_lab.bed.plan import INTEGRATION, VM, Plan
from vportd_lab.bed.state import Migration


class Taps(Protocol):
    def add_tap(self, vm: VM, rec: Migration) -> None: ...

    def remove_tap(self, host: str, host_if: str) -> None: ...


@dataclass
class PatchTaps:
    """The patch fabric's taps: veths from the root namespace to a bridge of the one OVS."""

    plan: Plan

    @property
    def ovs(self) -> PrivateOVS:
        return PrivateOVS(self.plan.ovs_rundir, dummy=False)

    def add_tap(self, vm: VM, rec: Migration) -> None:
        guest.add_tap(self.ovs, self.plan.marker, vm, rec)

    def remove_tap(self, host: str, host_if: str) -> None:
        guest.remove_tap(self.ovs, host, host_if)


@dataclass
class OverlayTaps:
    """The overlay's taps: veths from the destination host's namespace to its br-int."""

    plan: Plan

    def add_tap(self, vm: VM, rec: Migration) -> None:
        hv = next(h for h in self.plan.hypervisors if h.name == rec.destination)
        host_ns, host_if = str(hv.netns), rec.new_host_if
        hosts.veth(self.plan, (host_ns, host_if), (vm.netns, rec.new_guest_if))
        run(["ip", "-n", vm.netns, "link", "set", "dev", rec.new_guest_if, "address", vm.mac])
        run(["ip", "-n", host_ns, "link", "set", "dev", host_if, "up"])
        port = guest.port_of(vm)
        ovs = hosts.host_ovs(self.plan, hv)
        ovs.vsctl("add-port", INTEGRATION, host_if, *hosts.port_settings(vm, host_if, port))
        rows = {r["name"]: r for r in ovs.rows("Interface", "name", "ofport", "error")}
        row = rows.get(host_if)
        if row is None or row["error"] or row["ofport"] != port:
            raise LabError(f"{hv.name}: Open vSwitch did not add {host_if} as port {port}: {row}")

    def remove_tap(self, host: str, host_if: str) -> None:
        """Port delete on the host's br-int, then the veth (its guest end goes with it)."""
        ovs = hosts.ovs_of(self.plan, host)
        ovs.vsctl("--if-exists", "del-port", INTEGRATION, host_if)
        netns.delete_link(host_if, ovs.netns)


def taps_for(plan: Plan) -> Taps:
    return OverlayTaps(plan) if plan.overlay else PatchTaps(plan)
