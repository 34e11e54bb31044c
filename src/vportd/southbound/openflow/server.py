"""The OpenFlow 1.3 listener switches connect to.

`OpenFlowServer.serve` accepts switch connections and runs each as a
`SwitchConnection`, every one a task of the server's `asyncio.TaskGroup`. A
connection's failure ends that connection only.
"""

from __future__ import annotations

import asyncio

from vportd.southbound.openflow.connection import LOG, Limits, SwitchConnection, SwitchHandler
from vportd.southbound.openflow.wire import HEADER_SIZE


class OpenFlowServer:
    """Listens for switches; `serve()` runs until cancelled.

    `port=0` binds a free port, recorded in `self.port`; `ready` is set once bound.
    `connections` holds the live connections.
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
    ) -> None:
        if echo_interval <= 0 or echo_misses < 1 or max_message < HEADER_SIZE or send_queue < 1:
            raise ValueError("echo_interval, echo_misses, max_message and send_queue must be > 0")
        if reply_timeout <= 0:
            raise ValueError("reply_timeout must be > 0")
        self.handler = handler
        self.host, self.port = host, port
        self.limits = Limits(echo_interval, echo_misses, max_message, send_queue, reply_timeout)
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
        conn = SwitchConnection(reader, writer, self.handler, self.limits)
        coro = self._run(conn)
        try:
            tg.create_task(coro)
        except RuntimeError:  # the group is shutting down
            coro.close()
            writer.transport.abort()
            return
        self.connections.add(conn)
        LOG.info("openflow peer %s: connected", conn.peer)

    async def _run(self, conn: SwitchConnection) -> None:
        try:
            await conn.run()
        except Exception:
            LOG.exception("openflow peer %s: connection failed", conn.peer)
        finally:
            self.connections.discard(conn)
