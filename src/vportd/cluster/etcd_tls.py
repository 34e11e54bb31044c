"""etcd over TLS: the files of `[store]`'s `ca`, `cert` and `key`, for the gRPC channel
(`etcd_rpc.channel`) and the lease renewer's calls to etcd's JSON gateway.

With TLS, etcd's certificate is checked against `ca` (and its name or IP
against the endpoint's host), and with `cert`/`key` the controller shows a
client certificate (etcd's `--client-cert-auth`). `check` makes one TLS
handshake with each endpoint at start, so that a CA that does not fit is a
clear error, not a session that retries forever; an endpoint that does not
answer yet is left to the retries (etcd may start after the controller).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vportd.cluster.store import StoreError

HANDSHAKE_TIMEOUT = 3.0


@dataclass(frozen=True)
class EtcdTLS:
    """The files of `[store]`'s TLS keys, read once (`load`)."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None

    def context(self) -> ssl.SSLContext:
        """The client context of the lease renewer (and of `check`)."""
        context = ssl.create_default_context(cafile=str(self.ca))
        if self.cert is not None and self.key is not None:
            context.load_cert_chain(str(self.cert), str(self.key))
        return context

    def pem(self) -> tuple[bytes, bytes | None, bytes | None]:
        """The CA, key and certificate as PEM bytes, as gRPC takes them."""
        key = None if self.key is None else self.key.read_bytes()
        cert = None if self.cert is None else self.cert.read_bytes()
        return self.ca.read_bytes(), key, cert


def load(ca: Path, cert: Path | None, key: Path | None) -> EtcdTLS:
    """The TLS settings, their files checked now; ValueError naming what is wrong."""
    tls = EtcdTLS(ca, cert, key)
    try:
        tls.context()
        tls.pem()
    except (OSError, ssl.SSLError) as err:
        raise ValueError(f"cannot load the etcd TLS files: {err}") from None
    return tls


def check(endpoints: Sequence[str], tls: EtcdTLS) -> None:
    """One TLS handshake with each endpoint (blocking): StoreError if one refuses us or we it."""
    context = tls.context()
    for endpoint in endpoints:
        host, _, port = endpoint.rpartition(":")
        host = host.strip("[]")
        try:
            with (
                socket.create_connection((host, int(port)), HANDSHAKE_TIMEOUT) as raw,
                context.wrap_socket(raw, server_hostname=host),
            ):
                pass
        except ssl.SSLCertVerificationError as err:
            raise StoreError(
                f"etcd at {endpoint}: its certificate does not check out against store.ca "
                f"({err.verify_message})"
            ) from None
        except ssl.SSLError as err:
            raise StoreError(f"etcd at {endpoint}: TLS handshake failed ({err.reason})") from None
        except OSError:
            continue  # not up yet: the store's calls retry until it is
