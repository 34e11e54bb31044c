"""A fuzz connection to a controller's OpenFlow port, on a raw socket, and what the log says.

`session` carries out one `ofmutate.Plan`: it sends the plan's first bytes,
answers the handshake's two requests (FEATURES_REQUEST, the PORT_DESC
multipart) with the plan's replies, xids filled in, then sends the other
messages one at a time. After each, while the stream is in step (every
byte sent belongs to a whole message, as the controller frames them), an
ECHO_REQUEST of its own asks whether the controller read past it: an echo
reply says it did (the message was *taken*), the end of the stream that it
refused it (or one of the handshake's replies before it). A message that
leaves the stream out of step (a length beyond what was sent) is the last:
the fuzzer shuts its side and the controller finds the message truncated.
Each fuzz message sent has one verdict, and nothing is sent after a refusal.

`CloseLog`, a handler on the `vportd` loggers, keeps the reason the
endpoint logged for each connection it closed (by the peer address it
names), the switches it replaced (a new connection with the same datapath
id), and every record that carries an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import struct
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

from os_ken.ofproto import ofproto_v1_3 as ofp

from tests.fuzz.ofmutate import PENDING, Plan, framed, hide_dpids
from vportd.southbound.openflow import incoming, outgoing, wire

PATIENCE = 15.0  # for the controller to answer or to close: generous, never a threshold
PROBE_XID = 0xEC400000  # the fuzzer's own echo requests count up from here
_CLOSING = re.compile(
    r"^openflow peer (?P<peer>\S+)(?: \(dpid (?P<dpid>[0-9a-f]+)\))?: closing: (?P<reason>.*)$",
    re.DOTALL,
)
REPLACED = "replaced by a new connection from the same switch"
BY_THE_PEER = "connection closed by the peer"


class CloseLog(logging.Handler):
    """What the controller logged (module docstring). `with CloseLog.installed() as log`."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.closings: dict[str, list[str]] = defaultdict(list)  # peer -> reasons, in order
        self.replaced: list[str] = []  # dpids of connections replaced by another
        self.exceptions: list[str] = []  # records with a traceback

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.exceptions.append(f"{record.name}: {record.getMessage()}")
        found = _CLOSING.match(record.getMessage())
        if found is None:
            return
        self.closings[found["peer"]].append(found["reason"])
        if found["reason"] == REPLACED:
            self.replaced.append(found["dpid"] or "?")

    @classmethod
    @contextlib.contextmanager
    def installed(cls) -> Iterator[CloseLog]:
        """A handler on `vportd`'s loggers, INFO and up, for the block's duration."""
        handler = cls()
        logger = logging.getLogger("vportd")
        level = logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            yield handler
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)


@dataclass
class Outcome:
    """How one fuzz connection went."""

    plan: Plan
    peer: str = "?"  # its address, as the endpoint names it
    fuzzed: int = 0  # fuzz messages sent
    taken: int = 0  # of those, read past by the controller (an echo answered after them)
    closed: bool = False  # the controller closed the connection within PATIENCE
    connected: bool = False  # it got through the handshake
    hidden: int = 0  # FEATURES_REPLYs naming a real switch, made to name a stranger
    sent: bytearray = field(default_factory=bytearray)


class _Peer:
    """The fuzz side of one connection."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, outcome: Outcome,
        known: set[int], stranger: int,
    ) -> None:  # fmt: skip
        self.reader, self.writer, self.outcome = reader, writer, outcome
        self.known, self.stranger = known, stranger
        self.heard: asyncio.Queue[tuple[int, int, bytes] | None] = asyncio.Queue()
        self.ended = False  # the controller's end of stream came
        self.last_xid = 0  # of the message `next` found

    async def read(self) -> None:
        """Every message the controller sends, into `heard`; None at its end of stream."""
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await self.reader.readexactly(wire.HEADER_SIZE)
                header = wire.parse_header(head)
                body = await self.reader.readexactly(max(header.length - wire.HEADER_SIZE, 0))
                self.heard.put_nowait((header.msg_type, header.xid, head + body))
        self.heard.put_nowait(None)

    def send(self, piece: bytes, *, fuzzed: bool = False) -> None:
        piece, hidden = hide_dpids(bytes(self.outcome.sent), piece, self.known, self.stranger)
        self.outcome.hidden += hidden
        self.outcome.sent += piece
        self.outcome.fuzzed += fuzzed
        if not self.writer.is_closing():
            self.writer.write(piece)

    @property
    def in_step(self) -> bool:
        """Every byte sent is part of a whole message (as the controller frames them)."""
        sent = bytes(self.outcome.sent)
        messages = framed(sent)
        return bool(messages) and sum(length for _, length in messages) == len(sent)

    async def next(self, wanted: tuple[int, int | None, int | None]) -> bool:
        """Until the controller sends a message of (type, multipart type, xid) — True — or
        ends the stream — False. None in `wanted` matches anything."""
        kind, multipart, xid = wanted
        if self.ended:
            return False
        async with asyncio.timeout(PATIENCE):
            while (got := await self.heard.get()) is not None:
                t, x, data = got
                if t == kind and multipart in (None, _mp_type(data)) and xid in (None, x):
                    self.last_xid = x
                    return True
        self.ended = True
        return False

    async def handshake(self, plan: Plan) -> None:
        assert plan.features is not None
        if not await self.next((ofp.OFPT_FEATURES_REQUEST, None, None)):
            return
        xid = self.last_xid
        self.send(_with_xid(plan.features, xid), fuzzed=plan.features_fuzzed)
        if not _answers(plan.features, xid):
            return  # the controller will not go on to ask for the ports
        if not await self.next((ofp.OFPT_MULTIPART_REQUEST, ofp.OFPMP_PORT_DESC, None)):
            return
        xid = self.last_xid
        for n, part in enumerate(plan.port_desc):
            self.send(_with_xid(part, xid), fuzzed=n in plan.port_desc_fuzzed)
        self.outcome.connected = True

    async def probe(self, n: int) -> bool:
        """Whether the controller read past everything sent (module docstring)."""
        xid = PROBE_XID + n
        self.send(wire.serialize(outgoing.echo_request(b"probe"), xid))
        await self.writer.drain()
        return await self.next((ofp.OFPT_ECHO_REPLY, None, xid))


def _mp_type(data: bytes) -> int | None:
    if len(data) < wire.HEADER_SIZE + 2:
        return None
    return int(struct.unpack_from("!H", data, wire.HEADER_SIZE)[0])


def _with_xid(message: bytes, xid: int) -> bytes:
    """A reply with the request's xid, unless a mutation changed (or cut) the placeholder."""
    if len(message) < wire.HEADER_SIZE or message[4:8] != PENDING.to_bytes(4, "big"):
        return message
    return message[:4] + xid.to_bytes(4, "big") + message[8:]


def _answers(features: bytes, xid: int) -> bool:
    """Whether the controller will take this as the reply to its FEATURES_REQUEST."""
    data = _with_xid(features, xid)
    messages = framed(data)
    if not messages or messages[0][1] > len(data):
        return False
    data = data[: messages[0][1]]
    header = wire.parse_header(data)
    if header.version != ofp.OFP_VERSION or header.xid != xid:
        return False
    try:
        return isinstance(incoming.decode_message(header, data), incoming.FeaturesReply)
    except wire.CodecError:
        return False


async def _carry_out(peer: _Peer, plan: Plan) -> None:
    peer.send(plan.first, fuzzed=plan.first_fuzzed)
    if plan.features is not None:
        await peer.handshake(plan)
    if plan.first_fuzzed or not peer.in_step or not await peer.probe(0):
        return  # the controller refused what came before (or is still reading it)
    peer.outcome.taken += peer.outcome.fuzzed  # the handshake's fuzzed replies
    for n, message in enumerate(plan.messages, start=1):
        peer.send(message, fuzzed=True)
        if not peer.in_step or not await peer.probe(n):
            return
        peer.outcome.taken += 1


async def session(port: int, plan: Plan, known: set[int], stranger: int) -> Outcome:
    """Carry out `plan` on a new connection to 127.0.0.1:`port` (module docstring)."""
    outcome = Outcome(plan)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    host, local = writer.get_extra_info("sockname")[:2]
    outcome.peer = f"{host}:{local}"
    peer = _Peer(reader, writer, outcome, known, stranger)
    async with asyncio.TaskGroup() as tg:
        reading = tg.create_task(peer.read())
        try:
            with contextlib.suppress(OSError):  # the controller may close before we are done
                await _carry_out(peer, plan)
                await writer.drain()
                if not writer.is_closing():
                    writer.write_eof()
            await asyncio.wait([reading], timeout=PATIENCE)
            outcome.closed = reading.done()
        finally:
            reading.cancel()
            writer.transport.abort()
    return outcome
