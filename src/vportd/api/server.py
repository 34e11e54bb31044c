"""Serves an ASGI app with uvicorn inside the caller's event loop, as one cancellable task.

uvicorn's `Server.serve` installs SIGINT/SIGTERM handlers of its own while it
runs (and re-raises the signals afterwards); the daemon owns those signals,
so `_Server` installs none. Stopping is the caller's: cancel the task, and
the server stops listening, lets requests in flight finish (for at most
`grace` seconds; a stream, which never finishes, is ended at once), then
re-raises the cancellation. The socket is bound before
uvicorn starts, so that a port in use raises OSError here instead of
uvicorn's `sys.exit`. uvicorn logs through the standard `logging` tree
(`uvicorn.error`); its access log is off unless asked for.

With `tls` (an SSL context, the daemon's `[tls]`), the API is https only: a
connection that does not open with a TLS handshake (plain http among them) is
closed unanswered.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable, Iterator

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The daemon handles SIGTERM/SIGINT and cancels us: no handlers here.
        yield


class _Corked:
    """A transport whose writes made in one step of the loop leave in one send.

    uvicorn writes an answer's status line and headers, then its body: two
    segments, and the client wakes up for each. On a busy 2-core machine a
    wake-up costs more than the rest of a peer's answer (DESIGN §5).
    """

    def __init__(self, inner: asyncio.Transport) -> None:
        self._inner = inner
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(bytes(data))

    def _flush(self) -> None:
        data, self._pending = b"".join(self._pending), []
        if data and not self._inner.is_closing():
            self._inner.write(data)

    def close(self) -> None:
        self._flush()
        self._inner.close()

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


class _Protocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_Corked(transport))  # type: ignore[arg-type]

    def shutdown(self) -> None:
        # An answer begun and not finished on shutdown is a stream (the dashboard's
        # events; other answers are sent whole): it never finishes, so it would hold
        # the shutdown for the whole grace period. Its connection is closed, which
        # ends it as its client going would.
        cycle = self.cycle
        if cycle is not None and cycle.response_started and not cycle.response_complete:
            self.transport.close()
            return
        super().shutdown()


def parse_listen(listen: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` → (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen address {listen!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=2048)
    # create_server's socket has proto 0, and so do the ones it accepts; asyncio
    # sets TCP_NODELAY only on proto IPPROTO_TCP, so without this every answer
    # (headers, then body: two writes) waits ~40 ms for the client's delayed ACK.
    tcp = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, fileno=sock.detach())
    tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return tcp


async def serve(
    app: ASGIApp,
    listen: str,
    *,
    access_log: bool = False,
    grace: float = 5.0,
    on_listening: Callable[[str, int], None] | None = None,
    tls: ssl.SSLContext | None = None,
) -> None:
    """Serve `app` on `listen` until cancelled (https with `tls`). `on_listening(host, port)`
    once bound."""
    host, port = parse_listen(listen)
    sock = _bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app, log_config=None, access_log=access_log, lifespan="off", http=_Protocol, ws="none",
        timeout_graceful_shutdown=max(1, round(grace)), server_header=False,
        ssl_context_factory=None if tls is None else (lambda _config, _default: tls),
    )  # fmt: skip
    server = _Server(config)
    if on_listening is not None:
        on_listening(bound_host, bound_port)
    try:
        await server.serve(sockets=[sock])
    except asyncio.CancelledError:
        if server.started:
            # Cancelled in the main loop: stop listening and drain, then go on cancelling.
            server.should_exit = True
            await server.shutdown(sockets=[sock])
        raise
    finally:
        sock.close()
