"""The OpenFlow 1.3 listener switches connect to.

`OpenFlowServer.serve` accepts switch connections and runs each as a
`SwitchConnection`, every one a task of the server's `asyncio.TaskGroup`. A
connection's failure ends that connection only.

With `tls` (OVS's `ssl:` controller targets), every connection starts with a
TLS handshake, within the handshake's patience (`Limits.patience`). The
context decides whom to accept: the daemon's requires a client certificate
signed by its CA. A switch whose handshake fails (no certificate, another
CA's, plain OpenFlow) is closed before a byte of OpenFlow is read, with the
reason logged (logger `vportd.openflow`, naming the peer address).
"""

from __future__ import annotations

import asyncio
import ssl

from vportd.southbound.openflow.connection import LOG, Limits, SwitchConnection, SwitchHandler
from vportd.southbound.openflow.wire import HEADER_SIZE


class OpenFlowServer:
    """Listens for switches; `serve()` runs until cancelled.

    `port=0` binds a free port, recorded in `self.port`; `ready` is set once bound.
    `connections` holds the live connections (a TLS one once its handshake is done).
    """

    def __init__(
        self,
        handler: SwitchHandler,
        host: str = "127.0.0.1",
        port: int = 6653,
        *,
        echo_interval: float = 2.0,
        echo_misses: int = 3,
        max_message: int = 65535,
        send_queue: int = 4096,
        reply_timeout: float = 10.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if echo_interval <= 0 or echo_misses < 1 or max_message < HEADER_SIZE or send_queue < 1:
            raise ValueError("echo_interval, echo_misses, max_message and send_queue must be > 0")
        if reply_timeout <= 0:
            raise ValueError("reply_timeout must be > 0")
        self.handler = handler
        self.host, self.port = host, port
        self.limits = Limits(echo_interval, echo_misses, max_message, send_queue, reply_timeout)
        self.tls = tls
        self.connections: set[SwitchConnection] = set()
        self.ready = asyncio.Event()

    async def serve(self) -> None:
        async with asyncio.TaskGroup() as tg:
            server = await asyncio.start_server(
                lambda r, w: self._accept(tg, r, w), self.host, self.port
            )
            try:
                self.port = int(server.sockets[0].getsockname()[1])
                LOG.info("openflow: listening on %s:%d", self.host, self.port)
                self.ready.set()
                await asyncio.Event().wait()  # until cancelled
            finally:
                self.ready.clear()
                server.close()

    def _accept(
        self, tg: asyncio.TaskGroup, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        coro = self._run(reader, writer)
        try:
            tg.create_task(coro)
        except RuntimeError:  # the group is shutting down
            coro.close()
            writer.transport.abort()

    async def _run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tls = self.tls
        if tls is not None and not await _secure(writer, tls, self.limits.patience):
            return
        conn = SwitchConnection(reader, writer, self.handler, self.limits)
        self.connections.add(conn)
        LOG.info("openflow peer %s: connected%s", conn.peer, _tls_version(writer))
        try:
            await conn.run()
        except Exception:
            LOG.exception("openflow peer %s: connection failed", conn.peer)
        finally:
            self.connections.discard(conn)


async def _secure(writer: asyncio.StreamWriter, tls: ssl.SSLContext, patience: float) -> bool:
    """The TLS handshake; False, the reason logged and the connection closed, if it failed."""
    try:
        await writer.start_tls(tls, ssl_handshake_timeout=patience)
    except (OSError, TimeoutError) as err:  # ssl.SSLError is an OSError
        LOG.warning("openflow peer %s: refused: TLS handshake failed: %s", _peer(writer), _why(err))
        writer.transport.abort()
        return False
    return True


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)


def _tls_version(writer: asyncio.StreamWriter) -> str:
    tls = writer.get_extra_info("ssl_object")
    return f" ({tls.version()})" if isinstance(tls, ssl.SSLObject) else ""


# OpenSSL's reasons for the failures a misconfigured switch meets, in words.
_REASONS = {
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "the switch showed no certificate (OVS: set-ssl)",
    "WRONG_VERSION_NUMBER": "not TLS (is the switch's controller target tcp: instead of ssl:?)",
    "HTTP_REQUEST": "not TLS, an HTTP request",
}


def _why(err: BaseException) -> str:
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"certificate refused: {err.verify_message}"
    if isinstance(err, ssl.SSLError):
        reason = err.reason or str(err)
        return f"{_REASONS[reason]} ({reason})" if reason in _REASONS else reason
    if isinstance(err, TimeoutError):
        return "no handshake within the handshake's patience"
    return str(err) or type(err).__name__
