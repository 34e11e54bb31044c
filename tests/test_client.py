"""`vportctl`'s cluster commands and `vportd.ctl.client` against a stub of the REST API.

The stub (`StubCluster`) implements DESIGN §4's northbound contract over a
dict, on a loopback port, in a background thread; it records every request it
receives, and can be told to answer the next matching request with an error
(a 503 during a failover, a FastAPI 422). The tests drive `vportctl` through
`vportd.ctl.cli.main` (and once as the installed script) and check exit codes,
printed output and what the server received.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from vportd.ctl import client as api
from vportd.ctl import target
from vportd.ctl.cli import main
from vportd_lab.bed.ports import free_port
from vportd_lab.bed.state import Options, State

TOKEN = "s3cret"
VM0, VM1, VM_UNKNOWN = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:99"
Json = dict[str, Any]
Capsys = pytest.CaptureFixture[str]


# -- the stub API ----------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    auth: str | None
    body: Any


@dataclass
class Fault:
    method: str
    path: str
    status: int
    body: Json | str
    headers: dict[str, str] = field(default_factory=dict)


def _vport(vm: str, ovs: str, port: int) -> Json:
    return {
        "vm": vm, "ips": [f"10.0.0.{port}"], "ovs": ovs, "dpid": f"{int(ovs[2:]) + 1:016x}",
        "port": port, "port_name": f"vm{port - 1}h", "migration_state": "not-migrating",
        "port_state": "up", "seq": 1, "destination": None,
    }  # fmt: skip


def _error(status: int, code: str, detail: str) -> tuple[int, Json]:
    return status, {"error": code, "detail": detail}


class StubCluster:
    """DESIGN §4 over a dict: two switches hv0/hv1, two VMs, one leader c0."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.url = ""
        self.reset()

    def reset(self) -> None:
        self.leader: str | None = "c0"
        self.vports = {VM0: _vport(VM0, "hv0", 1), VM1: _vport(VM1, "hv1", 2)}
        self.migrations: dict[str, Json] = {}
        self.requests: list[Request] = []
        self.faults: list[Fault] = []

    def fail_next(self, method: str, path: str, status: int, code: str, **headers: str) -> None:
        """Answer the next `method path` with this error instead (a failover, a bad body)."""
        self.faults.append(Fault(method, path, status, {"error": code, "detail": code}, headers))

    def posts(self) -> list[Json]:
        return [r.body for r in self.requests if r.method == "POST"]

    def handle(self, req: Request) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            self.requests.append(req)
            for fault in self.faults:
                if (fault.method, fault.path) == (req.method, req.path):
                    self.faults.remove(fault)
                    return fault.status, fault.body, fault.headers
            if req.path != "/v1/healthz":
                if req.auth is None:
                    return (*_error(401, "unauthorized", "a bearer token is required"), {})
                if req.auth != f"Bearer {TOKEN}":
                    return (*_error(403, "forbidden", "wrong token"), {})
            return (*self.route(req), {})

    def route(self, req: Request) -> tuple[int, Any]:
        parts = req.path.strip("/").split("/")[1:]  # without "v1"
        match req.method, parts:
            case "GET", ["healthz"]:
                return 200, {"ok": True, "detail": {"switches": 2}}
            case "GET", ["cluster"]:
                members = [
                    {"id": "c0", "api": self.url, "healthy": True, "switches": ["1", "2"]},
                    {"id": "c1", "api": "http://127.0.0.1:1", "healthy": False, "switches": []},
                ]
                return 200, {"leader": self.leader, "members": members}
            case "GET", ["vports"]:
                return 200, list(self.vports.values())
            case "GET", ["vports", vm]:
                if vm not in self.vports:
                    return _error(404, "unknown-vm", f"no vPort for {vm}")
                return 200, self.vports[vm]
            case "POST", ["migrations"]:
                return self.notify(req.body)
            case "GET", ["migrations"]:
                return 200, list(self.migrations.values())
            case "GET" | "DELETE", ["migrations", mid]:
                if mid not in self.migrations:
                    return _error(404, "unknown-migration", f"no migration {mid}")
                if req.method == "DELETE":
                    self.migrations[mid]["state"] = "aborted"
                    self.vports[self.migrations[mid]["vm"]]["migration_state"] = "not-migrating"
                return 200, self.migrations[mid]
        return _error(404, "not-found", req.path)

    def notify(self, body: Json) -> tuple[int, Any]:
        vm, src, dst = body["vm"], body["source"], body["destination"]
        if vm not in self.vports:
            return _error(404, "unknown-vm", f"no vPort for {vm}")
        if not {src, dst} <= {"hv0", "hv1"}:
            return _error(404, "unknown-ovs", f"no switch {dst if src in ('hv0', 'hv1') else src}")
        for m in self.migrations.values():
            if m["vm"] == vm and m["state"] == "ready":
                if (m["source"], m["destination"]) == (src, dst):
                    return 200, m
                return _error(409, "already-migrating", f"{vm} is migrating to {m['destination']}")
        if self.vports[vm]["ovs"] != src:
            return _error(409, "vm-not-on-source", f"{vm} is on {self.vports[vm]['ovs']}")
        mid = f"m-{len(self.migrations) + 1}"
        seq = self.vports[vm]["seq"] + 1
        self.migrations[mid] = {
            "id": mid, "vm": vm, "source": src, "destination": dst, "state": "ready", "seq": seq,
        }  # fmt: skip
        self.vports[vm].update(migration_state="migrating", destination=dst)
        return 201, self.migrations[mid]


def _handler(stub: StubCluster) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            req = Request(
                self.command, self.path, self.headers.get("Authorization"),
                json.loads(raw) if raw else None,
            )  # fmt: skip
            status, body, headers = stub.handle(req)
            as_text = isinstance(body, str)  # a str body is sent as is, not as JSON
            data = body.encode() if as_text else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html" if as_text else "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the test output clean

    return Handler


@pytest.fixture(scope="module")
def server() -> Iterator[StubCluster]:
    stub = StubCluster()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    httpd.daemon_threads = True
    stub.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield stub
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def stub(
    server: StubCluster, token_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> StubCluster:
    """The stub, reset, with $VPORTD_API and $VPORTD_TOKEN_FILE pointing at it and no lab."""
    server.reset()
    monkeypatch.setenv("VPORTD_API", server.url)
    monkeypatch.setenv("VPORTD_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("VPORTD_LAB_DIR", str(tmp_path / "no-lab"))
    return server


@dataclass
class Run:
    rc: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)  # exactly one document, or this fails


def vportctl(capsys: Capsys, *args: str) -> Run:
    capsys.readouterr()
    try:
        rc = main(list(args))
    except SystemExit as exc:  # argparse's usage errors
        rc = int(exc.code or 0)
    captured = capsys.readouterr()
    return Run(rc, captured.out, captured.err)


# -- status ------------------------------------------------------------------------


def test_status_shows_leader_and_members(stub: StubCluster, capsys: Capsys) -> None:
    run = vportctl(capsys, "status")
    assert run.rc == api.EXIT_OK, run.err
    assert "leader: c0" in run.out
    assert "health of the answering controller: ok" in run.out
    member = next(line for line in run.out.splitlines() if line.startswith("c0"))
    assert member.split()[:3] == ["c0", stub.url, "yes"]
    assert "1, 2" in member


def test_status_json_has_cluster_and_health(stub: StubCluster, capsys: Capsys) -> None:
    run = vportctl(capsys, "--json", "status")
    assert run.rc == 0
    doc = run.json()
    assert doc["cluster"]["leader"] == "c0"
    assert [m["id"] for m in doc["cluster"]["members"]] == ["c0", "c1"]
    assert doc["health"]["ok"] is True
    assert [r.path for r in stub.requests] == ["/v1/cluster", "/v1/healthz"]


def test_status_without_leader_exits_3_but_shows_the_cluster(
    stub: StubCluster, capsys: Capsys
) -> None:
    stub.leader = None
    run = vportctl(capsys, "status", "--json")
    assert run.rc == api.EXIT_UNAVAILABLE == 3
    assert run.json()["cluster"]["leader"] is None
    assert "no leader" in run.err


def test_status_shows_an_unhealthy_controller(stub: StubCluster, capsys: Capsys) -> None:
    # as the API answers load balancers: 503 with the health body
    unhealthy = {"ok": False, "detail": {"etcd": "unreachable"}}
    stub.faults.append(Fault("GET", "/v1/healthz", 503, unhealthy))
    run = vportctl(capsys, "status")
    assert run.rc == 0
    assert "health of the answering controller: NOT OK" in run.out
    assert '"etcd": "unreachable"' in run.out


# -- vports, vport ---------------------------------------------------------------------


def test_vports_table(stub: StubCluster, capsys: Capsys) -> None:
    run = vportctl(capsys, "vports")
    assert run.rc == 0
    header, *rows = run.out.splitlines()
    assert header.split()[:3] == ["VM", "OVS", "PORT"]
    assert [r.split()[:3] for r in rows] == [[VM0, "hv0", "1"], [VM1, "hv1", "2"]]
    assert "not-migrating" in rows[0]


@pytest.mark.parametrize("where", ["before", "after"])
def test_vports_json_before_or_after_command(where: str, stub: StubCluster, capsys: Capsys) -> None:
    args = ["--json", "vports"] if where == "before" else ["vports", "--json"]
    run = vportctl(capsys, *args)
    assert run.rc == 0
    assert run.json() == list(stub.vports.values())


def test_vport_human_and_json(stub: StubCluster, capsys: Capsys) -> None:
    text = vportctl(capsys, "vport", VM0)
    assert text.rc == 0
    assert f"vm:              {VM0}" in text.out
    assert "migration_state: not-migrating" in text.out
    doc = vportctl(capsys, "vport", VM0, "--json")
    assert doc.json() == stub.vports[VM0]
    assert stub.requests[-1].path == f"/v1/vports/{VM0}"


def test_unknown_vm_exits_1_with_the_api_error(stub: StubCluster, capsys: Capsys) -> None:
    run = vportctl(capsys, "--json", "vport", VM_UNKNOWN)
    assert run.rc == api.EXIT_REFUSED == 1
    assert run.json() == {
        "error": "unknown-vm",
        "detail": f"no vPort for {VM_UNKNOWN}",
        "status": 404,
    }
    assert f"vportctl: no vPort for {VM_UNKNOWN}" in run.err


# -- migrate ------------------------------------------------------------------------------


def test_migrate_new_then_same_again(stub: StubCluster, capsys: Capsys) -> None:
    first = vportctl(capsys, "--json", "migrate", VM0, "--from", "hv0", "--to", "hv1")
    assert first.rc == 0, first.err
    created = first.json()
    assert created["created"] is True
    assert created["state"] == "ready"
    again = vportctl(capsys, "migrate", VM0, "--from", "hv0", "--to", "hv1", "--json")
    assert again.rc == 0
    assert again.json() == {**created, "created": False}
    triple = {"vm": VM0, "source": "hv0", "destination": "hv1"}
    assert stub.posts() == [triple, triple]
    assert stub.vports[VM0]["migration_state"] == "migrating"


def test_migrate_human_output_says_the_network_is_ready(stub: StubCluster, capsys: Capsys) -> None:
    run = vportctl(capsys, "migrate", VM0, "--from", "hv0", "--to", "hv1")
    assert run.rc == 0
    assert run.out.startswith("notify complete (new migration): migration m-1 of")
    assert f"{VM0} hv0 -> hv1 is ready" in run.out


@pytest.mark.parametrize(
    "case",
    [
        (VM_UNKNOWN, "hv0", "hv1", "unknown-vm", 404),
        (VM0, "hv0", "hv7", "unknown-ovs", 404),
        (VM0, "hv1", "hv0", "vm-not-on-source", 409),
    ],
)
def test_migrate_refused_exits_1(
    case: tuple[str, str, str, str, int], stub: StubCluster, capsys: Capsys
) -> None:
    vm, source, destination, code, status = case
    run = vportctl(capsys, "--json", "migrate", vm, "--from", source, "--to", destination)
    assert run.rc == api.EXIT_REFUSED
    assert run.json()["error"] == code
    assert run.json()["status"] == status
    assert len(stub.posts()) == 1  # a refusal is final: no retry


def test_migrate_elsewhere_while_migrating_is_a_conflict(stub: StubCluster, capsys: Capsys) -> None:
    assert vportctl(capsys, "migrate", VM0, "--from", "hv0", "--to", "hv1").rc == 0
    run = vportctl(capsys, "migrate", VM0, "--from", "hv0", "--to", "hv0")
    assert run.rc == 1
    assert "is migrating to hv1" in run.err


def test_migrate_validation_error_shows_fastapi_detail(stub: StubCluster, capsys: Capsys) -> None:
    stub.faults.append(
        Fault("POST", "/v1/migrations", 422,
              {"detail": [{"loc": ["body", "vm"], "msg": "not a MAC address"}]})
    )  # fmt: skip
    run = vportctl(capsys, "--json", "migrate", "nope", "--from", "hv0", "--to", "hv1")
    assert run.rc == 1
    assert run.json() == {"error": "http-422", "detail": "vm: not a MAC address", "status": 422}


def test_migrate_retries_through_a_503_and_gets_the_same_migration(
    stub: StubCluster, capsys: Capsys
) -> None:
    # The leader answered notify complete, then failed over before the VMM saw
    # it: the retry reaches the new leader, which answers 200 with the same one.
    assert vportctl(capsys, "migrate", VM0, "--from", "hv0", "--to", "hv1").rc == 0
    stub.fail_next("POST", "/v1/migrations", 503, "no-leader", **{"Retry-After": "0"})
    run = vportctl(capsys, "--json", "migrate", VM0, "--from", "hv0", "--to", "hv1")
    assert run.rc == 0, run.err
    assert run.json()["id"] == "m-1"
    assert run.json()["created"] is False
    assert len(stub.posts()) == 3
    assert stub.posts()[1] == stub.posts()[2]


def test_migrate_without_wait_does_not_retry(stub: StubCluster, capsys: Capsys) -> None:
    stub.fail_next("POST", "/v1/migrations", 503, "no-controller")
    run = vportctl(capsys, "--json", "migrate", VM0, "--from", "hv0", "--to", "hv1", "--wait", "0")
    assert run.rc == api.EXIT_UNAVAILABLE
    assert run.json() == {"error": "no-controller", "detail": "no-controller", "status": 503}
    assert len(stub.posts()) == 1


def test_migrate_of_a_vm_that_moved_too_often_exits_3_without_retrying(
    stub: StubCluster, capsys: Capsys
) -> None:
    # Flap damping: the window is minutes long, past any --wait; a hook retries later.
    stub.fail_next("POST", "/v1/migrations", 429, "migration-suppressed", **{"Retry-After": "37"})
    run = vportctl(capsys, "--json", "migrate", VM0, "--from", "hv0", "--to", "hv1")
    assert run.rc == api.EXIT_UNAVAILABLE
    assert run.json() == {
        "error": "migration-suppressed", "detail": "migration-suppressed", "status": 429,
    }  # fmt: skip
    assert len(stub.posts()) == 1


def test_migrate_does_not_retry_what_is_not_a_vportd_api(stub: StubCluster, capsys: Capsys) -> None:
    stub.faults.append(Fault("POST", "/v1/migrations", 200, "<html>welcome</html>"))
    run = vportctl(capsys, "--json", "migrate", VM0, "--from", "hv0", "--to", "hv1")
    assert run.rc == api.EXIT_UNAVAILABLE
    assert run.json()["error"] == "bad-response"
    assert "is this a vportd API?" in run.err
    assert len(stub.posts()) == 1


def test_migrate_goes_to_the_next_controller_when_one_is_down(
    stub: StubCluster, dead_url: str, capsys: Capsys
) -> None:
    run = vportctl(
        capsys, "--api", f"{dead_url},{stub.url}", "migrate", VM0, "--from", "hv0", "--to", "hv1"
    )
    assert run.rc == 0, run.err
    assert len(stub.posts()) == 1


class FakeTime:
    """A clock that only moves when the client sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def test_migrate_gives_up_at_the_deadline(stub: StubCluster) -> None:
    for _ in range(20):
        stub.fail_next("POST", "/v1/migrations", 503, "no-leader")
    fake = FakeTime()
    with (
        api.Client(stub.url, TOKEN, sleep=fake.sleep, clock=fake.clock) as conn,
        pytest.raises(api.ApiError) as caught,
    ):
        conn.migrate(VM0, "hv0", "hv1", wait=3.0)
    assert caught.value.exit_code == api.EXIT_UNAVAILABLE
    assert "gave up after" in caught.value.detail
    assert fake.sleeps == [0.2, 0.4, 0.8, 1.6]  # backoff doubles; the next 2.0 passes 3 s
    assert len(stub.posts()) == len(fake.sleeps) + 1


def test_client_migrate_returns_migration_and_created(stub: StubCluster) -> None:
    with api.Client(stub.url, TOKEN) as conn:
        migration, created = conn.migrate(VM1, "hv1", "hv0")
        assert created is True
        assert conn.migrate(VM1, "hv1", "hv0") == (migration, False)
        assert conn.migration(migration["id"]) == migration


# -- migrations, abort ---------------------------------------------------------------


def test_migrations_list_show_and_abort(stub: StubCluster, capsys: Capsys) -> None:
    assert vportctl(capsys, "migrations").out.strip() == "no migrations"
    assert vportctl(capsys, "migrate", VM0, "--from", "hv0", "--to", "hv1").rc == 0
    table = vportctl(capsys, "migrations")
    assert table.rc == 0
    assert table.out.splitlines()[1].split() == ["m-1", VM0, "hv0", "hv1", "ready", "2", "-"]
    assert vportctl(capsys, "--json", "migrations").json() == list(stub.migrations.values())
    one = vportctl(capsys, "migrations", "m-1")
    assert "state:       ready" in one.out

    aborted = vportctl(capsys, "abort", "m-1")
    assert aborted.rc == 0
    assert aborted.out.strip() == "migration m-1: aborted"
    assert stub.requests[-1].method == "DELETE"
    assert stub.requests[-1].path == "/v1/migrations/m-1"
    assert stub.vports[VM0]["migration_state"] == "not-migrating"
    assert vportctl(capsys, "--json", "migrations", "m-1").json()["state"] == "aborted"


def test_abort_unknown_migration_exits_1(stub: StubCluster, capsys: Capsys) -> None:
    run = vportctl(capsys, "--json", "abort", "m-404")
    assert run.rc == 1
    assert run.json()["error"] == "unknown-migration"


def test_abort_is_not_resent_after_a_503(stub: StubCluster, capsys: Capsys) -> None:
    assert vportctl(capsys, "migrate", VM0, "--from", "hv0", "--to", "hv1").rc == 0
    stub.fail_next("DELETE", "/v1/migrations/m-1", 503, "no-leader")
    assert vportctl(capsys, "abort", "m-1").rc == api.EXIT_UNAVAILABLE
    assert [r.method for r in stub.requests].count("DELETE") == 1


# -- errors common to every command -------------------------------------------------

COMMANDS = [
    ["status"],
    ["vports"],
    ["vport", VM0],
    ["migrate", VM0, "--from", "hv0", "--to", "hv1", "--wait", "0"],
    ["migrations"],
    ["abort", "m-1"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_unreachable_api_exits_3(
    command: list[str], stub: StubCluster, dead_url: str, capsys: Capsys
) -> None:
    run = vportctl(capsys, "--json", "--api", dead_url, *command)
    assert run.rc == api.EXIT_UNAVAILABLE
    assert run.json()["error"] == "unreachable"
    assert run.json()["status"] is None
    assert dead_url in run.err
    assert "API from --api" in run.err


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_no_token_exits_4(
    command: list[str], stub: StubCluster, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VPORTD_TOKEN_FILE")
    run = vportctl(capsys, "--json", *command)
    assert run.rc == api.EXIT_AUTH == 4
    assert run.json()["status"] == 401
    assert "no token: give --token-file or set $VPORTD_TOKEN_FILE" in run.err
    assert stub.requests[0].auth is None


def test_wrong_token_exits_4(stub: StubCluster, tmp_path: Path, capsys: Capsys) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("guess\n")
    run = vportctl(capsys, "vports", "--token-file", str(wrong))
    assert run.rc == 4
    assert f"token file {wrong}, from --token-file" in run.err
    assert stub.requests[0].auth == "Bearer guess"


def test_unreadable_token_file_exits_4_without_a_request(
    stub: StubCluster, tmp_path: Path, capsys: Capsys
) -> None:
    run = vportctl(capsys, "--json", "vports", "--token-file", str(tmp_path / "missing"))
    assert run.rc == 4
    assert run.json()["error"] == "bad-token-file"
    assert stub.requests == []


def test_no_leader_503_exits_3(stub: StubCluster, capsys: Capsys) -> None:
    stub.fail_next("GET", "/v1/vports", 503, "no-leader")
    run = vportctl(capsys, "--json", "vports")
    assert run.rc == 3
    assert run.json() == {"error": "no-leader", "detail": "no-leader", "status": 503}


def test_usage_error_exits_2(stub: StubCluster, capsys: Capsys) -> None:
    assert vportctl(capsys, "migrate", VM0, "--from", "hv0").rc == api.EXIT_USAGE
    assert vportctl(capsys, "migrate", VM0, "--from", "a", "--to", "b", "--wait", "-1").rc == 2
    assert stub.requests == []


# -- where the API and the token come from ----------------------------------------


def _make_lab(lab_dir: Path, api_port: int, token: str) -> Path:
    """A lab state as `lab up` leaves it: two controllers from `api_port`, a token file."""
    lab_dir.mkdir()
    options = Options(hypervisors=2, vms=2, controllers=2, openflow_port=6653, api_port=api_port)
    State(str(lab_dir), options, phase="up").save(lab_dir / "lab.json")
    (lab_dir / "api.token").write_text(token + "\n")
    return lab_dir


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_api_flag_beats_env(
    stub: StubCluster, dead_url: str, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VPORTD_API", dead_url)
    assert vportctl(capsys, "--api", stub.url, "vports").rc == 0
    assert vportctl(capsys, "vports").rc == 3  # the env alone points at nothing


def test_env_beats_lab_state(
    stub: StubCluster,
    dead_url: str,
    tmp_path: Path,
    capsys: Capsys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lab = _make_lab(tmp_path / "lab", _port(dead_url), "lab-token")
    monkeypatch.setenv("VPORTD_LAB_DIR", str(lab))
    run = vportctl(capsys, "vports")
    assert run.rc == 0, run.err
    assert stub.requests[0].auth == f"Bearer {TOKEN}"  # $VPORTD_TOKEN_FILE beats the lab's


@pytest.mark.parametrize("how", ["--lab", "$VPORTD_LAB_DIR"])
def test_lab_state_gives_api_and_token(
    how: str, stub: StubCluster, tmp_path: Path, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = _make_lab(tmp_path / "lab", _port(stub.url), TOKEN)
    monkeypatch.delenv("VPORTD_API")
    monkeypatch.delenv("VPORTD_TOKEN_FILE")
    if how == "--lab":
        run = vportctl(capsys, "--lab", str(lab), "vports")
    else:
        monkeypatch.setenv("VPORTD_LAB_DIR", str(lab))
        run = vportctl(capsys, "vports")
    assert run.rc == 0, run.err
    assert stub.requests[0].auth == f"Bearer {TOKEN}"


def test_token_flag_beats_env_beats_lab(
    stub: StubCluster,
    token_file: Path,
    tmp_path: Path,
    capsys: Capsys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lab = _make_lab(tmp_path / "lab", _port(stub.url), "lab-token")
    wrong = tmp_path / "wrong"
    wrong.write_text("env-token\n")
    monkeypatch.setenv("VPORTD_TOKEN_FILE", str(wrong))
    assert vportctl(capsys, "--lab", str(lab), "vports", "--token-file", str(token_file)).rc == 0
    assert vportctl(capsys, "--lab", str(lab), "vports").rc == 4
    monkeypatch.delenv("VPORTD_TOKEN_FILE")
    assert vportctl(capsys, "--lab", str(lab), "vports").rc == 4
    auths = [r.auth for r in stub.requests]
    assert auths == [f"Bearer {TOKEN}", "Bearer env-token", "Bearer lab-token"]


def test_resolve_target_order_and_default(tmp_path: Path) -> None:
    lab = _make_lab(tmp_path / "lab", 9000, "t")
    no_lab = {"VPORTD_LAB_DIR": str(tmp_path / "none")}
    default = target.resolve_target(None, None, None, no_lab)
    assert default == target.Target((target.DEFAULT_API,), "the default", None, "none")
    from_lab = target.resolve_target(None, None, lab, {})
    assert from_lab.urls == ("http://127.0.0.1:9000", "http://127.0.0.1:9001")
    assert from_lab.token_file == lab / "api.token"
    env = {"VPORTD_API": "h:1, h:2/", "VPORTD_TOKEN_FILE": "/e"}
    assert target.resolve_target(None, None, lab, env).urls == ("http://h:1", "http://h:2")
    flagged = target.resolve_target("https://x:3", Path("/f"), lab, env)
    assert (flagged.urls, flagged.token_file) == (("https://x:3",), Path("/f"))


def test_lab_flag_without_a_lab_is_a_usage_error(
    stub: StubCluster, tmp_path: Path, capsys: Capsys
) -> None:
    run = vportctl(capsys, "--json", "--lab", str(tmp_path), "vports")
    assert run.rc == api.EXIT_USAGE
    assert run.json()["error"] == "no-lab"
    assert stub.requests == []


# -- the installed script ---------------------------------------------------------


def test_installed_vportctl_migrates(stub: StubCluster, token_file: Path, tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "vportctl"
    env = {
        "PATH": "/usr/bin:/bin",
        "VPORTD_API": stub.url,
        "VPORTD_TOKEN_FILE": str(token_file),
        "VPORTD_LAB_DIR": str(tmp_path / "no-lab"),
    }
    done = subprocess.run(
        [str(exe), "--json", "migrate", VM0, "--from", "hv0", "--to", "hv1"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["created"] is True
    assert stub.posts() == [{"vm": VM0, "source": "hv0", "destination": "hv1"}]
    assert stub.requests[0].auth == f"Bearer {TOKEN}"


def test_one_migration_shows_its_timeline_and_downtime_for_people(
    stub: StubCluster, capsys: Capsys
) -> None:
    assert vportctl(capsys, "migrate", VM0, "--from", "hv0", "--to", "hv1").rc == 0
    stub.migrations["m-1"]["timeline"] = [
        {"step": "notify", "at": 1000.0}, {"step": "ready", "at": 1000.0042},
    ]  # fmt: skip
    arrivals = [1000.0 + i / 1000 for i in range(3000)]
    stub.migrations["m-1"]["downtime"] = {
        "directions": [{"name": "vm -> peer", "gap_s": 0.042, "lost": 12, "arrivals": arrivals}]
    }

    one = vportctl(capsys, "migrations", "m-1")

    assert "timeline:    notify +0.0 ms, ready +4.2 ms" in one.out
    assert "downtime:    vm -> peer: longest gap 42.0 ms, lost 12" in one.out
    assert "1000.001" not in one.out  # the arrivals are for --json
    shown = vportctl(capsys, "--json", "migrations", "m-1").json()
    assert shown["downtime"]["directions"][0]["arrivals"] == arrivals
