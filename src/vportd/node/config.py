"""The controller's TOML configuration, validated at start.

Unknown keys and bad values are refused with a message that names the key
(`openflow.listen: ...`), so that a typo never silently falls back to a
default. Every field has a sane default except the controller's id.
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

Seconds = Annotated[float, Field(gt=0, le=3600)]


class ConfigError(Exception):
    pass


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:  # noqa: PLR2004
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return value


ListenAddress = Annotated[str, AfterValidator(_host_port)]


class ControllerSection(_Section):
    id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


class OpenFlowSection(_Section):
    listen: ListenAddress = "127.0.0.1:6653"
    # A switch that sends nothing for echo_interval * echo_misses seconds is dropped
    # (and its handshake must finish within that): 10 s, as OVS's own probe gives a
    # controller (5 s + 5 s). ovs-vswitchd goes silent for seconds while it creates
    # thousands of ports, and dropping it only adds a reconnect and a reconcile.
    echo_interval: Seconds = 2.0
    echo_misses: Annotated[int, Field(ge=1, le=100)] = 5
    max_message: Annotated[int, Field(ge=64, le=65535)] = 65535
    send_queue: Annotated[int, Field(ge=16, le=1_000_000)] = 4096
    # A barrier, flow dump or role request unanswered this long closes the switch
    # (reconnecting reconciles it): it covers every flow mod queued before it.
    reply_timeout: Seconds = 10.0
    # A switch we master with no OpenFlow channel this long (its hypervisor died or
    # lost its management network): its VM ports count as down until it is back,
    # so that a VM restarted elsewhere takes its MAC over. Longer than a restart.
    unreachable_after: Seconds = 30.0


class OVSDBSection(_Section):
    remotes: list[str] = Field(default_factory=lambda: ["unix:/var/run/openvswitch/db.sock"])

    @field_validator("remotes")
    @classmethod
    def _remotes(cls, value: list[str]) -> list[str]:
        for remote in value:
            _check_ovsdb_remote(remote)
        return value


def _check_ovsdb_remote(remote: str) -> None:
    """`unix:PATH`, `tcp:HOST:PORT` or `ssl:HOST:PORT`, what the monitor connects to."""
    kind, _, where = remote.partition(":")
    if kind in ("tcp", "ssl"):
        host, _, port = where.rpartition(":")
        ok = bool(host) and port.isdigit() and 0 < int(port) <= 65535  # noqa: PLR2004
    else:
        ok = kind == "unix" and bool(where)
    if not ok:
        raise ValueError(
            f"{remote!r} is not an OVSDB remote (unix:PATH, tcp:HOST:PORT or ssl:HOST:PORT)"
        )


def _url(value: str) -> str:
    if not value.startswith(("http://", "https://")) or value.endswith("/"):
        raise ValueError(f"expected a base URL like http://HOST:PORT, got {value!r}")
    return value


DEFAULT_API_LISTEN = "127.0.0.1:8080"


class APISection(_Section):
    """The REST API. Without a token file the matching endpoints refuse every request."""

    listen: ListenAddress = DEFAULT_API_LISTEN
    # The URL peers and forwarded requests use; default http://{listen} (https:// with [tls]).
    advertise: Annotated[str, AfterValidator(_url)] | None = None
    token_file: Path | None = None  # the VMM's and operators' bearer token
    peer_token_file: Path | None = None  # the controllers' bearer token (east-west)
    max_body: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    peer_timeout: Seconds = 5.0  # an east-west request that takes longer has failed

    @property
    def url(self) -> str:
        return self.advertise or f"http://{self.listen}"


class StoreSection(_Section):
    """Where the vPort table lives: this process only (one controller) or etcd (a cluster)."""

    kind: Literal["memory", "etcd"] = "memory"
    endpoints: list[ListenAddress] = Field(default_factory=lambda: ["127.0.0.1:2379"], min_length=1)
    prefix: Annotated[str, Field(pattern=r"^/[A-Za-z0-9_./-]*[A-Za-z0-9_-]$")] = "/vportd"
    # Leader, members and masters hold their keys on a lease of this TTL: a dead
    # controller's roles move on within about this long, and a live one loses them
    # (a new session: mastership churn) when etcd answers no keepalive for as long.
    # A shorter TTL is a faster failover; a longer one rides out a loaded etcd
    # (docs/operations.md).
    lease_ttl: Annotated[int, Field(ge=2, le=60)] = 3
    # Records are gathered this long before a write, so that a burst goes in
    # fewer transactions. A message that announces a record waits until it is
    # written (persist before send): this delay adds to every handshake. With 0,
    # records still go together when they queue while a write is in flight.
    write_delay: Annotated[float, Field(ge=0, le=1)] = 0.0
    # etcd over TLS (https endpoints): the CA etcd's certificate is checked against, and
    # the client certificate etcd's --client-cert-auth asks for (docs/operations.md).
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    # etcd's own authentication (--auth): a user whose role may read and write the prefix.
    username: Annotated[str, Field(min_length=1)] | None = None
    password_file: Path | None = None

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
    # False turns migration awareness off, for comparison only (the `naive` mode of
    # the downtime benchmark): no notify, and a port delete is the VM leaving.
    aware: bool = True
    sync_timeout: Seconds = 2.0
    activation_timeout: Seconds = 300.0
    completion_timeout: Seconds = 30.0
    # The leader keeps this many finished migrations for GET /v1/migrations/{id},
    # each for at most history_age seconds; older ones answer 404.
    history_size: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    history_age: Annotated[float, Field(gt=0, le=30 * 86400)] = 3600.0


class LinkSection(_Section):
    """An inter-hypervisor link declared by hand: port `a_port` of `a` leads to `b`."""

    a: str
    a_port: Annotated[int, Field(ge=1, le=0xFFFFFF00)]
    b: str
    b_port: Annotated[int, Field(ge=1, le=0xFFFFFF00)]


class TopologySection(_Section):
    lldp: bool = True
    lldp_interval: Seconds = 5.0
    links: list[LinkSection] = Field(default_factory=list)


class TLSSection(_Section):
    """One CA for every channel: with it, REST is https only, OpenFlow and OVSDB use ssl:.

    `cert` and `key` are this controller's: its server certificate for REST and
    OpenFlow, its client certificate towards OVSDB servers and peers. The files
    are loaded when the daemon starts (and by `vportd --check`).
    """

    ca: Path  # the CA certificate(s) every peer, switch and OVSDB server is checked against
    cert: Path
    key: Path


class LoggingSection(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"


class Config(_Section):
    controller: ControllerSection
    openflow: OpenFlowSection = OpenFlowSection()
    ovsdb: OVSDBSection = OVSDBSection()
    api: APISection = APISection()
    store: StoreSection = StoreSection()
    migration: MigrationSection = MigrationSection()
    topology: TopologySection = TopologySection()
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
        if self.store.kind == "etcd" and self.api.peer_token_file is None:
            raise ValueError(
                'api.peer_token_file: required with store.kind = "etcd" '
                "(controllers authenticate each other with it)"
            )
        return self

    @model_validator(mode="after")
    def _tls_everywhere(self) -> Config:
        """[tls] makes the API https only; ssl: OVSDB remotes need its certificates."""
        if self.tls is not None and not self.api.url.startswith("https://"):
            raise ValueError(
                f"api.advertise: {self.api.url!r} is not https://: with [tls] the API "
                "serves https only"
            )
        plain = [r for r in self.ovsdb.remotes if r.startswith("ssl:")] if not self.tls else []
        if plain:
            raise ValueError(
                f"ovsdb.remotes: {plain[0]!r} needs a [tls] section "
                "(the CA to check the server, the certificate to show it)"
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
