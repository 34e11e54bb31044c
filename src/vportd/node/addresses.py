"""The network addresses of the configuration, checked as the sockets will take them.

`HOST:PORT` (listen addresses, etcd endpoints), OVSDB remotes (`unix:PATH`,
`tcp:HOST:PORT`, `ssl:HOST:PORT`) and base URLs (`http://HOST:PORT`). A HOST
is a literal IPv4 address, an IPv6 one in brackets (`[::1]:6653`), or a DNS
name; what looks like an IP address must be one (`127.0.0.300` is refused,
not looked up). Each check raises ValueError saying what is wrong, for the
configuration to name the key.
"""

from __future__ import annotations

import ipaddress
import re

MAX_PORT = 65535
MAX_DNS_NAME = 253
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
OVSDB_FORMS = "unix:PATH, tcp:HOST:PORT or ssl:HOST:PORT"

_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
# scheme://HOST[:PORT][/PATH], HOST an IPv6 address in brackets or a name or IPv4 address
_URL = re.compile(
    r"(?P<scheme>https?)://(?P<host>\[[^\]/]*\]|[^:/\[\]@?#]+)(?::(?P<port>\d+))?(/[^?#]*)?"
)


def check_host(host: str) -> None:
    """A literal IPv4 address, an IPv6 one in brackets, or a DNS name; else ValueError."""
    if host.startswith("[") and host.endswith("]"):
        _literal(ipaddress.IPv6Address, host[1:-1])
    elif ":" in host:
        raise ValueError(f"an IPv6 address goes in brackets: [{host}]")
    elif host.replace(".", "").isdigit():
        _literal(ipaddress.IPv4Address, host)
    elif not _dns_name(host):
        raise ValueError(f"{host!r} is neither an IP address nor a host name")


def _literal(kind: type[IPAddress], text: str) -> None:
    try:
        kind(text)
    except ValueError as err:
        raise ValueError(f"{text!r} is not an {kind.__name__[:4]} address ({err})") from None


def _dns_name(host: str) -> bool:
    labels = host.removesuffix(".").split(".")
    return len(host) <= MAX_DNS_NAME and all(_DNS_LABEL.fullmatch(label) for label in labels)


def _parts(value: str, lowest: int) -> tuple[str, int] | None:
    """`HOST:PORT` split, its port from `lowest` up; None if it is not of that shape."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not lowest <= int(port) <= MAX_PORT:
        return None
    return host, int(port)


def split_address(value: str, lowest: int = 0) -> tuple[str, int]:
    """`HOST:PORT` checked, as sockets take it: (the host without brackets, the port)."""
    parts = _parts(value, lowest)
    if parts is None:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    check_host(parts[0])
    return unbracket(parts[0]), parts[1]


def unbracket(host: str) -> str:
    return host.removeprefix("[").removesuffix("]")


def ip_of(host: str) -> IPAddress | None:
    """`host` (no brackets) as an IP address; None for a DNS name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_endpoint(value: str) -> None:
    """An etcd endpoint: HOST:PORT, which the client dials with gRPC (a URL's scheme would be
    taken for a host name that never resolves)."""
    if "://" in value:
        raise ValueError(f"{value!r} is a URL: an etcd endpoint is HOST:PORT, with no scheme")
    split_address(value, lowest=1)


def check_ovsdb_remote(remote: str) -> None:
    """`unix:PATH`, `tcp:HOST:PORT` or `ssl:HOST:PORT`, what the monitor connects to."""
    kind, _, where = remote.partition(":")
    if kind == "unix" and where:
        return
    parts = _parts(where, lowest=1) if kind in ("tcp", "ssl") else None
    if parts is None:
        raise ValueError(f"{remote!r} is not an OVSDB remote ({OVSDB_FORMS})")
    try:
        check_host(parts[0])
    except ValueError as err:
        raise ValueError(f"{remote!r} is not an OVSDB remote: {err}") from None


def check_url(value: str) -> None:
    """A base URL: http(s)://HOST[:PORT][/PATH], with no slash at the end."""
    match = _URL.fullmatch(value)
    port = match["port"] if match else None
    if match is None or value.endswith("/") or (port and not 0 < int(port) <= MAX_PORT):
        raise ValueError(f"expected a base URL like http://HOST:PORT, got {value!r}")
    check_host(match["host"])


def url_host(url: str) -> str:
    """The host of a URL `check_url` passes, without brackets ("" for another)."""
    match = _URL.fullmatch(url)
    return unbracket(match["host"]) if match else ""


def every_address(host: str) -> bool:
    """Whether `host` (no brackets) is 0.0.0.0 or ::, which no peer can be sent to."""
    ip = ip_of(host)
    return ip is not None and ip.is_unspecified


def overlap(a: str, b: str) -> bool:
    """Whether listening on HOST:PORT `a` and on `b` takes the same port twice (port 0 is
    any free one: never). A wildcard (0.0.0.0, ::) covers its own family (asyncio and
    socket.create_server bind IPv6 only on ::) and any DNS name."""
    (host_a, port_a), (host_b, port_b) = split_address(a), split_address(b)
    if port_a != port_b or port_a == 0:
        return False
    ip_a, ip_b = ip_of(host_a), ip_of(host_b)
    same = host_a.lower() == host_b.lower() if ip_a is None or ip_b is None else ip_a == ip_b
    return same or _covers(ip_a, ip_b) or _covers(ip_b, ip_a)


def _covers(wild: IPAddress | None, other: IPAddress | None) -> bool:
    if wild is None or not wild.is_unspecified:
        return False
    return other is None or other.version == wild.version
