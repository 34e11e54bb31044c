"""etcd's own authentication (users and roles): a user name and password, and the token
etcd gives for them, sent with every gRPC call.

The token is asked for on the first call (etcd may start after the
controller) and again when etcd says it is no longer valid (it expired, or
etcd restarted): a unary call is then made once more with the new one. A
watch opened with a stale token fails and is opened again by its follower,
after the next call has logged in again. The lease renewals go to etcd's
gateway without a token: etcd does not check permissions on a keepalive.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from aetcd import rpc

from vportd.cluster.store import Transient

Call = Any  # a grpc.aio call (untyped)

AUTHENTICATE = "/etcdserverpb.Auth/Authenticate"
# etcd's answers to a wrong user name or password, or to a login while auth is off
REFUSED = (rpc.StatusCode.INVALID_ARGUMENT, rpc.StatusCode.FAILED_PRECONDITION)


class LoginRefused(Transient):
    """etcd refused the user name or password: a configuration to fix (at start the
    controller exits; later, while it runs, its calls fail and are tried again)."""


class EtcdLogin(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    """Adds `("token", TOKEN)` to every call on a channel, logging in when needed."""

    def __init__(self, user: str, password: str, timeout: float) -> None:
        self.user, self._password, self._timeout = user, password, timeout
        self.token: str | None = None
        self.channel: Any = None  # set once the channel that carries the login exists
        self._lock = asyncio.Lock()

    async def login(self, stale: str | None = None) -> str:
        """A valid token: a new one unless another call already replaced `stale`."""
        async with self._lock:
            if self.token is not None and self.token != stale:
                return self.token
            request = rpc.AuthenticateRequest(name=self.user, password=self._password)
            try:
                answer = await rpc.AuthStub(self.channel).Authenticate(
                    request, timeout=self._timeout
                )
            except rpc.AioRpcError as err:
                if err.code() in REFUSED:
                    raise LoginRefused(
                        f"etcd refused user {self.user!r}: {err.details()}"
                    ) from None
                raise
            self.token = str(answer.token)
            return self.token

    def _details(self, details: Any, token: str) -> Any:
        metadata = [*(details.metadata or ()), ("token", token)]
        return details._replace(metadata=grpc.aio.Metadata(*metadata))

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Call:
        if details.method in (AUTHENTICATE, AUTHENTICATE.encode()):
            return await continuation(details, request)
        token = self.token or await self.login()
        call = await continuation(self._details(details, token), request)
        try:
            await call
        except rpc.AioRpcError as err:
            if not invalid_token(err):
                raise
            token = await self.login(stale=token)
            return await continuation(self._details(details, token), request)
        return call

    async def intercept_stream_stream(
        self, continuation: Any, details: Any, request_iterator: Any
    ) -> Call:
        token = self.token or await self.login()
        return await continuation(self._details(details, token), request_iterator)


def invalid_token(err: rpc.AioRpcError) -> bool:
    return bool(err.code() == rpc.StatusCode.UNAUTHENTICATED) or "invalid auth token" in (
        err.details() or ""
    )
