"""Throwaway certificates for a lab or a test: a CA and the certificates it signs.

Made with the `openssl` command (Debian's, installed by `make env`): EC P-256
keys (mode 0600), PEM files. `Authority.create(DIR)` makes a self-signed CA in
DIR (`ca.pem`, `ca.key`); `issue(name, ips=...)` makes `name.pem` and
`name.key` next to it, signed by the CA, with the given addresses and names as
subjectAltNames and both the server and the client usage: in the lab every
party is a server on one channel and a client on another (a controller serves
REST and OpenFlow and connects to OVSDB and its peers; OVS connects to the
controllers and serves OVSDB).
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

DAYS = 3650  # a lab may stay up long; its CA is thrown away with it
CURVE = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
TIMEOUT = 30.0


class PKIError(RuntimeError):
    """openssl failed (its message included) or is not installed."""


@dataclass(frozen=True)
class Pair:
    """A certificate and its private key."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Authority:
    """A CA in `dir`: `ca.pem` (what everyone trusts) and `ca.key` (what signs)."""

    dir: Path

    @property
    def cert(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def key(self) -> Path:
        return self.dir / "ca.key"

    @classmethod
    def create(cls, directory: Path, name: str = "vportd lab CA") -> Authority:
        """A new CA in `directory` (created if needed)."""
        ca = cls(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _openssl(
            "req", "-x509", *CURVE, "-days", str(DAYS), "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout", str(ca.key), "-out", str(ca.cert),
        )  # fmt: skip
        ca.key.chmod(0o600)
        return ca

    def issue(
        self, name: str, *, ips: tuple[str, ...] = ("127.0.0.1",), dns: tuple[str, ...] = ()
    ) -> Pair:
        """`name.pem` and `name.key` in the CA's directory, signed by the CA."""
        pair = Pair(self.dir / f"{name}.pem", self.dir / f"{name}.key")
        extensions = self.dir / f".{name}.ext"
        extensions.write_text(_extensions(ips, dns))
        try:
            request = _openssl(
                "req", "-new", *CURVE, "-subj", f"/CN={name}", "-keyout", str(pair.key)
            )
            _openssl(
                "x509", "-req", "-CA", str(self.cert), "-CAkey", str(self.key),
                "-set_serial", str(secrets.randbits(63)), "-days", str(DAYS),
                "-extfile", str(extensions), "-out", str(pair.cert),
                stdin=request,
            )  # fmt: skip
        finally:
            extensions.unlink(missing_ok=True)
        pair.key.chmod(0o600)
        return pair


def _extensions(ips: tuple[str, ...], dns: tuple[str, ...]) -> str:
    names = [f"IP:{ip}" for ip in ips] + [f"DNS:{name}" for name in dns]
    lines = [
        "basicConstraints=CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=serverAuth,clientAuth",
    ]
    if names:
        lines.append(f"subjectAltName={','.join(names)}")
    return "\n".join(lines) + "\n"


def _openssl(*args: str, stdin: bytes | None = None) -> bytes:
    """Run `openssl ARGS`; its stdout. (openssl creates the keys it writes with mode 0600.)"""
    try:
        done = subprocess.run(
            ["openssl", *args], input=stdin, capture_output=True, timeout=TIMEOUT, check=False
        )
    except FileNotFoundError:
        raise PKIError("openssl is not installed (make env installs it)") from None
    if done.returncode != 0:
        raise PKIError(f"openssl {args[0]}: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout
