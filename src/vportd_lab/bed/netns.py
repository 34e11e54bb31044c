"""Network namespaces and links, through `ip` (iproute2), `ethtool` and `sysctl`.

A lab VM is a namespace with a veth pair: the host end stays in the root
namespace (and joins an OVS bridge), the guest end is `eth0` inside. The pair
is created in one `ip link add ... peer name eth0 netns NS` so no half-moved
end is ever left behind. Both ends carry an interface alias naming the lab
(`vportd-lab:DIR`): a mark that lives in the kernel with the device itself,
which lets `lab down` recognise its own namespaces even without a state file.
"""

from __future__ import annotations

import json
from typing import Any

from vportd_lab.bed.commands import LabError, run

Link = dict[str, Any]


def _ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    where = ["-n", netns] if netns else []
    return run(["ip", *where, *args], check=check)


# -- namespaces ------------------------------------------------------------
def namespaces() -> list[str]:
    """The names of every named network namespace (`ip netns list`)."""
    out = run(["ip", "-j", "netns", "list"])
    if not out.strip():
        return []
    return [str(entry["name"]) for entry in json.loads(out)]


def add_namespace(name: str) -> None:
    _ip("netns", "add", name)


def delete_namespace(name: str) -> None:
    """Delete a namespace and, with it, every interface inside (veth peers included)."""
    _ip("netns", "delete", name)


def pids_in(netns: str) -> list[int]:
    """The processes running in a namespace (`ip netns pids`)."""
    out = run(["ip", "netns", "pids", netns], check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def ns_exec(netns: str, *args: str) -> str:
    return run(["ip", "netns", "exec", netns, *args])


def disable_ipv6(netns: str | None = None, device: str | None = None) -> None:
    """Switch IPv6 off in a namespace (all + default), or on one device of the root namespace."""
    if netns is not None:
        ns_exec(
            netns, "sysctl", "-qw",
            "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1",
        )  # fmt: skip
    if device is not None:
        run(["sysctl", "-qw", f"net.ipv6.conf.{device}.disable_ipv6=1"])


# -- links -----------------------------------------------------------------
def links(netns: str | None = None) -> list[Link]:
    """Every link with details (`ip -j -d link show`): ifname, address, ifalias, linkinfo..."""
    out = _ip("-j", "-d", "link", "show", netns=netns)
    return list(json.loads(out)) if out.strip() else []


def link(name: str, netns: str | None = None) -> Link | None:
    out = _ip("-j", "-d", "link", "show", "dev", name, netns=netns, check=False)
    if not out.strip():
        return None
    found = json.loads(out)
    return dict(found[0]) if found else None


def kind(entry: Link) -> str:
    """The link type as `ip` reports it: veth, tun, ... ('' for a plain device)."""
    info = entry.get("linkinfo") or {}
    return str(info.get("info_kind", ""))


def addresses(name: str, netns: str | None = None) -> list[str]:
    """IPv4 addresses of a device as CIDR strings."""
    out = _ip("-j", "-4", "addr", "show", "dev", name, netns=netns)
    result = []
    for entry in json.loads(out) if out.strip() else []:
        for addr in entry.get("addr_info", []):
            result.append(f"{addr['local']}/{addr['prefixlen']}")
    return result


def delete_link(name: str, netns: str | None = None) -> None:
    """Delete a link; one already gone (a veth whose peer went first) is not an error."""
    try:
        _ip("link", "delete", "dev", name, netns=netns)
    except LabError as err:
        if "Cannot find device" not in str(err):
            raise


def tx_offload_off(device: str, netns: str | None = None) -> None:
    """`ethtool -K DEV tx off`: the userspace datapath re-injects partial checksums (DESIGN §5)."""
    args = ["ethtool", "-K", device, "tx", "off"]
    if netns is None:
        run(args)
    else:
        ns_exec(netns, *args)


def add_vm_link(*, netns: str, host: str, guest: str, mac: str, cidr: str, alias: str) -> None:
    """The veth of a namespace VM: `host` in the root namespace, `guest` (with MAC and IP) inside.

    Leaves both ends up, tx checksum offload off on both, IPv6 off on the host
    end (the namespace's own IPv6 is switched off by the caller beforehand).
    """
    _ip("link", "add", host, "type", "veth", "peer", "name", guest, "netns", netns)
    _ip("link", "set", "dev", host, "alias", alias)
    _ip("link", "set", "dev", guest, "address", mac, "alias", alias, netns=netns)
    _ip("addr", "add", cidr, "dev", guest, netns=netns)
    _ip("link", "set", "dev", "lo", "up", netns=netns)
    tx_offload_off(host)
    tx_offload_off(guest, netns)
    disable_ipv6(device=host)
    _ip("link", "set", "dev", guest, "up", netns=netns)
    _ip("link", "set", "dev", host, "up")


def namespace_alias(netns: str) -> set[str]:
    """The aliases carried by the interfaces of a namespace (empty if it has none or is gone)."""
    try:
        return {str(e["ifalias"]) for e in links(netns) if e.get("ifalias")}
    except LabError:
        return set()
