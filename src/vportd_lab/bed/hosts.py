"""The overlay fabric (`lab up --fabric overlay`): hosts, controllers and etcd in namespaces.

As on real hosts (the names and numbers are `plan`'s):

- `ov-fab` holds the network itself, two Linux bridges: `mgmt`, the
  management network (MGMT_NET.0/24), and `underlay` (UNDERLAY_NET.0/24).
  Every other namespace has a veth into it, so that taking that veth's
  `ov-fab` end down (`ip -n ov-fab link set hv1-m down`) cuts one link.
- The root namespace's leg on the management network, `ov-mgmt`
  (MGMT_NET.1): the lab's own tools and `vportctl` reach the controllers'
  API and etcd through it.
- `ov-etcd` (MGMT_NET.2) runs etcd; `ov-c{c}` (MGMT_NET.{10+c}) controller c.
- `ov-hv{i}` is host i: its own ovsdb-server (unix socket in DIR/hv{i}, and
  `ptcp:6640:MGMT_NET.{100+i}` for the controllers) and userspace
  ovs-vswitchd; `Open_vSwitch external_ids` hostname, system-id and
  vportd-encap-ip; `br-phy` with the uplink veth (`uplink`), whose internal
  interface holds the underlay address UNDERLAY_NET.{i+1} (DESIGN §5); and
  `br-int` (the plan's datapath id, fail mode secure, every controller as a
  target over TCP) with one flow-based tunnel port `vportd-tun`
  (geneve or vxlan, `options:remote_ip=flow options:key=flow`,
  OpenFlow port TUNNEL_PORT).
- VM k is namespace `ov-vm{k}` with a veth: `eth0` inside, `vm{k}h` in its
  host's namespace on `br-int` (libvirt's external_ids, `ofport_request`
  k+1, the VLAN `tag` of its segment when the lab has several).

Every veth end carries the lab's alias mark (see `netns`); `lab down`
deletes the namespaces and the root leg (`teardown`).
"""

from __future__ import annotations

from collections.abc import Callable

from vportd_lab.bed import netns
from vportd_lab.bed.commands import LabError, run
from vportd_lab.bed.messages import say
from vportd_lab.bed.ovs import PrivateOVS
from vportd_lab.bed.plan import (
    ETCD_NS,
    FABRIC_NS,
    INTEGRATION,
    MGMT_NET,
    NET_PREFIX,
    OVSDB_TCP_PORT,
    PHYSICAL,
    ROOT_LEG,
    STANDALONE,
    TUNNEL_NAME,
    TUNNEL_PORT,
    UNDERLAY_NET,
    VM,
    Hypervisor,
    Plan,
)
from vportd_lab.bed.procs import tcp_peers
from vportd_lab.bed.state import State

MGMT_BRIDGE, UNDERLAY_BRIDGE = "mgmt", "underlay"  # Linux bridges in FABRIC_NS
MGMT_IF, UPLINK_IF = "mgmt", "uplink"  # a namespace's veths into them
UNDERLAY_MTU = 1600  # room for a 1500-byte VM frame and the tunnel's headers


def namespaces(plan: Plan) -> list[str]:
    """Every namespace the overlay lab makes, in the order it makes them."""
    names = [FABRIC_NS]
    if plan.etcd is not None:
        names.append(ETCD_NS)
    names += [str(c.netns) for c in plan.controllers]
    names += [str(hv.netns) for hv in plan.hypervisors]
    return names + [vm.netns for vm in plan.vms]


def host_ovs(plan: Plan, hv: Hypervisor) -> PrivateOVS:
    """Host `hv`'s own Open vSwitch (userspace datapath), run in its namespace."""
    listen = (f"ptcp:{OVSDB_TCP_PORT}:{hv.mgmt_ip}",)
    return PrivateOVS(plan.host_rundir(hv), dummy=False, netns=hv.netns, listen=listen)


def ovs_of(plan: Plan, host: str) -> PrivateOVS:
    """The Open vSwitch of the host named `host`."""
    for hv in plan.hypervisors:
        if hv.name == host:
            return host_ovs(plan, hv)
    raise LabError(f"no hypervisor {host!r} in the lab")


def ovsdb_remote(hv: Hypervisor) -> str:
    return f"tcp:{hv.mgmt_ip}:{OVSDB_TCP_PORT}"


# -- checks before anything is made -------------------------------------------------
def preflight(plan: Plan) -> None:
    """Refuse if a namespace, the root leg or the management network is taken already."""
    taken = sorted(set(netns.namespaces()) & set(namespaces(plan)))
    if taken:
        raise LabError(
            f"network namespace(s) {', '.join(taken)} exist already (another overlay lab? "
            "`vportctl lab status`, `vportctl lab down --dir DIR`)"
        )
    if netns.link(ROOT_LEG) is not None:
        raise LabError(f"interface {ROOT_LEG} exists already (another overlay lab?)")
    routes = run(["ip", "-4", "route", "show"])
    for net in (MGMT_NET, UNDERLAY_NET):
        if f"{net}." in routes:
            raise LabError(f"{net}.0/{NET_PREFIX} is routed here already: the lab needs it")


# -- building ------------------------------------------------------------------------
def build(plan: Plan, state: State, save: Callable[[], None]) -> None:
    """The namespaces, both networks, every host with its OVS, and the VMs (not yet the
    processes in `ov-etcd` and `ov-c*`: `bed` starts those)."""
    state.namespaces = namespaces(plan)
    state.host_ifs = [ROOT_LEG, *(vm.host_if for vm in plan.vms)]
    save()
    _network(plan)
    if plan.etcd is not None:
        _attach(plan, ETCD_NS, "etcd", f"{MGMT_NET}.2")
    for n, c in enumerate(plan.controllers):
        _attach(plan, str(c.netns), c.id, f"{MGMT_NET}.{10 + n}")
    for hv in plan.hypervisors:
        _host(plan, hv)
    _tunnel_neighbours(plan)
    for vm in plan.vms:
        add_vm(plan, vm)
    check_ports(plan)


def _namespace(name: str) -> None:
    netns.add_namespace(name)
    netns.disable_ipv6(netns=name)
    run(["ip", "-n", name, "link", "set", "dev", "lo", "up"])


def _network(plan: Plan) -> None:
    """`ov-fab` with its two bridges, and the root namespace's leg on `mgmt`."""
    _namespace(FABRIC_NS)
    for bridge in (MGMT_BRIDGE, UNDERLAY_BRIDGE):
        run(["ip", "-n", FABRIC_NS, "link", "add", bridge, "type", "bridge"])
        run(["ip", "-n", FABRIC_NS, "link", "set", "dev", bridge, "up"])
    run(["ip", "link", "add", ROOT_LEG, "type", "veth", "peer", "name", "root", "netns",
         FABRIC_NS])  # fmt: skip
    netns.disable_ipv6(device=ROOT_LEG)
    _mark(plan, None, ROOT_LEG)
    _mark(plan, FABRIC_NS, "root")
    _join(FABRIC_NS, "root", MGMT_BRIDGE)
    run(["ip", "addr", "add", f"{MGMT_NET}.1/{NET_PREFIX}", "dev", ROOT_LEG])
    run(["ip", "link", "set", "dev", ROOT_LEG, "up"])


def _mark(plan: Plan, ns: str | None, dev: str) -> None:
    where = [] if ns is None else ["-n", ns]
    run(["ip", *where, "link", "set", "dev", dev, "alias", plan.marker])


def _join(ns: str, dev: str, bridge: str) -> None:
    run(["ip", "-n", ns, "link", "set", "dev", dev, "master", bridge, "up"])


def veth(plan: Plan, a: tuple[str, str], b: tuple[str, str], mtu: int | None = None) -> None:
    """A veth between (namespace, name) `a` and `b`, marked, tx offload off at both ends."""
    size = [] if mtu is None else ["mtu", str(mtu)]
    run(["ip", "link", "add", a[1], "netns", a[0], *size, "type", "veth", "peer", "name", b[1],
         "netns", b[0], *size])  # fmt: skip
    for ns, dev in (a, b):
        _mark(plan, ns, dev)
        netns.tx_offload_off(dev, ns)


def _attach(plan: Plan, ns: str, name: str, ip: str) -> None:
    """Namespace `ns` (made now) on the management network with address `ip`."""
    _namespace(ns)
    veth(plan, (ns, MGMT_IF), (FABRIC_NS, f"{name}-m"))
    _join(FABRIC_NS, f"{name}-m", MGMT_BRIDGE)
    run(["ip", "-n", ns, "addr", "add", f"{ip}/{NET_PREFIX}", "dev", MGMT_IF])
    run(["ip", "-n", ns, "link", "set", "dev", MGMT_IF, "up"])


def _host(plan: Plan, hv: Hypervisor) -> None:
    """Host `hv`: its namespace on both networks, its OVS, br-phy and br-int."""
    ns = str(hv.netns)
    _attach(plan, ns, hv.name, str(hv.mgmt_ip))
    veth(plan, (ns, UPLINK_IF), (FABRIC_NS, f"{hv.name}-u"), UNDERLAY_MTU)
    _join(FABRIC_NS, f"{hv.name}-u", UNDERLAY_BRIDGE)
    run(["ip", "-n", ns, "link", "set", "dev", UPLINK_IF, "up"])
    ovs = host_ovs(plan, hv).start()
    if ovs.running("ovs-vswitchd") is None:
        raise LabError(f"ovs-vswitchd of {hv.name} did not start")
    ovs.vsctl(
        "set", "Open_vSwitch", ".", f"external_ids:hostname={hv.name}",
        f"external_ids:system-id={hv.name}", f"external_ids:vportd-encap-ip={hv.encap_ip}",
    )  # fmt: skip
    ovs.vsctl(
        "add-br", PHYSICAL, "--", "set", "Bridge", PHYSICAL, "datapath_type=netdev",
        "other-config:disable-in-band=true", "--", "add-port", PHYSICAL, UPLINK_IF,
    )  # fmt: skip
    run(["ip", "-n", ns, "addr", "add", f"{hv.encap_ip}/{NET_PREFIX}", "dev", PHYSICAL])
    run(["ip", "-n", ns, "link", "set", "dev", PHYSICAL, "up"])
    ovs.add_bridge(INTEGRATION, hv.dpid)
    if plan.mode == STANDALONE:
        ovs.vsctl("set-fail-mode", INTEGRATION, "standalone")
    ovs.vsctl(
        "add-port", INTEGRATION, TUNNEL_NAME, "--", "set", "Interface", TUNNEL_NAME,
        f"type={plan.encap}", "options:remote_ip=flow", "options:key=flow",
        f"ofport_request={TUNNEL_PORT}",
    )  # fmt: skip
    say(f"host {hv.name} in {ns}: OVSDB {ovsdb_remote(hv)}, {INTEGRATION} dpid {hv.dpid_hex}, "
        f"{plan.encap} endpoint {hv.encap_ip}")  # fmt: skip


def _tunnel_neighbours(plan: Plan) -> None:
    """Every host's OVS told every other endpoint's MAC (`tnl/neigh/set`): OVS's userspace
    tunnels drop a frame whose endpoint is not resolved yet (and ARP for it), so the
    first broadcast after `lab up` (a VM's ARP request) would be lost and the VM retry
    after a second; a host in service has long had its neighbours."""
    macs = {hv.name: _mac(str(hv.netns), PHYSICAL) for hv in plan.hypervisors}
    for hv in plan.hypervisors:
        ovs = host_ovs(plan, hv)
        for other in plan.hypervisors:
            if other.name != hv.name:
                ovs.appctl("tnl/neigh/set", PHYSICAL, str(other.encap_ip), macs[other.name])


def _mac(ns: str, dev: str) -> str:
    found = netns.link(dev, netns=ns)
    if found is None:
        raise LabError(f"no {dev} in {ns}")
    return str(found["address"])


def add_vm(plan: Plan, vm: VM) -> None:
    """VM `vm`: its namespace and veth, the host end a port of its host's br-int."""
    hv = _host_of(plan, vm.hypervisor)
    _namespace(vm.netns)
    host_ns = str(hv.netns)
    veth(plan, (host_ns, vm.host_if), (vm.netns, vm.guest_if))
    run(["ip", "-n", vm.netns, "link", "set", "dev", vm.guest_if, "address", vm.mac])
    run(["ip", "-n", vm.netns, "addr", "add", vm.cidr, "dev", vm.guest_if])
    run(["ip", "-n", vm.netns, "link", "set", "dev", vm.guest_if, "up"])
    run(["ip", "-n", host_ns, "link", "set", "dev", vm.host_if, "up"])
    settings = port_settings(vm, vm.host_if, vm.port)
    host_ovs(plan, hv).vsctl("add-port", INTEGRATION, vm.host_if, *settings)
    where = f" segment {vm.segment}" if vm.segment else ""
    say(f"VM {vm.name}: {vm.mac} {vm.cidr} on {vm.hypervisor}{where} port {vm.port}")


def port_settings(vm: VM, host_if: str, port: int) -> list[str]:
    """The `ovs-vsctl add-port` tail of a VM's port: its VLAN tag, OpenFlow port and libvirt's
    external_ids."""
    tag = [f"tag={vm.segment}"] if vm.segment else []
    return [
        *tag, "--", "set", "Interface", host_if, f"ofport_request={port}",
        f"external_ids:attached-mac={vm.mac}", f"external_ids:iface-id={vm.iface_id}",
        f"external_ids:vm-id={vm.vm_id}", "external_ids:iface-status=active",
    ]  # fmt: skip


def _host_of(plan: Plan, name: str) -> Hypervisor:
    for hv in plan.hypervisors:
        if hv.name == name:
            return hv
    raise LabError(f"no hypervisor {name!r} in the lab")


def check_ports(plan: Plan) -> None:
    """Every host's tunnel and VM ports exist with the OpenFlow port they asked for."""
    for hv in plan.hypervisors:
        want = {TUNNEL_NAME: TUNNEL_PORT}
        want.update({vm.host_if: vm.port for vm in plan.vms if vm.hypervisor == hv.name})
        rows = {r["name"]: r for r in host_ovs(plan, hv).rows("Interface", "name", "ofport",
                                                              "error")}  # fmt: skip
        for name, port in want.items():
            row = rows.get(name)
            if row is None or row["error"] or row["ofport"] != port:
                raise LabError(f"{hv.name}: Open vSwitch did not add {name} as port {port}: {row}")


def set_controllers(plan: Plan) -> None:
    """Point every host's br-int at every controller."""
    targets = [c.target for c in plan.controllers]
    for hv in plan.hypervisors:
        host_ovs(plan, hv).set_controllers(INTEGRATION, targets)


def openflow_connections(plan: Plan) -> dict[str, int]:
    """How many hosts' ovs-vswitchd hold a TCP connection to each controller, now."""
    count = dict.fromkeys((c.id for c in plan.controllers), 0)
    for hv in plan.hypervisors:
        pid = host_ovs(plan, hv).running("ovs-vswitchd")
        peers = {f"{h}:{p}" for h, p in tcp_peers(pid)} if pid else set()
        for c in plan.controllers:
            count[c.id] += c.openflow in peers
    return count
