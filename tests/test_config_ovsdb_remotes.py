"""`ovsdb.remotes`: what the OVSDB monitor can connect to is accepted, anything else refused
at validation, naming the key (so `vportd --check` fails, not the running monitor). An
`ssl:` remote needs `[tls]` (tests/test_config_tls.py has it with one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vportd.node.config import ConfigError, parse_config
from vportd.node.daemon import main

SSL_REFUSED = (
    "ovsdb.remotes: 'ssl:10.0.0.1:6640' needs a [tls] section "
    "(the CA to check the server, the certificate to show it)"
)


def toml(*remotes: str) -> str:
    return f'[controller]\nid = "c0"\n[ovsdb]\nremotes = {json.dumps(list(remotes))}\n'


@pytest.mark.parametrize(
    "remote", ["unix:/var/run/openvswitch/db.sock", "tcp:127.0.0.1:6640", "tcp:[::1]:6640"]
)
def test_unix_and_tcp_remotes_are_accepted(remote: str) -> None:
    assert parse_config(toml(remote)).ovsdb.remotes == [remote]


def test_an_ssl_remote_without_tls_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(toml("unix:/run/db.sock", "ssl:10.0.0.1:6640"), "vportd.toml")
    assert str(err.value) == f"vportd.toml: {SSL_REFUSED}"


@pytest.mark.parametrize(
    "remote",
    ["tcp:localhost", "tcp::6640", "tcp:host:0", "tcp:host:65536", "unix:", "db.sock", "ssl:h"],
)
def test_a_remote_the_monitor_cannot_connect_to_is_refused(remote: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(toml(remote))
    assert f"ovsdb.remotes: {remote!r} is not an OVSDB remote" in str(err.value)


def test_vportd_check_exits_2_on_an_ssl_remote_without_tls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "vportd.toml"
    config.write_text(toml("ssl:10.0.0.1:6640"))
    assert main(["--config", str(config), "--check"]) == 2
    assert SSL_REFUSED in capsys.readouterr().err


def test_vportd_check_passes_a_tcp_remote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "vportd.toml"
    config.write_text(toml("tcp:127.0.0.1:6640"))
    assert main(["--config", str(config), "--check"]) == 0
    assert "tcp:127.0.0.1:6640" in capsys.readouterr().out
