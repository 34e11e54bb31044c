"""The controller's TLS: from `[tls]` (one CA, this controller's certificate and key), the
SSL contexts of every channel, made once at start and passed to the parts that need them.

- `rest`: the API's server side. Clients (the VMM, operators, peers) are not
  asked for a certificate: they carry bearer tokens, as over http.
- `openflow`: the OpenFlow listener. A switch must show a certificate the CA
  signed (OVS's `set-ssl`), or the handshake fails and it is refused: a
  datapath id in a FEATURES_REPLY is then only believed from such a switch.
- `peers`: the client side of the east-west requests and the forwarded ones.
  The peer's certificate is checked against the CA and against the host of
  its advertised URL, as any https client does (so a URL with an IP address
  needs the IP among the certificate's subjectAltNames).
- `ovsdb`: the client side of `ssl:` OVSDB remotes. The server's certificate
  is checked against the CA only, not against a host name: OVS does the same
  on its own `ssl:` connections, and the certificates `ovs-pki` makes name no
  host.

This controller's certificate is shown on every channel: as the server's on
REST and OpenFlow, as the client's towards OVSDB servers (which ask for one)
and peers. TLS 1.2 is the oldest version spoken (OVS 3.1 speaks 1.2 at most).

`load` reads the files and checks them as the daemon's configuration check:
each readable and of the right kind, the key the certificate's, and the
certificate signed by the CA (an in-memory handshake between the contexts
themselves); any failure is a `ConfigError` naming the key.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from vportd.node.config import ConfigError, TLSSection


@dataclass(frozen=True)
class Contexts:
    """The SSL contexts of one controller's channels (module docstring)."""

    rest: ssl.SSLContext
    openflow: ssl.SSLContext
    peers: ssl.SSLContext
    ovsdb: ssl.SSLContext


def load(section: TLSSection) -> Contexts:
    """The contexts `section` describes; ConfigError (naming the key) if a file is unusable."""
    for key in ("ca", "cert", "key"):
        _readable(key, getattr(section, key))
    _certificates("tls.ca", section.ca, "no CA certificate")
    _certificates("tls.cert", section.cert, "no certificate")
    contexts = Contexts(
        rest=_server(section, require_client=False),
        openflow=_server(section, require_client=True),
        peers=_client(section, check_hostname=True),
        ovsdb=_client(section, check_hostname=False),
    )
    _check_signed(section, contexts)
    return contexts


def _readable(key: str, path: Path) -> None:
    try:
        path.read_bytes()
    except OSError as err:
        raise ConfigError(f"tls.{key}: cannot read {path}: {err.strerror}") from None


def _certificates(key: str, path: Path, what: str) -> None:
    """`path` holds at least one PEM certificate."""
    try:
        ssl.create_default_context(cafile=str(path))
    except ssl.SSLError as err:
        raise ConfigError(f"{key}: {what} in {path} ({_why(err)})") from None


def _server(section: TLSSection, *, require_client: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _own(context, section)
    if require_client:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(section.ca))
    return context


def _client(section: TLSSection, *, check_hostname: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = check_hostname
    context.load_verify_locations(cafile=str(section.ca))
    _own(context, section)
    return context


def _own(context: ssl.SSLContext, section: TLSSection) -> None:
    """This controller's certificate and key into `context`."""
    try:
        context.load_cert_chain(str(section.cert), str(section.key))
    except ssl.SSLError as err:
        if err.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(
                f"tls.key: {section.key} is not the key of the certificate in {section.cert}"
            ) from None
        raise ConfigError(f"tls.key: no private key in {section.key} ({_why(err)})") from None


def _check_signed(section: TLSSection, contexts: Contexts) -> None:
    """Shake hands, in memory, as a peer would with this controller: the CA must accept the
    certificate (signed by it, in its validity period, usable for TLS)."""
    try:
        _handshake(contexts.ovsdb, contexts.rest)
    except ssl.SSLCertVerificationError as err:
        raise ConfigError(
            f"tls.cert: the CA in {section.ca} does not accept the certificate in "
            f"{section.cert} ({err.verify_message})"
        ) from None
    except ssl.SSLError as err:
        why = _why(err)
        raise ConfigError(f"tls.cert: a handshake with {section.cert} fails ({why})") from None


HANDSHAKE_ROUNDS = 8  # TLS 1.3 needs 2 round trips, 1.2 needs 3: more means something is wrong


def _handshake(client_side: ssl.SSLContext, server_side: ssl.SSLContext) -> None:
    """A handshake between two in-memory ends, each one's output the other's input."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_side.wrap_bio(to_client, to_server)
    server = server_side.wrap_bio(to_server, to_client, server_side=True)
    for _ in range(HANDSHAKE_ROUNDS):
        done = [_step(client), _step(server)]
        if all(done):
            return
    raise ConfigError("tls: the certificate's own handshake did not finish")


def _step(end: ssl.SSLObject) -> bool:
    """One go at `end`'s handshake: True once it is done."""
    try:
        end.do_handshake()
    except ssl.SSLWantReadError:
        return False
    return True


def _why(err: ssl.SSLError) -> str:
    return err.reason or str(err)
