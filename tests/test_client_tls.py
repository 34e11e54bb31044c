"""`vportctl` against an https API: the CA it checks the certificate with, and where that
comes from (`--ca` > `$VPORTD_CA` > the lab's CA > the system's CAs).

The stub of `test_client.py`, served over TLS with a certificate the cluster's
CA signed for 127.0.0.1 (`tests.pki`). A certificate another CA signed, or no
CA to check with, is a refusal (exit 3, the CA's origin named); a CA file that
cannot be used is a usage error (exit 2).
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.pki import Certs
from tests.test_client import TOKEN, Capsys, StubCluster, _handler, _make_lab, _port, vportctl
from vportd.ctl import client as api
from vportd.ctl import target
from vportd_lab.bed.plan import Tls
from vportd_lab.bed.state import Options, State


@pytest.fixture(scope="module")
def https_server(certs: Certs) -> Iterator[StubCluster]:
    stub = StubCluster()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    httpd.socket = certs.contexts().rest.wrap_socket(httpd.socket, server_side=True)
    httpd.daemon_threads = True
    stub.url = f"https://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield stub
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def stub(https_server: StubCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StubCluster:
    """The https stub, reset, with $VPORTD_API and $VPORTD_TOKEN_FILE pointing at it, no
    $VPORTD_CA and no lab."""
    https_server.reset()
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    monkeypatch.setenv("VPORTD_API", https_server.url)
    monkeypatch.setenv("VPORTD_TOKEN_FILE", str(token))
    monkeypatch.setenv("VPORTD_LAB_DIR", str(tmp_path / "no-lab"))
    monkeypatch.delenv("VPORTD_CA", raising=False)
    return https_server


def test_the_ca_flag_checks_the_api(stub: StubCluster, certs: Certs, capsys: Capsys) -> None:
    run = vportctl(capsys, "--ca", str(certs.ca.cert), "vports")
    assert run.rc == 0, run.err
    assert [r.path for r in stub.requests] == ["/v1/vports"]


def test_the_ca_from_the_environment(
    stub: StubCluster, certs: Certs, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VPORTD_CA", str(certs.ca.cert))
    run = vportctl(capsys, "vports", "--json")
    assert run.rc == 0, run.err
    assert len(run.json()) == 2


def test_the_labs_ca_with_its_api_and_token(
    stub: StubCluster,
    certs: Certs,
    tmp_path: Path,
    capsys: Capsys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lab = tls_lab(tmp_path / "lab", _port(stub.url), certs)
    monkeypatch.delenv("VPORTD_API")
    monkeypatch.delenv("VPORTD_TOKEN_FILE")
    run = vportctl(capsys, "--lab", str(lab), "vports")
    assert run.rc == 0, run.err
    assert stub.requests[0].auth == f"Bearer {TOKEN}"


def tls_lab(lab_dir: Path, api_port: int, certs: Certs) -> Path:
    """A lab up with --tls, as `lab up` leaves its state, token and CA."""
    _make_lab(lab_dir, api_port, TOKEN)
    options = Options(hypervisors=2, vms=2, controllers=2, openflow_port=6653,
                      api_port=api_port, tls_ovsdb_port=6640)  # fmt: skip
    State(str(lab_dir), options, phase="up").save(lab_dir / "lab.json")
    ca = Tls(lab_dir / "tls", 6640).ca
    ca.parent.mkdir()
    shutil.copy(certs.ca.cert, ca)
    return lab_dir


def test_another_cas_certificate_is_refused_naming_where_the_ca_came_from(
    stub: StubCluster, certs: Certs, capsys: Capsys
) -> None:
    run = vportctl(capsys, "--ca", str(certs.stranger_ca.cert), "vports")
    assert run.rc == api.EXIT_UNAVAILABLE
    assert "CERTIFICATE_VERIFY_FAILED" in run.err
    assert run.err.rstrip().endswith("(CA from --ca; see --ca, $VPORTD_CA)"), run.err
    assert stub.requests == []


def test_without_a_ca_the_systems_cas_refuse_the_clusters(
    stub: StubCluster, capsys: Capsys
) -> None:
    run = vportctl(capsys, "vports")
    assert run.rc == api.EXIT_UNAVAILABLE
    assert "(CA from none; see --ca, $VPORTD_CA)" in run.err
    assert stub.requests == []


@pytest.mark.parametrize("what", ["missing", "not a certificate"])
def test_an_unusable_ca_file_is_a_usage_error(
    stub: StubCluster, certs: Certs, tmp_path: Path, capsys: Capsys, what: str
) -> None:
    ca = tmp_path / "ca.pem"
    if what == "not a certificate":
        ca.write_text("garbage\n")
    run = vportctl(capsys, "--json", "--ca", str(ca), "vports")
    assert run.rc == api.EXIT_USAGE
    assert run.json()["error"] == "bad-ca"
    assert f"cannot use the CA file {ca}" in run.json()["detail"]
    assert stub.requests == []


def test_resolve_target_ca_order(tmp_path: Path, certs: Certs) -> None:
    lab = tls_lab(tmp_path / "lab", 9000, certs)
    from_lab = target.resolve_target(None, None, lab, {})
    assert from_lab.urls == ("https://127.0.0.1:9000", "https://127.0.0.1:9001")
    assert (from_lab.ca, from_lab.ca_from) == (lab / "tls" / "ca.pem", f"the lab in {lab}")
    env = {"VPORTD_CA": "/env/ca.pem"}
    assert target.resolve_target(None, None, lab, env).ca == Path("/env/ca.pem")
    flagged = target.resolve_target(None, None, lab, env, ca=Path("/flag/ca.pem"))
    assert (flagged.ca, flagged.ca_from) == (Path("/flag/ca.pem"), "--ca")
    plain = _make_lab(tmp_path / "plain", 9100, "t")
    assert target.resolve_target(None, None, plain, {}).ca is None
