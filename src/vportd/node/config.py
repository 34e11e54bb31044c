"""The controller's TOML configuration, validated at start.

Unknown keys and bad values are refused with a message that names the key
(`openflow.listen: ...`), so that a typo never silently falls back to a
default. Every field has a sane default except the controller's id. The
docstring under a key is its description: docs/configuration.md is made from
them (`vportd --config-reference`), and a key without one fails its test.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from vportd.core.errors import InvalidRequest
from vportd.core.segments import Segment, SegmentMap
from vportd.node.addresses import (
    check_endpoint,
    check_ovsdb_remote,
    check_url,
    every_address,
    ip_of,
    overlap,
    split_address,
    url_host,
)

# A type's `title` is its name in the configuration reference (config_reference.py).
Seconds = Annotated[float, Field(gt=0, le=3600, title="seconds")]


class ConfigError(Exception):
    pass


class _Section(BaseModel):
    # The docstring under a key is its description (docs/configuration.md).
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def _listen(value: str) -> str:
    split_address(value)
    return value


def _endpoint(value: str) -> str:
    check_endpoint(value)
    return value


ListenAddress = Annotated[str, AfterValidator(_listen), Field(title="HOST:PORT")]
Endpoint = Annotated[str, AfterValidator(_endpoint), Field(title="HOST:PORT")]


class ControllerSection(_Section):
    """Who this controller is."""

    id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    """This controller's name, unique in its cluster (logs, members, mastership)."""


class OpenFlowSection(_Section):
    """The OpenFlow 1.3 listener every switch (OVS bridge) connects to."""

    listen: ListenAddress = "127.0.0.1:6653"
    """Address and port to listen on (port 0: any free one); IPv6 as [ADDR]:PORT."""
    # A switch that sends nothing for echo_interval * echo_misses seconds is dropped
    # (and its handshake must finish within that): 10 s, as OVS's own probe gives a
    # controller (5 s + 5 s). ovs-vswitchd goes silent for seconds while it creates
    # thousands of ports, and dropping it only adds a reconnect and a reconcile.
    echo_interval: Seconds = 2.0
    """Seconds between echo requests to a switch that sends nothing."""
    echo_misses: Annotated[int, Field(ge=1, le=100)] = 5
    """A switch silent for echo_interval * echo_misses seconds (or slower to handshake) is
    dropped."""
    max_message: Annotated[int, Field(ge=64, le=65535)] = 65535
    """Largest OpenFlow message accepted from a switch, in bytes; a larger one closes it."""
    send_queue: Annotated[int, Field(ge=16, le=1_000_000)] = 4096
    """Messages queued towards one switch; a full queue closes it (the switch is not
    reading)."""
    # A barrier, flow dump or role request unanswered this long closes the switch
    # (reconnecting reconciles it): it covers every flow mod queued before it.
    reply_timeout: Seconds = 10.0
    """Seconds a barrier, flow dump or role request may go unanswered before the switch is
    closed."""
    # A switch with no OpenFlow channel to us this long is unreachable from here: its
    # mastership goes to a controller that reaches it; if none does (its hypervisor
    # died or lost its management network) its VM ports count as down until it is
    # back, so that a VM restarted elsewhere takes its MAC over. Longer than a restart.
    unreachable_after: Seconds = 30.0
    """Seconds a switch may be without its OpenFlow channel to this controller before it
    counts as unreachable from here: its mastership then moves to a controller that
    reaches it, or, if none does, its VM ports count as down."""


class OVSDBSection(_Section):
    """The OVSDB servers read for which VM each port belongs to (one monitor per remote)."""

    remotes: list[Annotated[str, Field(title="OVSDB remote")]] = Field(
        default_factory=lambda: ["unix:/var/run/openvswitch/db.sock"]
    )
    """`unix:PATH`, `tcp:HOST:PORT` or `ssl:HOST:PORT` (IPv6 as [ADDR]), one per hypervisor."""

    follow: Literal["mastered", "all"] = "mastered"
    """In a cluster, which servers a controller follows: those of the switches it masters
    (the others' facts come from etcd, `switches/`), or every one. Alone: every one."""

    @field_validator("remotes")
    @classmethod
    def _remotes(cls, value: list[str]) -> list[str]:
        for remote in value:
            check_ovsdb_remote(remote)
        return value


def _url(value: str) -> str:
    check_url(value)
    return value


DEFAULT_API_LISTEN = "127.0.0.1:8080"


class APISection(_Section):
    """The REST API. Without a token file the matching endpoints refuse every request."""

    listen: ListenAddress = DEFAULT_API_LISTEN
    """Address and port to listen on (port 0: any free one); IPv6 as [ADDR]:PORT."""
    advertise: Annotated[str, AfterValidator(_url), Field(title="URL")] | None = None
    """The URL peers and forwarded requests use; unset: http://{listen} (https:// with
    [tls])."""
    token_file: Path | None = None
    """File holding the VMM's and operators' bearer token (private: chmod 600)."""
    peer_token_file: Path | None = None
    """File holding the controllers' own bearer token, the same on every controller (east-west
    requests)."""
    max_body: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    """Largest request body accepted, in bytes."""
    peer_timeout: Seconds = 5.0
    """Seconds an east-west request may take before it has failed."""

    @property
    def url(self) -> str:
        return self.advertise or f"http://{self.listen}"


class StoreSection(_Section):
    """Where the vPort table lives: this process only (one controller) or etcd (a cluster)."""

    kind: Literal["memory", "etcd"] = "memory"
    """`memory`: a controller alone, its table in this process; `etcd`: a member of a
    cluster."""
    endpoints: list[Endpoint] = Field(default_factory=lambda: ["127.0.0.1:2379"], min_length=1)
    """etcd's client addresses, HOST:PORT with no scheme: one (a DNS name may list every
    member), or several IP addresses."""
    prefix: Annotated[str, Field(pattern=r"^/[A-Za-z0-9_./-]*[A-Za-z0-9_-]$")] = "/vportd"
    """The cluster's keys in etcd go under this prefix."""
    # Leader, members and masters hold their keys on a lease of this TTL: a dead
    # controller's roles move on within about this long, and a live one loses them
    # (a new session: mastership churn) when etcd answers no keepalive for as long.
    # A shorter TTL is a faster failover; a longer one rides out a loaded etcd
    # (docs/operations.md).
    lease_ttl: Annotated[int, Field(ge=2, le=60)] = 3
    """Seconds of the lease this controller's roles are held on (failover time)."""
    # Records are gathered this long before a write, so that a burst goes in
    # fewer transactions. A message that announces a record waits until it is
    # written (persist before send): this delay adds to every handshake. With 0,
    # records still go together when they queue while a write is in flight.
    write_delay: Annotated[float, Field(ge=0, le=1)] = 0.0
    """Seconds records are gathered before they are written to etcd together."""

    @field_validator("endpoints")
    @classmethod
    def _several_by_ip(cls, value: list[str]) -> list[str]:
        """gRPC fails over between IP addresses only (`vportd.cluster.etcd`)."""
        named = [e for e in value if ip_of(split_address(e)[0]) is None]
        if len(value) > 1 and named:
            raise ValueError(
                f"{named[0]!r}: several endpoints must be IP addresses "
                "(or give one DNS name that lists every member)"
            )
        return value

    ca: Path | None = None
    """etcd over TLS: the CA etcd's certificate is checked against."""
    cert: Path | None = None
    """The client certificate etcd's --client-cert-auth asks for (with key)."""
    key: Path | None = None
    """The client certificate's private key."""
    username: Annotated[str, Field(min_length=1)] | None = None
    """etcd's own authentication: a user whose role may read and write the prefix."""
    password_file: Path | None = None
    """A file holding that user's password (mode 0600)."""

    @model_validator(mode="after")
    def _tls_files(self) -> StoreSection:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key: give both or neither")
        if self.cert is not None and self.ca is None:
            raise ValueError("cert: needs ca (a client certificate goes with TLS)")
        if (self.username is None) != (self.password_file is None):
            raise ValueError("username and password_file: give both or neither")
        return self


class MigrationSection(_Section):
    """The migration handshake the leader runs for a VMM's notify."""

    # False turns migration awareness off, for comparison only (the `naive` mode of
    # the downtime benchmark): no notify, and a port delete is the VM leaving.
    aware: bool = True
    """false: no notify accepted and a port delete is the VM leaving (for comparison
    only)."""
    sync_timeout: Seconds = 2.0
    """Seconds the leader waits for every controller's sync complete before the migration
    fails."""
    activation_timeout: Seconds = 300.0
    """Seconds the VM may take to become active at the destination (the VMM's whole
    pre-copy)."""
    completion_timeout: Seconds = 30.0
    """Seconds after activation for the source's port to go before the migration completes
    anyway."""
    # The leader keeps this many finished migrations for GET /v1/migrations/{id},
    # each for at most history_age seconds; older ones answer 404.
    history_size: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    """Finished migrations the leader keeps for GET /v1/migrations/{id}."""
    history_age: Annotated[float, Field(gt=0, le=30 * 86400, title="seconds")] = 3600.0
    """Seconds a finished migration is kept; older ones answer 404."""
    flap_moves: Annotated[int, Field(ge=1, le=1_000_000)] = 5
    """Moves within flap_window after which a VM's notifies get 429 (RFC 7432 §15.1)."""
    flap_window: Annotated[float, Field(gt=0, le=86400, title="seconds")] = 180.0
    """Seconds over which a VM's moves are counted for flap damping."""


class LinkSection(_Section):
    """An inter-hypervisor link declared by hand: port `a_port` of `a` leads to `b`."""

    a: str
    """One end's switch (its OVS bridge name)."""
    a_port: Annotated[int, Field(ge=1, le=0xFFFFFF00)]
    """The OpenFlow port number at `a` that leads to `b`."""
    b: str
    """The other end's switch (its OVS bridge name)."""
    b_port: Annotated[int, Field(ge=1, le=0xFFFFFF00)]
    """The OpenFlow port number at `b` that leads to `a`."""


class TopologySection(_Section):
    """How the switches are linked: found by LLDP and/or declared by hand."""

    lldp: bool = True
    """Find the links between switches by sending LLDP on their ports."""
    lldp_interval: Seconds = 5.0
    """Seconds between LLDP rounds."""
    links: list[LinkSection] = Field(default_factory=list)
    """Links declared by hand, as [[topology.links]] tables."""


class SegmentEntry(_Section):
    """A tenant segment: the VLAN tag of its VM ports, its VNI on the overlay, its name."""

    tag: Annotated[int, Field(ge=0, le=4095)]
    """The VLAN tag of its VM ports (`ovs-vsctl set port P tag=N`; 0: untagged)."""
    vni: Annotated[int, Field(ge=0, le=0xFFFFFF)]
    """The VNI (`tun_id`) the segment's frames carry between hypervisors."""
    name: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    """A name for people (shown with the segment's vPorts)."""


class SegmentsSection(_Section):
    """Tenant segments. A segment not listed here is carried with its tag as its VNI."""

    map: list[SegmentEntry] = Field(default_factory=list)
    """Segments mapped to their own VNIs and names, as [[segments.map]] tables."""

    @model_validator(mode="after")
    def _one_each(self) -> SegmentsSection:
        """Each tag once, each VNI once, no VNI that is another tag's default."""
        try:
            self.segment_map()
        except InvalidRequest as err:
            raise ValueError(f"segments.map: {err.detail}") from None
        return self

    def segment_map(self) -> SegmentMap:
        return SegmentMap(Segment(e.tag, e.vni, e.name) for e in self.map)


class TLSSection(_Section):
    """One CA for every channel: with it, REST is https only, OpenFlow and OVSDB use ssl:.

    `cert` and `key` are this controller's: its server certificate for REST and
    OpenFlow, its client certificate towards OVSDB servers and peers. The files
    are loaded when the daemon starts (and by `vportd --check`).
    """

    ca: Path
    """The CA certificate(s) every peer, switch and OVSDB server is checked against (PEM)."""
    cert: Path
    """This controller's certificate (PEM)."""
    key: Path
    """This controller's private key (PEM), the certificate's."""


class LoggingSection(_Section):
    """What the controller logs, on stderr."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    """The lowest level logged."""


class Config(_Section):
    controller: ControllerSection
    openflow: OpenFlowSection = OpenFlowSection()
    ovsdb: OVSDBSection = OVSDBSection()
    api: APISection = APISection()
    store: StoreSection = StoreSection()
    migration: MigrationSection = MigrationSection()
    topology: TopologySection = TopologySection()
    segments: SegmentsSection = SegmentsSection()
    logging: LoggingSection = LoggingSection()
    tls: TLSSection | None = None

    @model_validator(mode="before")
    @classmethod
    def _https_by_default(cls, data: object) -> object:
        """With [tls], the API's advertised URL defaults to https://{listen}."""
        if not isinstance(data, dict) or data.get("tls") is None:
            return data
        api = data.get("api", {})
        if not isinstance(api, dict) or "advertise" in api:
            return data
        listen = api.get("listen", DEFAULT_API_LISTEN)
        return {**data, "api": {**api, "advertise": f"https://{listen}"}}

    @model_validator(mode="after")
    def _cluster_needs_peer_token(self) -> Config:
        """A cluster (store.kind = "etcd") needs api.peer_token_file."""
        if self.store.kind == "etcd" and self.api.peer_token_file is None:
            raise ValueError(
                'api.peer_token_file: required with store.kind = "etcd" '
                "(controllers authenticate each other with it)"
            )
        return self

    @model_validator(mode="after")
    def _tls_everywhere(self) -> Config:
        """[tls] makes the API https only, and http only without it; ssl: OVSDB remotes
        need [tls]."""
        if self.tls is not None and not self.api.url.startswith("https://"):
            raise ValueError(
                f"api.advertise: {self.api.url!r} is not https://: with [tls] the API "
                "serves https only"
            )
        if self.tls is None and self.api.url.startswith("https://"):
            raise ValueError(
                f"api.advertise: {self.api.url!r} is https:// but there is no [tls] section: "
                "the API serves http only"
            )
        plain = [r for r in self.ovsdb.remotes if r.startswith("ssl:")] if not self.tls else []
        if plain:
            raise ValueError(
                f"ovsdb.remotes: {plain[0]!r} needs a [tls] section "
                "(the CA to check the server, the certificate to show it)"
            )
        return self

    @model_validator(mode="after")
    def _ports_apart(self) -> Config:
        """openflow.listen and api.listen cannot take the same port of the same address."""
        if overlap(self.openflow.listen, self.api.listen):
            raise ValueError(
                f"openflow.listen: {self.openflow.listen!r} takes the port of api.listen "
                f"({self.api.listen!r}): give them different ports"
            )
        return self

    @model_validator(mode="after")
    def _reachable(self) -> Config:
        """In a cluster, api.listen on every address (0.0.0.0, ::) needs api.advertise."""
        if self.store.kind == "etcd" and every_address(url_host(self.api.url)):
            raise ValueError(
                f"api.advertise: peers would be told {self.api.url!r} (api.listen "
                f"{self.api.listen!r} is every address): set it to a URL that reaches "
                "this controller"
            )
        return self


def _explain(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            why = "unknown key"
        elif e["type"] == "value_error":
            why = str(e.get("ctx", {}).get("error", e["msg"]))
        else:
            why = e["msg"]
        lines.append(f"{key}: {why}" if key else why)  # a cross-key rule names its keys
    return "; ".join(lines)


def parse_config(text: str, origin: str = "<config>") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{origin}: not valid TOML: {err}") from None
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{origin}: {_explain(err)}") from None


def load_config(path: Path) -> Config:
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    return parse_config(text, str(path))
