"""A private etcd: one member on 127.0.0.1 with free ports and its data under a directory.

For tests, the lab and benchmarks; the system's etcd service is never used.
`restart()` keeps the data dir and both ports, so clients can reconnect to
the same endpoint and find their keys, leases and revisions. By default etcd
is a plain child of this process; `detached=True` gives it its own session
and no file handle of ours, so that it outlives this process (the lab's etcd,
which `vportctl lab down` stops later by its command line). Auto-compaction
is off unless asked for, so a test decides when history goes away
(`compact`). With `tls`, etcd serves https only and asks every client for a
certificate its CA signed (`--client-cert-auth`); the helpers here show it the
same certificate it serves with. These calls block: run them in a thread from
asyncio code.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from vportd_lab.bed.commands import tool
from vportd_lab.bed.ports import free_port

ETCD = "etcd"


class EtcdError(RuntimeError):
    pass


@dataclass(frozen=True)
class EtcdCerts:
    """etcd's TLS: the CA its clients' certificates must be signed by, and its own pair
    (whose certificate must name 127.0.0.1, and may serve as a client's too)."""

    ca: Path
    cert: Path
    key: Path

    def argv(self) -> list[str]:
        return [
            "--cert-file", str(self.cert), "--key-file", str(self.key),
            "--client-cert-auth", "--trusted-ca-file", str(self.ca),
        ]  # fmt: skip

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.cert), str(self.key))
        return context


@dataclass
class PrivateEtcd:
    """One etcd member whose data, log and ports belong to this object."""

    workdir: Path
    # "revision" mode with this retention (e.g. "1000") or a period like "5m"; None = off.
    auto_compaction: str | None = None
    auto_compaction_mode: str = "revision"
    # Own session (no Ctrl-C from our terminal), log written by etcd alone: it outlives us.
    detached: bool = False
    tls: EtcdCerts | None = None
    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    netns: str | None = None  # run in this network namespace (listening on `host` there)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _log: IO[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def url(self) -> str:
        return f"{'http' if self.tls is None else 'https'}://{self.endpoint}"

    def _context(self) -> ssl.SSLContext | None:
        return None if self.tls is None else self.tls.context()

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_file(self) -> Path:
        return self.workdir / "etcd.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    # -- life ------------------------------------------------------------
    def argv(self) -> list[str]:
        peer = f"http://{self.host}:{self.peer_port}"
        where = [] if self.netns is None else [tool("ip"), "netns", "exec", self.netns]
        args = [
            *where,
            ETCD, "--name", "vportd", "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"vportd={peer}", "--initial-cluster-state", "new",
            "--auto-compaction-retention", self.auto_compaction or "0",
            # One member on loopback: elect itself fast after a restart.
            "--heartbeat-interval", "50", "--election-timeout", "250",
        ]  # fmt: skip
        if self.auto_compaction:
            args += ["--auto-compaction-mode", self.auto_compaction_mode]
        if self.tls is not None:
            args += self.tls.argv()
        return args

    def start(self, timeout: float = 20.0) -> PrivateEtcd:
        """Start the member (a no-op if it runs) and wait until it answers /health."""
        if self.pid is not None:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.log_file.open("ab")
        self._proc = subprocess.Popen(
            self.argv(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=self.detached,
        )  # fmt: skip
        if self.detached:
            log.close()  # etcd holds its own copy; ours would only leak
        else:
            self._log = log
        self._wait_healthy(timeout)
        return self

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self._proc is None or self._proc.poll() is not None:
                raise EtcdError(f"etcd exited at start; see {self.log_file}")
            if time.monotonic() >= deadline:
                raise EtcdError(f"etcd not healthy after {timeout} s; see {self.log_file}")
            time.sleep(0.05)

    def healthy(self) -> bool:
        try:
            url, context = f"{self.url}/health", self._context()
            with urllib.request.urlopen(url, timeout=1.0, context=context) as resp:
                return bool(json.load(resp).get("health") == "true")
        except (OSError, ValueError):
            return False

    def stop(self, wait: float = 10.0) -> None:
        """SIGTERM (SIGKILL after `wait` s) and reap; a no-op if it is not running."""
        self._signal(signal.SIGTERM, wait)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed beyond what etcd already synced."""
        self._signal(signal.SIGKILL, 10.0)

    def restart(self, hard: bool = False) -> None:
        """Stop (or kill when `hard`) and start again on the same ports and data dir."""
        if hard:
            self.kill()
        else:
            self.stop()
        self.start()

    def _signal(self, sig: signal.Signals, wait: float) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    # -- helpers over the JSON gateway (no client library needed) --------
    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(
            f"{self.url}{path}", data=json.dumps(body).encode(), method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=10.0, context=self._context()) as resp:
                answer: dict[str, Any] = json.load(resp)
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")
            raise EtcdError(f"{path}: HTTP {err.code}: {detail}") from None
        return answer

    def revision(self) -> int:
        """The store's current revision."""
        key = base64.b64encode(b"\0").decode()
        answer = self._post("/v3/kv/range", {"key": key, "count_only": True})
        return int(answer["header"]["revision"])

    def put(self, key: str, value: bytes) -> int:
        """Write one key (no lease); returns the revision of the write."""
        body = {"key": base64.b64encode(key.encode()).decode(),
                "value": base64.b64encode(value).decode()}  # fmt: skip
        return int(self._post("/v3/kv/put", body)["header"]["revision"])

    def enable_auth(self, password: str) -> None:
        """Turn etcd's authentication on, with user `root` (role root) and `password`.
        The helpers here make no login: those that read or write keys stop working."""
        self._post("/v3/auth/user/add", {"name": "root", "password": password})
        self._post("/v3/auth/user/grant", {"user": "root", "role": "root"})
        self._post("/v3/auth/enable", {})

    def get(self, key: str) -> dict[str, Any] | None:
        """One key as the gateway shows it (`lease` is a decimal string), or None."""
        answer = self._post("/v3/kv/range", {"key": base64.b64encode(key.encode()).decode()})
        kvs: list[dict[str, Any]] = answer.get("kvs", [])
        return kvs[0] if kvs else None

    def time_to_live(self, lease: int) -> int | None:
        """The seconds `lease` has left if nobody renews it; None once it is gone."""
        answer = self._post("/v3/lease/timetolive", {"ID": str(lease)})
        ttl = int(answer.get("TTL", -1))
        return None if ttl < 0 else ttl

    def compact(self, revision: int | None = None) -> int:
        """Drop the history before `revision` (default: the current one); returns it."""
        rev = self.revision() if revision is None else revision
        self._post("/v3/kv/compaction", {"revision": str(rev), "physical": True})
        return rev


@contextlib.contextmanager
def temporary_etcd(
    parent: Path | None = None, auto_compaction: str | None = None, tls: EtcdCerts | None = None
) -> Iterator[PrivateEtcd]:
    """A started private etcd in a fresh temp dir, stopped and removed after."""
    workdir = Path(tempfile.mkdtemp(prefix="etcd", dir=parent))
    member = PrivateEtcd(workdir, auto_compaction=auto_compaction, tls=tls)
    try:
        yield member.start()
    finally:
        member.stop()
        shutil.rmtree(workdir, ignore_errors=True)
