"""A migrating lab VM's interfaces: the destination tap, the switchover in the guest, the source.

The destination tap is a veth: its host end joins the destination bridge
with the VM's libvirt external_ids and OpenFlow port, its guest end waits,
down, in the VM's namespace. The switchover takes the old interface down and
brings the new one up as `eth0` with the VM's address and ARP cache (`ip
-batch` in the namespace); a failed migration resumes the old interface.
"""

from __future__ import annotations

import json
import subprocess

from vportd_lab.bed import netns
from vportd_lab.bed.commands import LabError, tool
from vportd_lab.bed.commands import run as _sh
from vportd_lab.bed.ovs import PrivateOVS
from vportd_lab.bed.plan import VM
from vportd_lab.bed.state import Migration

OLD_GUEST_IF = "eth0o"  # the old one after the switchover, until its veth is removed
_NEIGH_STATES = {"REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT"}


def _ip_batch(netns_name: str, lines: list[str]) -> None:
    """Several `ip` commands in one process inside the namespace (one rtnetlink session)."""
    done = subprocess.run(
        [tool("ip"), "-n", netns_name, "-batch", "-"],
        input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise LabError(f"ip -n {netns_name} -batch: {done.stderr.strip() or done.returncode}")


def neighbours(netns_name: str, dev: str) -> list[tuple[str, str]]:
    """The guest's resolved IPv4 neighbours on `dev`: (ip, mac). A link going down flushes
    them; a migrated guest keeps its ARP cache, so they are copied to the new interface."""
    out = _sh(["ip", "-n", netns_name, "-4", "-j", "neigh", "show", "dev", dev], check=False)
    found = []
    for entry in json.loads(out) if out.strip() else []:
        if entry.get("lladdr") and _NEIGH_STATES & set(entry.get("state", [])):
            found.append((str(entry["dst"]), str(entry["lladdr"])))
    return found


def ifindex(netns_name: str, dev: str) -> int:
    entry = netns.link(dev, netns_name)
    if entry is None:
        raise LabError(f"no interface {dev} in namespace {netns_name}")
    return int(entry["ifindex"])


def _name_of(netns_name: str, ifindex: int) -> str | None:
    for entry in netns.links(netns_name):
        if int(entry["ifindex"]) == ifindex:
            return str(entry["ifname"])
    return None


def add_tap(ovs: PrivateOVS, marker: str, vm: VM, rec: Migration) -> None:
    """The destination's veth: host end up on the destination bridge, guest end down in the VM
    (both ends marked with the lab's `marker` alias)."""
    ns, host, guest = vm.netns, rec.new_host_if, rec.new_guest_if
    ip = ["ip"]
    _sh([*ip, "link", "add", host, "type", "veth", "peer", "name", guest,
               "address", vm.mac, "netns", ns])  # fmt: skip
    _sh([*ip, "link", "set", "dev", host, "alias", marker])
    _sh([*ip, "-n", ns, "link", "set", "dev", guest, "alias", marker])
    netns.tx_offload_off(host)
    netns.tx_offload_off(guest, ns)
    netns.disable_ipv6(device=host)
    _sh([*ip, "link", "set", "dev", host, "up"])
    ovs.vsctl(
        "add-port", rec.destination, host, "--", "set", "Interface", host,
        f"ofport_request={port_of(vm)}",
        f"external_ids:attached-mac={vm.mac}", f"external_ids:iface-id={vm.iface_id}",
        f"external_ids:vm-id={vm.vm_id}", "external_ids:iface-status=active",
    )  # fmt: skip
    rows = {r["name"]: r for r in ovs.rows("Interface", "name", "ofport", "error")}
    row = rows.get(host)
    if row is None or row["error"] or row["ofport"] != port_of(vm):
        raise LabError(f"Open vSwitch did not add {host} as port {port_of(vm)}: {row}")


def port_of(vm: VM) -> int:
    """VM k's OpenFlow port on every bridge: k+1 (no other VM uses it anywhere)."""
    return int(vm.name.removeprefix("vm")) + 1


def remove_tap(ovs: PrivateOVS, bridge: str, host_if: str) -> None:
    """Port delete on `bridge`, then the veth (its guest end goes with it)."""
    ovs.vsctl("--if-exists", "del-port", bridge, host_if)
    netns.delete_link(host_if)


def switch_down(vm: VM) -> None:
    _ip_batch(vm.netns, [f"link set dev {vm.guest_if} down"])


def switch_up(vm: VM, new_guest: str, neighbours: list[tuple[str, str]]) -> None:
    """The new interface becomes the VM's `eth0`, with its IP and ARP cache, and comes up."""
    g = vm.guest_if
    lines = [
        f"link set dev {g} name {OLD_GUEST_IF}",
        f"address del {vm.cidr} dev {OLD_GUEST_IF}",
        f"link set dev {new_guest} name {g}",
        f"address add {vm.cidr} dev {g}",
        f"link set dev {g} up",
    ]
    lines += [f"neigh replace {ip} lladdr {mac} dev {g} nud reachable" for ip, mac in neighbours]
    _ip_batch(vm.netns, lines)


def resume_source(vm: VM, old_ifindex: int, neighbours: list[tuple[str, str]]) -> None:
    """The source VM runs again on its old interface (whatever the switchover got to)."""
    name = _name_of(vm.netns, old_ifindex)
    if name is None:
        raise LabError(f"the VM's old interface (ifindex {old_ifindex}) is gone")
    g = vm.guest_if
    lines = [] if name == g else [f"link set dev {name} name {g}"]
    lines += [f"address replace {vm.cidr} dev {g}", f"link set dev {g} up"]
    lines += [f"neigh replace {ip} lladdr {mac} dev {g} nud reachable" for ip, mac in neighbours]
    _ip_batch(vm.netns, lines)


def ifindex_by_peer(vm: VM) -> int:
    """The ifindex of the VM's only interface left besides lo (after a spare tap is gone)."""
    for entry in netns.links(vm.netns):
        if entry["ifname"] != "lo":
            return int(entry["ifindex"])
    raise LabError(f"{vm.netns} has no interface")
