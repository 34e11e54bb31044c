"""`[tls]`: the configuration's shape, and `vportd --check` loading the files.

The shape (parse_config): with `[tls]` the API's URL is https (by default
https://{listen}; an http:// `api.advertise` is refused) and `ssl:` OVSDB
remotes are accepted; without it, everything is as before. The files
(`vportd --check`, as the daemon starts): each readable and of its kind, the
key the certificate's, the certificate signed by the CA; else exit 2 with the
key named. The contexts made from them: a peer's client and the API's server
shake hands; the peers' client refuses a certificate of another CA or for
another address; the OVSDB client checks the CA only. (The OpenFlow
listener's: tests/southbound/test_openflow_tls.py.)
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from pathlib import Path

import pytest

from tests.pki import Certs
from vportd.node.config import ConfigError, parse_config
from vportd.node.daemon import main


def toml(tls: dict[str, str] | None, *, api: str = "", remotes: tuple[str, ...] = ()) -> str:
    text = '[controller]\nid = "c0"\n'
    if remotes:
        text += f"[ovsdb]\nremotes = {json.dumps(list(remotes))}\n"
    if api:
        text += f"[api]\n{api}\n"
    if tls is not None:
        text += "[tls]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in tls.items())
    return text


def check(tmp_path: Path, text: str) -> int:
    config = tmp_path / "vportd.toml"
    config.write_text(text)
    return main(["--config", str(config), "--check"])


# -- the shape ---------------------------------------------------------------------------
def test_with_tls_the_api_is_https_on_its_listen_address(certs: Certs) -> None:
    config = parse_config(toml(certs.table(), api='listen = "127.0.0.1:9443"'))
    assert config.api.url == "https://127.0.0.1:9443"
    assert config.tls is not None and config.tls.ca == certs.ca.cert


def test_with_tls_the_default_listen_address_is_https_too(certs: Certs) -> None:
    assert parse_config(toml(certs.table())).api.url == "https://127.0.0.1:8080"


def test_with_tls_an_https_advertise_is_kept(certs: Certs) -> None:
    api = 'advertise = "https://c0.example.net:8443"'
    assert parse_config(toml(certs.table(), api=api)).api.url == "https://c0.example.net:8443"


def test_with_tls_an_http_advertise_is_refused_naming_the_key(certs: Certs) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(toml(certs.table(), api='advertise = "http://c0:8080"'), "c0.toml")
    assert str(err.value) == (
        "c0.toml: api.advertise: 'http://c0:8080' is not https://: with [tls] the API serves "
        "https only"
    )


def test_without_tls_the_api_stays_http() -> None:
    assert parse_config(toml(None)).api.url == "http://127.0.0.1:8080"


@pytest.mark.parametrize("remote", ["ssl:127.0.0.1:6640", "tcp:10.0.0.1:6640", "unix:/db.sock"])
def test_with_tls_ssl_tcp_and_unix_remotes_are_accepted(certs: Certs, remote: str) -> None:
    assert parse_config(toml(certs.table(), remotes=(remote,))).ovsdb.remotes == [remote]


@pytest.mark.parametrize("missing", ["ca", "cert", "key"])
def test_every_tls_key_is_required(certs: Certs, missing: str) -> None:
    table = {k: v for k, v in certs.table().items() if k != missing}
    with pytest.raises(ConfigError) as err:
        parse_config(toml(table))
    assert f"tls.{missing}: Field required" in str(err.value)


def test_an_unknown_tls_key_is_refused(certs: Certs) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(toml({**certs.table(), "verify": "no"}))
    assert "tls.verify: unknown key" in str(err.value)


# -- the files, at --check ------------------------------------------------------------------
def test_vportd_check_passes_good_files_and_prints_them(
    tmp_path: Path, certs: Certs, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check(tmp_path, toml(certs.table(), remotes=("ssl:127.0.0.1:6640",))) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["tls"] == certs.table()
    assert shown["api"]["advertise"] == "https://127.0.0.1:8080"


def bad_files(certs: Certs, tmp_path: Path) -> dict[str, tuple[dict[str, str], str]]:
    """A [tls] table with one thing wrong, and what --check says about it."""
    good = certs.table()
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not PEM\n")
    ca, stranger = str(certs.ca.cert), certs.stranger
    return {
        "no CA file": ({**good, "ca": str(tmp_path / "nope.pem")}, "tls.ca: cannot read"),
        "CA not a certificate": ({**good, "ca": str(garbage)}, "tls.ca: no CA certificate in"),
        "cert not a certificate": (
            {**good, "cert": str(certs.controller.key)}, "tls.cert: no certificate in",
        ),
        "key not a key": ({**good, "key": str(garbage)}, "tls.key: no private key in"),
        "another certificate's key": (
            {**good, "key": str(certs.switch.key)}, "is not the key of the certificate in",
        ),
        "a certificate the CA did not sign": (
            {"ca": ca, "cert": str(stranger.cert), "key": str(stranger.key)},
            f"tls.cert: the CA in {ca} does not accept the certificate in {stranger.cert}",
        ),
    }  # fmt: skip


@pytest.mark.parametrize(
    "case",
    [
        "no CA file", "CA not a certificate", "cert not a certificate", "key not a key",
        "another certificate's key", "a certificate the CA did not sign",
    ],
)  # fmt: skip
def test_vportd_check_exits_2_naming_what_is_wrong_with_the_files(
    tmp_path: Path, certs: Certs, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    table, said = bad_files(certs, tmp_path)[case]
    assert check(tmp_path, toml(table)) == 2
    err = capsys.readouterr().err
    assert err.startswith("vportd: configuration error: tls.") and said in err, err


# -- the contexts ----------------------------------------------------------------------------
def handshake(server: ssl.SSLContext, client: ssl.SSLContext, hostname: str | None) -> str:
    """A TLS handshake over a loopback socket pair; "ok" or the client's error."""
    left, right = socket.socketpair()
    failed: list[BaseException] = []

    def serve() -> None:
        try:
            with server.wrap_socket(right, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError) as err:
            failed.append(err)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client.wrap_socket(left, server_hostname=hostname) as tls:
            tls.sendall(b"x")
        return "ok"
    except ssl.SSLError as err:
        return str(err)
    finally:
        left.close()
        thread.join()
        right.close()


def test_a_peer_reaches_the_api_checking_the_ca_and_the_address(certs: Certs) -> None:
    mine = certs.contexts()
    assert handshake(mine.rest, mine.peers, "127.0.0.1") == "ok"


def test_a_peer_refuses_an_api_whose_certificate_names_another_host(certs: Certs) -> None:
    theirs = certs.contexts(certs.elsewhere)
    said = handshake(theirs.rest, certs.contexts().peers, "127.0.0.1")
    assert "IP address mismatch" in said


def test_a_peer_refuses_an_api_with_another_cas_certificate(certs: Certs) -> None:
    impostor = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    impostor.load_cert_chain(str(certs.stranger.cert), str(certs.stranger.key))
    said = handshake(impostor, certs.contexts().peers, "127.0.0.1")
    assert "certificate verify failed" in said


def test_the_ovsdb_client_checks_the_ca_but_no_name(certs: Certs) -> None:
    """An OVSDB server's certificate names no host (ovs-pki's do not)."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(certs.switch.cert), str(certs.switch.key))
    assert handshake(server, certs.contexts().ovsdb, "10.9.8.7") == "ok"
