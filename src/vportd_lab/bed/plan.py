"""The lab's layout: names, numbers and addresses, computed before anything is created.

Pure and deterministic: the same options give the same lab, so a test, the
demo and an operator can name `vm1`, `02:00:00:00:00:02` or `hv1` port 100
without asking. The conventions (DESIGN.md §5):

- hypervisor i: bridge `hv{i}`, datapath id i+1;
- link between hv{i} and hv{j}: patch ports `p{i}-{j}` on hv{i} with OpenFlow
  port 100+j, and `p{j}-{i}` on hv{j} with port 100+i (a full mesh);
- VM k: namespace `vm{k}` on hv{k % H}, veth `vm{k}h` (host end, OpenFlow
  port k+1 on its bridge) and `eth0` (inside), MAC 02:00:00:00:00:{k+1:02x},
  IP 10.0.0.{k+1}/24; after `lab migrate` to hv{i}, its host end is
  `vm{k}h{i}`, still OpenFlow port k+1 (unique on every bridge);
- controller c: id `c{c}`, OpenFlow on 127.0.0.1:(openflow_port+c), API on
  127.0.0.1:(api_port+c);
- with controllers, one etcd (their store) on 127.0.0.1:etcd_port (peer
  port etcd_peer_port), its data in DIR/etcd/data and its log in
  DIR/etcd/etcd.log;
- with TLS (`lab up --tls`): a CA and the certificates it signs in DIR/tls
  (`ca.pem`; `c{c}.pem`/`.key` per controller, `ovs.pem`/`.key` for the
  OVS, each with the IP 127.0.0.1 as subjectAltName); the controllers' API
  is https, the bridges' controller targets `ssl:`, and the controllers read
  OVSDB from `ssl:127.0.0.1:ovsdb_port` (a port picked free at start);
- the mode (`MODES`, for the migration downtime benchmark): `aware` (vportd
  as it is), `naive` (the controllers with `migration.aware = false`; the VMM
  sends no notify) or `standalone` (no controllers, bridges in
  fail_mode=standalone: OVS's NORMAL learning switch). Standalone links the
  bridges in a star from hv0 instead of the mesh: flooding NORMAL switches
  around a loop would storm;
- the fabric (`FABRICS`): `patch` as above, or `overlay`: hypervisor i is
  namespace `ov-hv{i}` (management address MGMT_NET.{100+i}, tunnel
  endpoint UNDERLAY_NET.{i+1}, its OVS in DIR/hv{i}, bridge `br-int`), VM k
  namespace `ov-vm{k}`, controller c namespace `ov-c{c}` at MGMT_NET.{10+c}
  (the ports as given, without the +c), etcd `ov-etcd` at MGMT_NET.2:2379,
  no patch links (`hosts` builds it);
- segments: one untagged (tag 0, VNI 0), or N tagged 10, 20, ... (VNI =
  tag), VM k in segment k mod N.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from vportd_lab.bed.commands import LabError

DEFAULT_DIR = Path("/run/vportd-lab")
MAX_HYPERVISORS = 32
MAX_VMS = 99  # VM ports are 1..99; patch ports start at 100
MAX_CONTROLLERS = 9
PATCH_BASE = 100
SUBNET = "10.0.0"
PREFIX_LEN = 24
GUEST_IF = "eth0"
SUN_PATH_MAX = 107  # sockaddr_un.sun_path holds 108 bytes including the final NUL


VM_NAMESPACE = re.compile(r"^vm(\d+)$")
# `vm{k}h` from `lab up`; `vm{k}h{i}` for the tap `lab migrate` made on hv{i}
VM_HOST_IF = re.compile(r"^vm(\d+)h(\d+)?$")
BRIDGE = re.compile(r"^hv(\d+)$")
# The overlay fabric's namespaces: the network itself, etcd, controllers, hosts, VMs.
OVERLAY_NAMESPACE = re.compile(r"^ov-(fab|etcd|c\d+|hv\d+|vm\d+)$")
FABRIC_NS, ETCD_NS = "ov-fab", "ov-etcd"
MGMT_NET, UNDERLAY_NET = "172.30.0", "172.31.0"  # /24 each
NET_PREFIX = 24
ROOT_LEG = "ov-mgmt"  # the root namespace's veth on the management network (MGMT_NET.1)
INTEGRATION, PHYSICAL = "br-int", "br-phy"
TUNNEL_PORT, TUNNEL_NAME = 100, "vportd-tun"
OVSDB_TCP_PORT = 6640
ETCD_PORTS = (2379, 2380)
DATAPATH_TAP = "ovs-netdev"  # the netdev datapath's own tap, one per network namespace
AWARE, NAIVE, STANDALONE = "aware", "naive", "standalone"
MODES = (AWARE, NAIVE, STANDALONE)
PATCH, OVERLAY = "patch", "overlay"
FABRICS = (PATCH, OVERLAY)
GENEVE, VXLAN = "geneve", "vxlan"
ENCAPS = (GENEVE, VXLAN)
MAX_SEGMENTS = 9
SEGMENT_STEP = 10  # segment s (of several) is VLAN tag 10*(s+1), its VNI the same number

_VM_ID_NAMESPACE = uuid.UUID("8d5c6f0e-6a8e-5b7e-9d43-7f0c2a1b3c4d")


def default_dir(env: Mapping[str, str]) -> Path:
    """The lab's directory when none is named: $VPORTD_LAB_DIR, else DEFAULT_DIR."""
    return Path(env.get("VPORTD_LAB_DIR") or DEFAULT_DIR)


@dataclass(frozen=True)
class Hypervisor:
    name: str
    dpid: int
    # On the overlay fabric (`underlay`): the host's namespace, its management and underlay
    # (tunnel endpoint) addresses and its OVS's integration bridge.
    netns: str | None = None
    mgmt_ip: str | None = None
    encap_ip: str | None = None
    switch: str | None = None

    @property
    def bridge(self) -> str:
        return self.switch or self.name

    @property
    def dpid_hex(self) -> str:
        return f"{self.dpid:016x}"


@dataclass(frozen=True)
class Segment:
    """A tenant network: its VLAN tag on the VMs' ports (0: untagged) and its VNI."""

    tag: int
    vni: int
    name: str


def segments_of(count: int) -> tuple[Segment, ...]:
    """One untagged segment, or `count` tagged ones (tags 10, 20, ...; VNI = tag)."""
    if count == 1:
        return (Segment(0, 0, "default"),)
    tags = [SEGMENT_STEP * (s + 1) for s in range(count)]
    return tuple(Segment(tag, tag, f"seg{tag}") for tag in tags)


@dataclass(frozen=True)
class Link:
    """A patch-port pair: port `a_port` (`a_name`) of `a` leads to port `b_port` of `b`."""

    a: str
    a_name: str
    a_port: int
    b: str
    b_name: str
    b_port: int


@dataclass(frozen=True)
class VM:
    name: str
    netns: str
    mac: str
    ip: str
    prefix_len: int
    hypervisor: str
    port: int  # OpenFlow port of the host end on the hypervisor's bridge
    host_if: str
    guest_if: str
    iface_id: str
    vm_id: str
    segment: int = 0  # its port's VLAN tag (0: untagged, the default segment)

    @property
    def cidr(self) -> str:
        return f"{self.ip}/{self.prefix_len}"


@dataclass(frozen=True)
class Controller:
    id: str
    openflow: str  # host:port it listens on
    api: str
    config: Path
    log: Path
    tls: bool = False
    netns: str | None = None  # on the overlay fabric: the controller's own namespace

    @property
    def target(self) -> str:
        """The OVS controller target of this controller."""
        return f"{'ssl' if self.tls else 'tcp'}:{self.openflow}"

    @property
    def url(self) -> str:
        """Its API's base URL."""
        return f"{'https' if self.tls else 'http'}://{self.api}"


@dataclass(frozen=True)
class Tls:
    """The lab's certificates (in `dir`) and the OVSDB's ssl: port."""

    dir: Path
    ovsdb_port: int

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"  # as pki.Authority names it

    def cert(self, name: str) -> Path:
        return self.dir / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    @property
    def ovsdb_listen(self) -> str:
        return f"127.0.0.1:{self.ovsdb_port}"

    @property
    def ovsdb_remote(self) -> str:
        """The controllers' OVSDB remote."""
        return f"ssl:{self.ovsdb_listen}"


@dataclass(frozen=True)
class Etcd:
    """The lab's etcd: one member on loopback, the controllers' store."""

    client_port: int
    peer_port: int
    workdir: Path
    host: str = "127.0.0.1"
    netns: str | None = None  # on the overlay fabric: etcd's own namespace

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"  # as PrivateEtcd names it

    @property
    def log(self) -> Path:
        return self.workdir / "etcd.log"


@dataclass(frozen=True)
class Plan:
    dir: Path
    hypervisors: tuple[Hypervisor, ...]
    links: tuple[Link, ...]
    vms: tuple[VM, ...]
    controllers: tuple[Controller, ...]
    etcd: Etcd | None = None  # only with controllers
    mode: str = AWARE  # one of MODES
    tls: Tls | None = None  # `lab up --tls`
    fabric: str = PATCH  # one of FABRICS
    encap: str = GENEVE  # the overlay's tunnel type (one of ENCAPS)
    segments: tuple[Segment, ...] = (Segment(0, 0, "default"),)

    @property
    def overlay(self) -> bool:
        return self.fabric == OVERLAY

    @property
    def ca(self) -> Path | None:
        """The CA every channel is checked against (None: no TLS)."""
        return None if self.tls is None else self.tls.ca

    @property
    def notifies(self) -> bool:
        """Does the lab's VMM send the migration notify (only to migration-aware controllers)?"""
        return self.mode == AWARE

    @property
    def etcd_dir(self) -> Path:
        return self.dir / "etcd"

    @property
    def ovs_rundir(self) -> Path:
        return self.dir / "ovs"

    @property
    def state_file(self) -> Path:
        return self.dir / "lab.json"

    @property
    def token_file(self) -> Path:
        return self.dir / "api.token"

    @property
    def peer_token_file(self) -> Path:
        return self.dir / "peer.token"

    @property
    def marker(self) -> str:
        return marker(self.dir)

    def host_rundir(self, hv: Hypervisor) -> Path:
        """The run directory of a host's own OVS (overlay fabric)."""
        return self.dir / hv.name

    def sockets(self) -> list[Path]:
        """Every unix socket the private OVS (or, on the overlay, each host's) will create."""
        if self.overlay:
            names = ["db.sock", "ovs-vswitchd.ctl", f"{INTEGRATION}.mgmt", f"{PHYSICAL}.snoop"]
            return [self.host_rundir(hv) / n for hv in self.hypervisors for n in names]
        run = self.ovs_rundir
        names = ["db.sock", "ovsdb-server.ctl", "ovs-vswitchd.ctl"]
        for hv in self.hypervisors:
            names += [f"{hv.bridge}.mgmt", f"{hv.bridge}.snoop"]
        return [run / name for name in names]


def marker(lab_dir: Path) -> str:
    """The alias that marks the lab's interfaces as its own."""
    return f"vportd-lab:{lab_dir}"


def vm_mac(k: int) -> str:
    return f"02:00:00:00:00:{k + 1:02x}"


def vm_id(k: int) -> str:
    return str(uuid.uuid5(_VM_ID_NAMESPACE, f"vm{k}"))


def _check(what: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise LabError(f"{what} must be between {low} and {high}, got {value}")


def _check_mode(mode: str, controllers: int) -> None:
    if mode not in MODES:
        raise LabError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == STANDALONE and controllers:
        raise LabError("--mode standalone runs no controllers (OVS NORMAL learning)")
    if mode == NAIVE and not controllers:
        raise LabError("--mode naive needs controllers (vportd with migration.aware = false)")


def _check_tls(mode: str, ovsdb_port: int) -> None:
    if mode == STANDALONE:
        raise LabError("--tls needs controllers: a standalone lab has no channel to encrypt")
    _check("OVSDB ssl port", ovsdb_port, 1, 65535)


def _check_ports_apart(
    controllers: int, openflow_port: int, api_port: int, etcd_port: int, etcd_peer_port: int
) -> None:
    of_ports = set(range(openflow_port, openflow_port + controllers))
    api_ports = set(range(api_port, api_port + controllers))
    if of_ports & api_ports:
        raise LabError("--openflow-port and --api-port ranges overlap: choose ports further apart")
    if not controllers:
        return  # no etcd without controllers
    _check("etcd port", etcd_port, 1, 65535)
    _check("etcd peer port", etcd_peer_port, 1, 65535)
    if {etcd_port, etcd_peer_port} & (of_ports | api_ports) or etcd_port == etcd_peer_port:
        raise LabError(f"etcd ports {etcd_port}, {etcd_peer_port} overlap the controllers' ports")


def make_plan(
    lab_dir: Path,
    *,
    hypervisors: int = 2,
    vms: int = 3,
    controllers: int = 1,
    openflow_port: int = 6653,
    api_port: int = 8080,
    etcd_port: int = 2379,
    etcd_peer_port: int = 2380,
    mode: str = AWARE,
    tls_ovsdb_port: int | None = None,
    fabric: str = PATCH,
    segments: int = 1,
    encap: str = GENEVE,
) -> Plan:
    """The lab these options describe (with TLS when `tls_ovsdb_port` is given); LabError if
    an option is out of range."""
    _check_mode(mode, controllers)
    _check_fabric(fabric, encap, tls_ovsdb_port)
    _check("--segments", segments, 1, MAX_SEGMENTS)
    if tls_ovsdb_port is not None:
        _check_tls(mode, tls_ovsdb_port)
    _check("--hypervisors", hypervisors, 1, MAX_HYPERVISORS)
    _check("--vms", vms, 1, MAX_VMS)
    _check("--controllers", controllers, 0, MAX_CONTROLLERS)
    for what, port in (("--openflow-port", openflow_port), ("--api-port", api_port)):
        _check(what, port, 1, 65535 - max(controllers - 1, 0))
    _check_ports_apart(controllers, openflow_port, api_port, etcd_port, etcd_peer_port)
    lab_dir = Path(lab_dir).absolute()

    hvs = tuple(Hypervisor(f"hv{i}", i + 1) for i in range(hypervisors))
    links = tuple(
        Link(
            a=f"hv{i}",
            a_name=f"p{i}-{j}",
            a_port=PATCH_BASE + j,
            b=f"hv{j}",
            b_name=f"p{j}-{i}",
            b_port=PATCH_BASE + i,
        )
        for i in range(hypervisors)
        for j in range(i + 1, hypervisors)
        if mode != STANDALONE or i == 0  # standalone: a star, no loop for NORMAL to flood
    )
    guests = tuple(
        VM(
            name=f"vm{k}",
            netns=f"vm{k}",
            mac=vm_mac(k),
            ip=f"{SUBNET}.{k + 1}",
            prefix_len=PREFIX_LEN,
            hypervisor=f"hv{k % hypervisors}",
            port=k + 1,
            host_if=f"vm{k}h",
            guest_if=GUEST_IF,
            iface_id=f"vm{k}-{GUEST_IF}",
            vm_id=vm_id(k),
        )
        for k in range(vms)
    )
    ctrls = tuple(
        Controller(
            id=f"c{c}",
            openflow=f"127.0.0.1:{openflow_port + c}",
            api=f"127.0.0.1:{api_port + c}",
            config=lab_dir / f"c{c}.toml",
            log=lab_dir / f"c{c}.log",
            tls=tls_ovsdb_port is not None,
        )
        for c in range(controllers)
    )
    etcd = Etcd(etcd_port, etcd_peer_port, lab_dir / "etcd") if controllers else None
    tls = None if tls_ovsdb_port is None else Tls(lab_dir / "tls", tls_ovsdb_port)
    plan = Plan(lab_dir, hvs, links, guests, ctrls, etcd, mode, tls)
    if fabric == OVERLAY:
        plan = _overlay(plan, segments_of(segments), encap)
    longest = max(plan.sockets(), key=lambda p: len(str(p)))
    if len(str(longest)) > SUN_PATH_MAX:
        raise LabError(
            f"--dir {lab_dir} is too long: OVS's socket {longest} would be "
            f"{len(str(longest))} characters, unix sockets allow {SUN_PATH_MAX}"
        )
    return plan


def _check_fabric(fabric: str, encap: str, tls_ovsdb_port: int | None) -> None:
    if fabric not in FABRICS:
        raise LabError(f"--fabric must be one of {', '.join(FABRICS)}, got {fabric!r}")
    if encap not in ENCAPS:
        raise LabError(f"--encap must be one of {', '.join(ENCAPS)}, got {encap!r}")
    if fabric == OVERLAY and tls_ovsdb_port is not None:
        raise LabError("--tls is not supported on the overlay fabric yet")


def _overlay(plan: Plan, segments: tuple[Segment, ...], encap: str) -> Plan:
    """The patch plan moved onto the overlay: every host, controller and VM in a namespace of
    its own, addresses on the management network, segments spread round-robin over the VMs."""
    hvs = tuple(
        replace(
            hv,
            netns=f"ov-{hv.name}",
            mgmt_ip=f"{MGMT_NET}.{100 + i}",
            encap_ip=f"{UNDERLAY_NET}.{i + 1}",
            switch=INTEGRATION,
        )
        for i, hv in enumerate(plan.hypervisors)
    )
    vms = tuple(
        replace(vm, netns=f"ov-{vm.name}", segment=segments[k % len(segments)].tag)
        for k, vm in enumerate(plan.vms)
    )
    ctrls = tuple(
        replace(
            c,
            netns=f"ov-{c.id}",
            openflow=f"{MGMT_NET}.{10 + n}:{_port(c.openflow, n)}",
            api=f"{MGMT_NET}.{10 + n}:{_port(c.api, n)}",
        )
        for n, c in enumerate(plan.controllers)
    )
    etcd = plan.etcd and replace(
        plan.etcd, client_port=ETCD_PORTS[0], peer_port=ETCD_PORTS[1], host=f"{MGMT_NET}.2",
        netns=ETCD_NS,
    )  # fmt: skip
    return replace(
        plan, hypervisors=hvs, links=(), vms=vms, controllers=ctrls, etcd=etcd,
        fabric=OVERLAY, encap=encap, segments=segments,
    )  # fmt: skip


def _port(address: str, n: int) -> int:
    """Controller n's port on the patch fabric, less n: each has an address of its own."""
    return int(address.rpartition(":")[2]) - n
