"""Keeps a controller's etcd lease alive from a thread of its own.

The controller's event loop can be busy for a second at a time (a boot storm:
thousands of ports fed, their flows encoded, on a machine whose cores it
shares). A renewal made from that loop needs several of its turns and comes
late: a loaded controller would lose its lease and every role with it. The
renewer makes blocking calls in a thread, and renews only while the event
loop shows it is alive: a wedged controller still loses its roles within a TTL.

The calls go to etcd's JSON gateway (`POST /v3/lease/keepalive`, on the
client port), not through gRPC: once grpc.aio runs in a process, a blocking
gRPC call in another thread waits for the asyncio loop, which is the very
thing that must not matter here.

Lost means etcd says so, or no renewal was answered for a whole TTL (counted
from when the last answered one was sent): past that, etcd may have expired
it and another controller may hold our roles.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import NoReturn

from vportd.cluster.etcd_rpc import Backoff
from vportd.cluster.store import LeaseLost, Transient

log = logging.getLogger("vportd.etcd")

BEAT = 0.25  # seconds between the event loop's signs of life


class _Heartbeat:
    """The time the event loop last ran a timer: a plain callback, so one turn of a busy
    loop is enough (a coroutine would need several)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop, self._at = loop, time.monotonic()
        self._handle = loop.call_later(BEAT, self._tick)

    def _tick(self) -> None:
        self._at = time.monotonic()
        self._handle = self._loop.call_later(BEAT, self._tick)

    def last(self) -> float:
        return self._at

    def stop(self) -> None:
        self._handle.cancel()


class LeaseRenewer:
    """Renews leases every ttl/3 from a thread, on the first of `endpoints` (HOST:PORT)
    that answers."""

    def __init__(
        self,
        endpoints: Sequence[str],
        ttl: int,
        call_timeout: float,
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.endpoints = list(endpoints)
        self.ttl, self.call_timeout = ttl, call_timeout
        self.tls = tls  # https to the gateway, as the gRPC channel (`cluster.etcd_tls`)

    async def keep_alive(self, lease: int) -> NoReturn:
        """Keep `lease` alive until it is lost, then raise LeaseLost; cancel to stop."""
        beat = _Heartbeat(asyncio.get_running_loop())
        stop = threading.Event()
        renewing = asyncio.ensure_future(asyncio.to_thread(self._renew, lease, beat.last, stop))
        try:
            raise await renewing
        finally:
            beat.stop()
            stop.set()
            # The thread ends within one call's timeout; it must not outlive the session.
            await asyncio.shield(renewing)

    def _renew(self, lease: int, alive: Callable[[], float], stop: threading.Event) -> LeaseLost:
        try:
            self._renewing(lease, alive, stop)
        except LeaseLost as lost:
            return lost
        return LeaseLost(f"lease {lease:x}: renewals stopped")

    def _renewing(self, lease: int, alive: Callable[[], float], stop: threading.Event) -> None:
        expires = time.monotonic() + self.ttl
        backoff = Backoff(first=0.05, cap=self.ttl / 6)
        at = 0  # which endpoint
        while not stop.is_set():
            now = time.monotonic()
            if now >= expires:
                raise LeaseLost(f"lease {lease:x}: no keepalive answered for {self.ttl} s")
            if now - alive() > self.ttl:
                stop.wait(BEAT)  # the event loop is wedged: let the lease go
                continue
            endpoint = self.endpoints[at % len(self.endpoints)]
            try:
                timeout = min(self.call_timeout, expires - now)
                granted = _keepalive(endpoint, lease, timeout, self.tls)
            except Transient as err:
                self._failed(lease, err, expires, backoff)
                at += 1
                stop.wait(min(backoff.next(), max(0.0, expires - time.monotonic())))
                continue
            if granted <= 0:
                raise LeaseLost(f"lease {lease:x} expired or was revoked")
            if backoff.attempts:
                log.info("lease %x: keepalive answered again", lease)
            backoff.reset()
            expires = now + granted
            stop.wait(self.ttl / 3)

    def _failed(self, lease: int, err: Transient, expires: float, backoff: Backoff) -> None:
        """Raise LeaseLost if this failure loses the lease; else log the first of a run."""
        left = expires - time.monotonic()
        if left <= 0:
            raise LeaseLost(f"lease {lease:x}: no keepalive answered for {self.ttl} s: {err}")
        if not backoff.attempts:
            log.warning("lease %x: keepalive failed (%s); %.2f s left on it", lease, err, left)


def _keepalive(endpoint: str, lease: int, timeout: float, tls: ssl.SSLContext | None) -> int:
    """One renewal through etcd's gateway: the TTL granted anew (0: the lease is gone)."""
    host, _, port = endpoint.rpartition(":")
    host, wait = host.strip("[]"), max(0.05, timeout)
    conn = (
        http.client.HTTPConnection(host, int(port), timeout=wait)
        if tls is None
        else http.client.HTTPSConnection(host, int(port), timeout=wait, context=tls)
    )
    try:
        body = json.dumps({"ID": str(lease)})
        conn.request("POST", "/v3/lease/keepalive", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        answer = json.loads(response.read())
    except (OSError, http.client.HTTPException, ValueError) as err:
        raise Transient(f"keepalive via {endpoint}: {type(err).__name__}: {err}") from None
    finally:
        conn.close()
    if response.status != 200 or not isinstance(answer, dict) or "result" not in answer:  # noqa: PLR2004
        raise Transient(f"keepalive via {endpoint}: HTTP {response.status}: {str(answer)[:200]}")
    return int(answer["result"].get("TTL", 0))  # etcd leaves a zero TTL out
