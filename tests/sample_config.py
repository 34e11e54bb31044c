"""The sample configuration (`contrib/vportd.example.toml`) as a host would have it.

It names its token and TLS files under /etc/vportd, which `vportd --check`
reads; `deployed` makes those files in a directory of the test's and returns
a copy of the sample that names them there instead.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from tests.pki import Certs
from tests.source_tree import REPO
from vportd.node.config import load_config

SAMPLE = REPO / "contrib" / "vportd.example.toml"
ETC = Path("/etc/vportd")


def sample_files(certs: Certs) -> dict[Path, bytes]:
    """Every file the sample names, with what a host would hold in it."""
    config = load_config(SAMPLE)
    assert config.tls is not None and config.api.token_file and config.api.peer_token_file
    return {
        config.api.token_file: secrets.token_hex(16).encode(),
        config.api.peer_token_file: secrets.token_hex(16).encode(),
        config.tls.ca: certs.ca.cert.read_bytes(),
        config.tls.cert: certs.controller.cert.read_bytes(),
        config.tls.key: certs.controller.key.read_bytes(),
    }


def deployed(directory: Path, certs: Certs) -> Path:
    """The sample with its files made in `directory`, which stands for /etc/vportd."""
    for path, content in sample_files(certs).items():
        assert path.parent == ETC, f"{path} is not in {ETC}"
        (directory / path.name).write_bytes(content)
        (directory / path.name).chmod(0o600)  # (vportd refuses a token others can read)
    config = directory / "c1.toml"
    config.write_text(SAMPLE.read_text().replace(f'"{ETC}/', f'"{directory}/'))
    return config
