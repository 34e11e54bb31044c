"""A small typed client for the vportd REST API (DESIGN.md §4), for `vportctl` and VM managers.

`Client` speaks the northbound API of any controller of the cluster (every
controller serves it; a follower forwards mutations to the leader). It turns
answers into plain dicts, as §4 shows them, and failures into `ClientError`s:

- `ApiError(status, code, detail)`: the cluster answered with an error;
- `Unreachable(reason)`: no controller answered (refused, timed out, reset);
- `BadResponse(detail)`: what answered is not a vportd API;
- `TokenError`, `TargetError`: the token file, the `--lab` directory or the CA
  file is unusable.

An https API is checked against the CA file given (`ca`: the cluster's CA,
and only it) or, without one, the system's CAs; the URL's host must be in
the certificate's names, as for any https client.

Each carries the `vportctl` exit code a hook script can rely on (`EXIT_*` below,
the one place they are defined).

`Client.migrate` is the VM manager's migration notify. It may retry: the same
(vm, source, destination) again is idempotent (200, the same migration), so
after a 503 (no leader during a failover, or a controller did not answer and
the migration was rolled back) or a lost connection it sends the same notify
again, to the next controller if several are known, until a deadline. A leader
failover during a notify therefore does not make the hook fail.

Where the API is and which token to send is `vportd.ctl.target`'s.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlencode

if TYPE_CHECKING:
    import httpx

Json = dict[str, Any]

# vportctl's exit codes (documented in `vportctl --help` and docs/operations.md).
EXIT_OK: Final = 0  # the cluster did it (migrate: notify complete, 201 or 200)
EXIT_REFUSED: Final = 1  # the cluster refused: 400/404/409/422 (unknown VM/OVS, conflict, input)
EXIT_USAGE: Final = 2  # bad command line (argparse), or no usable lab where --lab points
# unreachable, timeout, 503 (no leader, rolled back), 5xx, 429 (the VM moved too often): retry
EXIT_UNAVAILABLE: Final = 3
EXIT_AUTH: Final = 4  # 401/403, or the token file cannot be read: fix the token, not retry

DEFAULT_TIMEOUT: Final = 10.0  # per request; a notify waits for both controllers' sync complete
# A controller that does not even accept the connection this fast is cut off or gone: the
# next one is asked (a data centre's management network connects in milliseconds).
CONNECT_TIMEOUT: Final = 2.0
DEFAULT_WAIT: Final = 10.0  # how long `migrate` keeps retrying through a failover

# A gateway or a cluster without a leader answers these; the request did not take effect
# in a way a retry of an idempotent request could not find again.
RETRY_STATUSES: Final = frozenset({502, 503, 504})
MIN_BACKOFF: Final = 0.05
FIRST_BACKOFF: Final = 0.2
MAX_BACKOFF: Final = 2.0
HTTP_CREATED: Final = 201
HTTP_CLIENT_ERROR: Final = 400
HTTP_SERVER_ERROR: Final = 500
AUTH_STATUSES: Final = frozenset({401, 403})
HTTP_TOO_MANY: Final = 429  # flap damping: the same notify is taken after its Retry-After
NODELAY: Final = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


class ClientError(Exception):
    """Anything that kept a request from succeeding; `exit_code` is vportctl's answer."""

    def __init__(self, code: str, detail: str, exit_code: int, status: int | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.exit_code = exit_code
        self.status = status

    def to_json(self) -> Json:
        """The error as `vportctl --json` prints it: §4's error body plus the HTTP status."""
        return {"error": self.code, "detail": self.detail, "status": self.status}

    def __str__(self) -> str:
        return self.detail


class ApiError(ClientError):
    """The API answered with an error status and (normally) §4's `{"error", "detail"}` body."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        retry_after: float | None = None,
        body: object = None,
    ) -> None:
        super().__init__(code, detail, _exit_code_for_status(status), status)
        self.retry_after = retry_after
        self.body = body  # the parsed JSON answer, if it was JSON

    @property
    def retryable(self) -> bool:
        return self.status in RETRY_STATUSES


class Unreachable(ClientError):
    """No controller gave an answer: connection refused, timeout, reset, or not a vportd API."""

    def __init__(self, reason: str) -> None:
        super().__init__("unreachable", reason, EXIT_UNAVAILABLE)
        self.reason = reason


class BadResponse(ClientError):
    """Something answered, but not as a vportd API does (not JSON, not the shape of §4)."""

    def __init__(self, detail: str) -> None:
        super().__init__("bad-response", detail, EXIT_UNAVAILABLE)


class TokenError(ClientError):
    """The token file was named but cannot be used."""

    def __init__(self, detail: str) -> None:
        super().__init__("bad-token-file", detail, EXIT_AUTH)


class TargetError(ClientError):
    """The options name no usable API: `--lab DIR` without a lab, an empty `--api`."""

    def __init__(self, detail: str, code: str = "no-lab") -> None:
        super().__init__(code, detail, EXIT_USAGE)


def ca_context(ca: Path) -> ssl.SSLContext:
    """A client context that trusts the CA certificate(s) in `ca`, and nothing else."""
    try:
        return ssl.create_default_context(cafile=str(ca))
    except OSError as err:  # ssl.SSLError too
        why = err.strerror or getattr(err, "reason", None) or str(err)
        raise TargetError(f"cannot use the CA file {ca}: {why}", "bad-ca") from None


def _exit_code_for_status(status: int) -> int:
    if status in AUTH_STATUSES:
        return EXIT_AUTH
    if status >= HTTP_SERVER_ERROR or status == HTTP_TOO_MANY:
        return EXIT_UNAVAILABLE
    return EXIT_REFUSED


class Client:
    """The northbound API of a vportd cluster, synchronous (one request at a time).

    `base_url` is one controller's API or several (any controller serves the
    API): a request that cannot connect to one goes to the next, and the client
    stays with the last one that answered. `token` is sent as a bearer token.
    `ca` is the CA file an https API is checked against (module docstring).
    `sleep` and `clock` are for tests of the retry deadline.
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        ca: Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ValueError("Client needs at least one API URL")
        self.urls = tuple(normalize_url(u) for u in urls)
        self._current = 0
        self._sleep = sleep
        self._clock = clock
        verify = True if ca is None else ca_context(ca)
        # Lazy: httpx takes a large share of vportctl's start-up, which `--help`, a usage
        # error or `lab`/`demo`/`bench` should not pay.
        import httpx  # noqa: PLC0415

        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        # httpx sends a request's headers and its body in separate writes: with Nagle's
        # algorithm on, the body waits for the peer's delayed ACK of the headers.
        transport = httpx.HTTPTransport(socket_options=NODELAY, verify=verify)
        limits = httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT))
        self._http = httpx.Client(headers=headers, timeout=limits, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the API ------------------------------------------------------------
    def status(self) -> Json:
        """`{"cluster": GET /v1/cluster, "health": GET /v1/healthz}`.

        An unhealthy controller answers /healthz with 503 and its health body
        (`{"ok": false, "detail": {...}}`, for load balancers): that is still
        an answer, shown as the health, not an error.
        """
        cluster = self._get("/v1/cluster")
        try:
            health = self._get("/v1/healthz")
        except ApiError as err:
            if err.status not in RETRY_STATUSES:
                raise
            if isinstance(err.body, dict) and "ok" in err.body:
                health = err.body
            else:
                health = {"ok": False, "error": err.code, "detail": err.detail}
        return {"cluster": cluster, "health": health}

    def health(self) -> Json:
        return self._get("/v1/healthz")

    def vports(self, segment: int | None = None) -> list[Json]:
        """Every vPort; those of `segment` only, if given."""
        query = "" if segment is None else f"?{urlencode({'segment': segment})}"
        return _items(self._get("/v1/vports" + query), "vports")

    def vport(self, vm: str) -> Json:
        return self._get(f"/v1/vports/{_segment(vm)}")

    def switches(self) -> list[Json]:
        return _items(self._get("/v1/switches"), "switches")

    def migrations(self, state: str | None = None, limit: int | None = None) -> list[Json]:
        """The migrations the leader keeps, oldest first: those in `state`, the newest `limit`."""
        query = {k: v for k, v in (("state", state), ("limit", limit)) if v is not None}
        path = "/v1/migrations" + (f"?{urlencode(query)}" if query else "")
        return _items(self._get(path), "migrations")

    def migration(self, migration_id: str) -> Json:
        return self._get(f"/v1/migrations/{_segment(migration_id)}")

    def abort(self, migration_id: str) -> Json:
        """DELETE the migration (abort it); answers the migration as the cluster left it.

        Not retried once sent: an abort that reached the leader and is sent
        again may meet an already aborted migration.
        """
        path = f"/v1/migrations/{_segment(migration_id)}"
        body = _answer(self._send("DELETE", path, None, resend=False))
        return body or {"id": migration_id}

    def report_downtime(self, migration_id: str, report: Json) -> Json:
        """PUT what was measured of the migration's traffic (`{"directions": [...]}`);
        answers the migration with it. Sent again as is: a report replaces the last."""
        path = f"/v1/migrations/{_segment(migration_id)}/downtime"
        return _answer(self._send("PUT", path, report, resend=True))

    def migrate(
        self, vm: str, source: str, destination: str, *, wait: float = 0.0
    ) -> tuple[Json, bool]:
        """The migration notify (claim 6): returns (migration, created) at notify complete.

        `created` is True for 201 (a new migration) and False for 200 (the same
        triple again: the same migration). On a 502/503/504 or a transport error
        the same notify is sent again, after a growing pause (or the server's
        Retry-After), to the next known controller, while `wait` seconds have
        not passed since the first attempt; then the last error is raised. An
        attempt in progress may add up to the client's timeout to that.
        Other errors (4xx) are raised at once.
        """
        body = {"vm": vm, "source": source, "destination": destination}
        deadline = self._clock() + wait
        pause = FIRST_BACKOFF
        attempts = 0
        while True:
            attempts += 1
            try:
                response = self._send("POST", "/v1/migrations", body, resend=True)
                return _answer(response), response.status_code == HTTP_CREATED
            except (ApiError, Unreachable) as err:
                if isinstance(err, ApiError) and not err.retryable:
                    raise
                delay = _retry_delay(err, pause)
                if self._clock() + delay > deadline:
                    if attempts > 1:
                        err.detail += f" (gave up after {attempts} attempts in {wait:g} s)"
                    raise
                self._sleep(delay)
                self._current = (self._current + 1) % len(self.urls)
                pause = min(pause * 2, MAX_BACKOFF)

    # -- plumbing -------------------------------------------------------------
    def _get(self, path: str) -> Json:
        return _answer(self._send("GET", path, None, resend=True))

    def _send(self, method: str, path: str, body: Json | None, *, resend: bool) -> httpx.Response:
        """Send to the current controller, then the next ones, until one answers.

        A request that never left (connect refused or timed out) may always go
        to the next controller; one that was sent and then lost only when
        `resend` says sending it twice is harmless.
        """
        import httpx  # noqa: PLC0415 (lazy: see __init__)

        failures: list[str] = []
        for step in range(len(self.urls)):
            index = (self._current + step) % len(self.urls)
            url = self.urls[index] + path
            try:
                response = self._http.request(method, url, json=body)
            except (httpx.ConnectError, httpx.ConnectTimeout) as err:
                failures.append(f"{self.urls[index]}: {_reason(err)}")
                continue
            except httpx.TransportError as err:
                failures.append(f"{self.urls[index]}: {_reason(err)}")
                if resend:
                    continue
                break
            self._current = index
            return response
        raise Unreachable("cannot reach the vportd API: " + "; ".join(failures))


def _answer(response: httpx.Response) -> Json:
    """The JSON body of a success (a list is wrapped as `{"items": [...]}`), or an ApiError."""
    if response.status_code >= HTTP_CLIENT_ERROR:
        raise _api_error(response)
    if not response.content:
        return {}
    try:
        body = response.json()
    except ValueError:
        raise BadResponse(
            f"{response.request.url}: answered {response.status_code} with a body that is not "
            "JSON: is this a vportd API?"
        ) from None
    if isinstance(body, list):
        return {"items": body}
    if not isinstance(body, dict):
        raise BadResponse(f"{response.request.url}: unexpected answer {body!r}")
    return body


def _api_error(response: httpx.Response) -> ApiError:
    """§4's error body; FastAPI's own errors (422 `{"detail": [...]}`) and plain text too."""
    status = response.status_code
    code, detail = f"http-{status}", response.reason_phrase or f"HTTP {status}"
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = str(body.get("error") or code)
        raw = body.get("detail", detail)
        detail = raw if isinstance(raw, str) else _flatten_detail(raw)
    elif response.text.strip():
        detail = response.text.strip()[:200]
    return ApiError(status, code, detail, _retry_after(response), body)


def _flatten_detail(raw: object) -> str:
    """FastAPI's validation detail (a list of {loc, msg}) as one line."""
    if isinstance(raw, list):
        parts = []
        for item in raw:
            if isinstance(item, dict):
                where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                parts.append(f"{where}: {item.get('msg', '')}" if where else str(item.get("msg")))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(raw)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:  # absent, or an HTTP date: use our own backoff
        return None


def _retry_delay(err: ClientError, pause: float) -> float:
    if isinstance(err, ApiError) and err.retry_after is not None:
        # the server's hint, within bounds: never a busy loop, never past our own backoff cap
        return min(max(err.retry_after, MIN_BACKOFF), MAX_BACKOFF)
    return pause


def _reason(err: httpx.TransportError) -> str:
    kind = type(err).__name__
    text = str(err)
    return f"{kind}: {text}" if text else kind


def _items(body: Json, key: str) -> list[Json]:
    """A list answer: a bare JSON array (wrapped by `_answer`) or `{key: [...]}`."""
    items = body.get("items", body.get(key))
    if not isinstance(items, list):
        raise BadResponse(f"expected a list of {key}, got {body!r}")
    return items


def _segment(value: str) -> str:
    # MACs keep their colons; anything else that could change the path is escaped
    return quote(value, safe=":")


def normalize_url(url: str) -> str:
    """`127.0.0.1:8080` (as the lab writes it) and `http://h:p/` both become `http://h:p`."""
    url = url.strip().rstrip("/")
    return url if "://" in url else f"http://{url}"
