"""Certificates for the TLS tests: the cluster's CA and what it signs, and a stranger's.

`Certs` is made once per session (the `certs` fixture in `tests/conftest.py`)
in a temporary directory, with the lab's own maker (`vportd_lab.bed.pki`):
the cluster's CA; a certificate for the controllers (IP 127.0.0.1, what a
controller on loopback is reached by), one for switches and OVSDB servers
(no name, as `ovs-pki` makes them) and one naming another host; another CA
and a certificate it signed for 127.0.0.1 (what an impostor would show).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from vportd.node.config import TLSSection
from vportd.node.tls import Contexts, load
from vportd_lab.bed.pki import Authority, Pair


@dataclass(frozen=True)
class Certs:
    ca: Authority
    controller: Pair  # IP 127.0.0.1
    switch: Pair  # no subjectAltName
    elsewhere: Pair  # DNS elsewhere.example only
    stranger_ca: Authority
    stranger: Pair  # IP 127.0.0.1, signed by `stranger_ca`

    @classmethod
    def make(cls, directory: Path) -> Certs:
        ca = Authority.create(directory / "cluster", "cluster CA")
        other = Authority.create(directory / "stranger", "stranger CA")
        return cls(
            ca=ca,
            controller=ca.issue("controller"),
            switch=ca.issue("switch", ips=()),
            elsewhere=ca.issue("elsewhere", ips=(), dns=("elsewhere.example",)),
            stranger_ca=other,
            stranger=other.issue("stranger"),
        )

    def section(self, pair: Pair | None = None) -> TLSSection:
        """`[tls]` with the cluster's CA and `pair` (the controller's by default)."""
        pair = pair or self.controller
        return TLSSection(ca=self.ca.cert, cert=pair.cert, key=pair.key)

    def contexts(self, pair: Pair | None = None) -> Contexts:
        """A controller's contexts, as the daemon makes them from `section(pair)`."""
        return load(self.section(pair))

    def table(self, pair: Pair | None = None) -> dict[str, str]:
        """`[tls]` as the configuration's TOML table."""
        return {k: str(v) for k, v in self.section(pair).model_dump().items()}

    def switch_context(self, pair: Pair | None = None, *, ca: Path | None = None) -> ssl.SSLContext:
        """What OVS's `set-ssl` gives a switch: a certificate to show (`pair`, the switch's by
        default) and the CA the controller is checked against (`ca`, the cluster's by
        default). `anonymous_context` shows none."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False  # as OVS: the CA only
        context.load_verify_locations(cafile=str(ca or self.ca.cert))
        pair = pair or self.switch
        context.load_cert_chain(str(pair.cert), str(pair.key))
        return context

    def anonymous_context(self) -> ssl.SSLContext:
        """A client that checks the server against the cluster's CA but shows no certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.load_verify_locations(cafile=str(self.ca.cert))
        return context
