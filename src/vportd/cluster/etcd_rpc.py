"""The etcd v3 wire, one level below the store: the channel and its target, errors,
request builders, retries, streams.

Everything talks to aetcd's generated gRPC stubs directly: aetcd's own
wrappers hide what the store needs (the header revision of each watch
response, the compact revision of a cancelled watch, per-call deadlines, the
failure branch of a transaction). The gRPC channel reconnects by itself; what
is retried here is the call that failed while it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from aetcd import rpc
from aetcd.utils import prefix_range_end

from vportd.cluster.etcd_tls import EtcdTLS
from vportd.cluster.store import Fenced, LeaseLost, StoreError, Transient

log = logging.getLogger("vportd.etcd")

T = TypeVar("T")
Msg = Any  # a protobuf message of aetcd.rpc (untyped)

# Reconnect fast: gRPC's default backoff grows to 2 minutes, far past a lease TTL.
CHANNEL_OPTIONS: dict[str, Any] = {
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 500,
    # A hung (not closed) connection is noticed; etcd allows pings every 5 s.
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.keepalive_permit_without_calls": 1,
    # A full read of 10,000 records is a few MB; gRPC refuses over 4 MB by default.
    "grpc.max_receive_message_length": 256 * 1024 * 1024,
}


def channel(target: str, tls: EtcdTLS | None, interceptors: Sequence[Any] = ()) -> Any:
    """A gRPC channel to `target` (it connects, and reconnects, by itself): TLS with `tls`."""
    options = list(CHANNEL_OPTIONS.items())
    if tls is None:
        return rpc.insecure_channel(target, options=options, interceptors=list(interceptors))
    ca, key, cert = tls.pem()
    credentials = grpc.ssl_channel_credentials(ca, key, cert)
    return rpc.secure_channel(target, credentials, options=options, interceptors=list(interceptors))


class Compacted(StoreError):
    """The revision asked for is gone from etcd's history: only a full read helps."""

    def __init__(self, revision: int, detail: str = "") -> None:
        super().__init__(detail or f"revision compacted (etcd keeps history from {revision})")
        self.revision = revision


def translate(err: rpc.AioRpcError, what: str) -> StoreError:
    """The store's exception for a gRPC error of call `what`."""
    code, detail = err.code(), err.details() or ""
    if code in (rpc.StatusCode.UNAVAILABLE, rpc.StatusCode.DEADLINE_EXCEEDED):
        return Transient(f"{what}: {code.name}: {detail}")
    if code == rpc.StatusCode.NOT_FOUND and "lease not found" in detail:
        return LeaseLost(f"{what}: {detail}")
    if code == rpc.StatusCode.OUT_OF_RANGE and "compacted" in detail:
        return Compacted(0)
    return StoreError(f"{what}: {code.name}: {detail}")


class Backoff:
    """Jittered exponential delays between attempts, reset after a success."""

    def __init__(self, first: float = 0.05, cap: float = 1.0) -> None:
        self.first, self.cap, self.attempts = first, cap, 0

    def next(self) -> float:
        delay = min(self.cap, self.first * 2.0**self.attempts)
        self.attempts += 1
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.attempts = 0


async def retrying(what: str, call: Callable[[], Awaitable[T]], patience: float) -> T:
    """`call()`, tried again on transient errors for up to `patience` seconds."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + patience
    backoff = Backoff()
    while True:
        try:
            return await call()
        except rpc.AioRpcError as err:
            error = translate(err, what)
        if not isinstance(error, Transient) or loop.time() >= give_up:
            raise error
        delay = backoff.next()
        log.info("%s failed (%s); retrying in %.2f s", what, error, delay)
        await asyncio.sleep(delay)


# -- requests ---------------------------------------------------------------
def put_op(key: bytes, value: bytes, lease: int = 0) -> Msg:
    return rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value, lease=lease))


def range_op(key: bytes) -> Msg:
    return rpc.RequestOp(request_range=rpc.RangeRequest(key=key))


def delete_op(key: bytes) -> Msg:
    return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key))


def created_at(key: bytes, revision: int) -> Msg:
    """Compare: the key's create_revision is `revision` (0: the key does not exist)."""
    return rpc.Compare(
        key=key, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=revision
    )


def modified_at(key: bytes, revision: int) -> Msg:
    return rpc.Compare(
        key=key, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=revision
    )


def txn_request(compare: Sequence[Msg], success: Sequence[Msg], failure: Sequence[Msg]) -> Msg:
    return rpc.TxnRequest(compare=list(compare), success=list(success), failure=list(failure))


def range_kvs(response: Msg) -> list[Msg]:
    """The key-values of one range answer inside a transaction's responses."""
    return list(response.response_range.kvs)


@dataclass(frozen=True)
class Stubs:
    """The gRPC stubs of one channel, and the deadline of each unary call."""

    kv: Any
    lease: Any
    watch: Any
    timeout: float

    @classmethod
    def of(cls, channel: Any, timeout: float) -> Stubs:
        return cls(rpc.KVStub(channel), rpc.LeaseStub(channel), rpc.WatchStub(channel), timeout)

    async def txn(self, request: Msg) -> Msg:
        return await self.kv.Txn(request, timeout=self.timeout)

    async def range_prefix(self, prefix: bytes, page: int = 1000) -> tuple[list[Msg], int]:
        """Every key-value under `prefix`, paged, all read at one revision."""
        end, start, revision = prefix_range_end(prefix), prefix, 0
        found: list[Msg] = []
        while True:
            req = rpc.RangeRequest(key=start, range_end=end, limit=page, revision=revision)
            resp = await self.kv.Range(req, timeout=self.timeout)
            revision = revision or int(resp.header.revision)
            found.extend(resp.kvs)
            if not resp.more:
                return found, revision
            start = bytes(resp.kvs[-1].key) + b"\0"


@contextlib.asynccontextmanager
async def watch_stream(stubs: Stubs, prefix: bytes, start: int) -> AsyncIterator[Any]:
    """An open watch on every key under `prefix` from revision `start`; iterate the call."""
    create = rpc.WatchCreateRequest(
        key=prefix,
        range_end=prefix_range_end(prefix),
        start_revision=start,
        # Progress answers move the resume point on while other prefixes change.
        progress_notify=True,
    )
    call = stubs.watch.Watch()
    try:
        await call.write(rpc.WatchRequest(create_request=create))
        yield call
    finally:
        call.cancel()


def check_watch(response: Msg, what: str) -> None:
    """Raise if a watch answer ends the watch (compaction, cancellation)."""
    if response.compact_revision:
        raise Compacted(int(response.compact_revision))
    if response.canceled:
        raise Transient(f"{what}: watch cancelled by etcd: {response.cancel_reason or 'no reason'}")


def is_delete(event: Msg) -> bool:
    return bool(event.type == rpc.Event.DELETE)


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception a caller should see from a group: a lost role before anything else."""
    flat = list(leaves(group))
    return next((e for e in flat if isinstance(e, Fenced | LeaseLost)), flat[0])


def leaves(group: BaseExceptionGroup[BaseException]) -> Iterable[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from leaves(exc)
        else:
            yield exc


def grpc_target(endpoints: list[str]) -> str:
    """The gRPC target for `endpoints`: one HOST:PORT, or several IPv4 ones for failover."""
    if len(endpoints) == 1:
        return endpoints[0]
    for endpoint in endpoints:
        try:
            ipaddress.IPv4Address(endpoint.rpartition(":")[0])
        except ValueError:
            raise ValueError(
                f"several etcd endpoints must be IPv4 HOST:PORT, not {endpoint!r}"
                " (give one DNS name with every member's address instead)"
            ) from None
    # gRPC's ipv4: scheme takes a list of addresses and fails over between them.
    return "ipv4:" + ",".join(endpoints)
