"""What `vportd --check` refuses is what the daemon refuses to start with, in one line
naming the key (exit 2, no traceback), and a good configuration passes both.

Each case once passed `--check` and then failed at run time: an `ssl:` remote
without `[tls]` retried forever, `tcp:HOST` and `127.0.0.300` made tracebacks,
an `http://` etcd endpoint never reached etcd (the gRPC client dials
HOST:PORT: the scheme was taken for a host name), `openflow.listen` on
`api.listen`'s port failed to bind, a cluster on 0.0.0.0 told its peers
`http://0.0.0.0:...`, an https URL was advertised for a plain API, and token
files others could read, or one token for both realms, were taken.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.pki import Certs
from vportd.node import daemon
from vportd.node.config import parse_config
from vportd.node.runtime import Runtime

VMM_TOKEN = "vmm-token-0123456789abcdef"
PEER_TOKEN = "peer-token-0123456789abcdef"


def toml(**sections: Mapping[str, object]) -> str:
    """A configuration of controller c0 with these sections (each a dict of keys)."""
    text = '[controller]\nid = "c0"\n'
    for name, keys in sections.items():
        text += f"[{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())
    return text


def token_file(path: Path, token: str, mode: int = 0o600) -> str:
    path.write_text(token + "\n")
    path.chmod(mode)
    return str(path)


def cluster(tmp_path: Path, **api: object) -> dict[str, object]:
    """An [api] of a cluster member, with private token files."""
    peer = token_file(tmp_path / "peer.token", PEER_TOKEN)
    return {"peer_token_file": peer, **api}


ETCD = {"kind": "etcd"}


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The controllers the daemon went on to run (instead of running them)."""
    runs: list[str] = []

    async def serve(config: object, *_: object, **__: object) -> int:
        runs.append(str(config))
        return 0

    monkeypatch.setattr(daemon, "_serve", serve)
    return runs


def run(tmp_path: Path, text: str, *flags: str) -> int:
    config = tmp_path / "vportd.toml"
    config.write_text(text)
    return daemon.main(["--config", str(config), *flags])


def bad_configs(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """Each gap: a configuration, and the one line the check and the start give for it."""
    loose = [tmp_path / f"loose{i}" for i in range(3)]
    same, copy = tmp_path / "same", tmp_path / "copy"
    return {
        "ssl remote, no [tls]": (
            toml(ovsdb={"remotes": ["ssl:10.0.0.1:6640"]}),
            "ovsdb.remotes: 'ssl:10.0.0.1:6640' needs a [tls] section",
        ),
        "tcp remote, no port": (
            toml(ovsdb={"remotes": ["tcp:hv1"]}),
            "ovsdb.remotes: 'tcp:hv1' is not an OVSDB remote (unix:PATH, tcp:HOST:PORT or "
            "ssl:HOST:PORT)",
        ),
        "tcp remote, no such IPv4 address": (
            toml(ovsdb={"remotes": ["tcp:127.0.0.300:6640"]}),
            "ovsdb.remotes: 'tcp:127.0.0.300:6640' is not an OVSDB remote: '127.0.0.300' is "
            "not an IPv4 address",
        ),
        "tcp remote, IPv6 without brackets": (
            toml(ovsdb={"remotes": ["tcp:fd00::1:6640"]}),
            "ovsdb.remotes: 'tcp:fd00::1:6640' is not an OVSDB remote: an IPv6 address goes "
            "in brackets",
        ),
        "listen, no such IPv4 address": (
            toml(openflow={"listen": "10.0.0.256:6653"}),
            "openflow.listen: '10.0.0.256' is not an IPv4 address",
        ),
        "listen, no such IPv6 address": (
            toml(api={"listen": "[::g]:8080"}),
            "api.listen: '::g' is not an IPv6 address",
        ),
        "advertise, no such IPv4 address": (
            toml(api={"advertise": "http://127.0.0.300:8080"}),
            "api.advertise: '127.0.0.300' is not an IPv4 address",
        ),
        "etcd endpoint as a URL": (
            toml(api=cluster(tmp_path), store={**ETCD, "endpoints": ["http://127.0.0.1:2379"]}),
            "store.endpoints.0: 'http://127.0.0.1:2379' is a URL: an etcd endpoint is "
            "HOST:PORT, with no scheme",
        ),
        "several etcd endpoints by name": (
            toml(api=cluster(tmp_path), store={**ETCD, "endpoints": ["10.0.0.1:2379", "e2:2379"]}),
            "store.endpoints: 'e2:2379': several endpoints must be IP addresses",
        ),
        "openflow.listen on api.listen": (
            toml(openflow={"listen": "127.0.0.1:7000"}, api={"listen": "127.0.0.1:7000"}),
            "openflow.listen: '127.0.0.1:7000' takes the port of api.listen ('127.0.0.1:7000')",
        ),
        "openflow.listen on every address, api.listen's port": (
            toml(openflow={"listen": "0.0.0.0:7000"}, api={"listen": "127.0.0.1:7000"}),
            "openflow.listen: '0.0.0.0:7000' takes the port of api.listen ('127.0.0.1:7000')",
        ),
        "a cluster on 0.0.0.0, no advertise": (
            toml(api=cluster(tmp_path, listen="0.0.0.0:8080"), store=ETCD),
            "api.advertise: peers would be told 'http://0.0.0.0:8080' (api.listen "
            "'0.0.0.0:8080' is every address)",
        ),
        "a cluster on ::, no advertise": (
            toml(api=cluster(tmp_path, listen="[::]:8080"), store=ETCD),
            "api.advertise: peers would be told 'http://[::]:8080'",
        ),
        "https advertise, no [tls]": (
            toml(api={"advertise": "https://c0.example.net:8443"}),
            "api.advertise: 'https://c0.example.net:8443' is https:// but there is no [tls] "
            "section: the API serves http only",
        ),
        "token file every user reads": (
            toml(api={"token_file": token_file(loose[0], VMM_TOKEN, 0o644)}),
            f"api.token_file: {loose[0]} is readable by every user (mode 0644): "
            f"chmod 600 {loose[0]}",
        ),
        "token file its group writes": (
            toml(api={"peer_token_file": token_file(loose[1], PEER_TOKEN, 0o660)}),
            f"api.peer_token_file: {loose[1]} is writable by its group (mode 0660)",
        ),
        "token file every user writes": (
            toml(api={"token_file": token_file(loose[2], VMM_TOKEN, 0o602)}),
            f"api.token_file: {loose[2]} is writable by every user (mode 0602)",
        ),
        "one token file for both": (
            toml(api={"token_file": token_file(same, VMM_TOKEN), "peer_token_file": str(same)}),
            "api.peer_token_file: holds the same token as api.token_file (the same file)",
        ),
        "one token in two files": (
            toml(
                api={
                    "token_file": token_file(same, VMM_TOKEN),
                    "peer_token_file": token_file(copy, VMM_TOKEN),
                }
            ),
            "api.peer_token_file: holds the same token as api.token_file (a copy)",
        ),
    }


CASES = [
    "ssl remote, no [tls]", "tcp remote, no port", "tcp remote, no such IPv4 address",
    "tcp remote, IPv6 without brackets", "listen, no such IPv4 address",
    "listen, no such IPv6 address", "advertise, no such IPv4 address",
    "etcd endpoint as a URL", "several etcd endpoints by name", "openflow.listen on api.listen",
    "openflow.listen on every address, api.listen's port", "a cluster on 0.0.0.0, no advertise",
    "a cluster on ::, no advertise", "https advertise, no [tls]", "token file every user reads",
    "token file its group writes", "token file every user writes", "one token file for both",
    "one token in two files",
]  # fmt: skip


@pytest.mark.parametrize("flags", [["--check"], []], ids=["check", "start"])
@pytest.mark.parametrize("case", CASES)
def test_a_config_that_would_fail_at_run_time_is_refused_in_one_line_naming_the_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    started: list[str],
    case: str,
    flags: list[str],
) -> None:
    text, said = bad_configs(tmp_path)[case]
    assert run(tmp_path, text, *flags) == 2
    out, err = capsys.readouterr()
    assert err.startswith("vportd: configuration error: ") and said in err, err
    assert err.count("\n") == 1, err  # one line, no traceback
    assert (out, started) == ("", [])


def test_an_http_advertise_with_tls_is_refused_at_check_and_start(
    tmp_path: Path, certs: Certs, capsys: pytest.CaptureFixture[str], started: list[str]
) -> None:
    text = toml(api={"advertise": "http://c0:8080"}, tls=certs.table())
    for flags in (["--check"], []):
        assert run(tmp_path, text, *flags) == 2
        err = capsys.readouterr().err
        assert "api.advertise: 'http://c0:8080' is not https://" in err and err.count("\n") == 1
    assert started == []


def good_config(tmp_path: Path) -> str:
    """A cluster member on every address, told apart from its peers by what it advertises."""
    vmm = token_file(tmp_path / "api.token", VMM_TOKEN, 0o640)  # its group may read it
    return toml(
        openflow={"listen": "[::]:6653"},
        ovsdb={"remotes": ["unix:/run/db.sock", "tcp:[fd00::7]:6640", "tcp:hv1.example:6640"]},
        api=cluster(tmp_path, listen="0.0.0.0:8080", advertise="http://c0:8080", token_file=vmm),
        store={**ETCD, "endpoints": ["10.0.0.11:2379", "10.0.0.12:2379"]},
    )


def test_a_good_config_passes_the_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, good_config(tmp_path), "--check") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["api"]["advertise"] == "http://c0:8080"
    assert shown["store"]["endpoints"] == ["10.0.0.11:2379", "10.0.0.12:2379"]


def test_a_good_config_starts(tmp_path: Path, started: list[str]) -> None:
    assert run(tmp_path, good_config(tmp_path)) == 0
    assert len(started) == 1


@pytest.mark.parametrize(
    "endpoints", [["etcd.example:2379"], ["[fd00::1]:2379"], ["10.0.0.1:2379", "10.0.0.2:2379"]]
)
def test_one_named_endpoint_or_several_addresses_are_accepted(endpoints: list[str]) -> None:
    store = {**ETCD, "endpoints": endpoints}
    config = parse_config(toml(api={"peer_token_file": "/t"}, store=store))
    assert config.store.endpoints == endpoints


@pytest.mark.parametrize(
    ("openflow", "api"),
    [
        ("127.0.0.1:6653", "127.0.0.1:8080"),  # other ports
        ("127.0.0.1:7000", "127.0.0.2:7000"),  # other addresses
        ("[::]:7000", "127.0.0.1:7000"),  # :: is bound IPv6 only
        ("127.0.0.1:0", "127.0.0.1:0"),  # each any free port
    ],
)
def test_listen_addresses_apart_are_accepted(openflow: str, api: str) -> None:
    config = parse_config(toml(openflow={"listen": openflow}, api={"listen": api}))
    assert (config.openflow.listen, config.api.listen) == (openflow, api)


def test_a_single_controller_may_listen_on_every_address_without_advertise() -> None:
    """No peer is told its URL: there is none."""
    config = parse_config(toml(api={"listen": "0.0.0.0:8080"}))
    assert config.api.url == "http://0.0.0.0:8080"


def test_the_openflow_listener_takes_an_ipv6_address_without_its_brackets() -> None:
    runtime = Runtime(parse_config(toml(openflow={"listen": "[::1]:6653"})))
    assert (runtime.openflow.host, runtime.openflow.port) == ("::1", 6653)
