"""What the OpenFlow fuzzer sends: valid switch messages, their mutations, random bytes.

`corpus` builds the messages a switch sends (as `FakeSwitch` sends them,
from `tests.fakes.ofwire`): HELLO, FEATURES_REPLY, PORT_DESC replies,
PORT_STATUS, PACKET_IN (an ARP announcement, an LLDP probe, a plain frame),
ECHO request and reply, BARRIER_REPLY, FLOW_STATS replies (a real switch's
flows), ERROR, ROLE_REPLY and a few the controller does not act on. A reply
to a request the controller will make carries `PENDING` as its xid; the
session puts the request's xid in its place, unless a mutation changed it.

`mutate` applies one to three operators to a message: flip bits, set a byte,
a 16- or 32-bit field to a boundary value, change the header's length,
type, version or xid, truncate, extend, splice with another message, repeat
it. Most mutations then make the header's length tell the truth again, so
that the stream stays in step and the body's own fields are what is tested.
`raw` makes what is not OpenFlow at all: random bytes, truncated headers,
lengths below 8 or far beyond the data, wrong versions, a first message that
is not HELLO. `plan` draws one session (`Plan`). All of it is a function of
a `random.Random`: a run is repeatable.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofpp

from tests.fakes import ofwire
from tests.fakes.oftable import FlowEntry
from tests.fakes.ofwire import Port
from vportd.southbound import frames
from vportd.southbound.openflow import outgoing, wire

PENDING = 0xFEEDF00D  # the xid of a reply to a request not made yet
_HEADER = struct.Struct("!BBHI")
_U16, _U32 = struct.Struct("!H"), struct.Struct("!I")
_BOUNDARY_16 = (0, 1, 4, 7, 8, 9, 15, 16, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF)
_BOUNDARY_32 = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFF00, 0xFFFFFFFD, 0xFFFFFFFF)
_MAX_LENGTH = 0xFFFF


@dataclass(frozen=True)
class Corpus:
    """Valid messages by kind, and the replies to the handshake's two requests."""

    messages: dict[str, list[bytes]]
    features: bytes  # FEATURES_REPLY, xid PENDING
    port_desc: list[bytes]  # the PORT_DESC reply's parts, xid PENDING

    def every(self) -> list[bytes]:
        return [m for kind in sorted(self.messages) for m in self.messages[kind]]


def _gratuitous_arp(mac: str) -> bytes:
    raw = bytes.fromhex(mac.replace(":", ""))
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, raw, bytes(4), raw, bytes(4))
    return b"\xff" * 6 + raw + _U16.pack(frames.ETH_ARP) + arp


def _frames(mac: str, dpid: int) -> list[bytes]:
    plain = bytes.fromhex("02000000ee01") + bytes.fromhex(mac.replace(":", "")) + b"\x08\x00"
    return [_gratuitous_arp(mac), frames.build_lldp(dpid, 100), plain + bytes(46)]


def corpus(dpid: int, ports: Sequence[Port], flows: Sequence[FlowEntry], vm_mac: str) -> Corpus:
    """The messages a switch with these ports and flows sends (module docstring)."""
    port = ports[0]
    stats = [ofwire.flow_stats_entry(e) for e in flows] or [b""]
    messages = {
        "hello": [ofwire.hello((ofp.OFP_VERSION,)), ofwire.hello((1, 3, 4))],
        "port status": [
            ofwire.port_status(reason, Port(port.no, port.name, port.mac, up))
            for reason in (ofp.OFPPR_ADD, ofp.OFPPR_MODIFY, ofp.OFPPR_DELETE)
            for up in (True, False)
        ],
        "packet in": [
            ofwire.packet_in(port.no, frame, ofp.OFPR_ACTION, 0, 0xFFFF_FFFF_FFFF_FFFF)
            for frame in _frames(vm_mac, dpid)
        ],
        "echo": [
            wire.serialize(outgoing.echo_request(b"fuzz"), 7),
            wire.serialize(ofpp.OFPEchoReply(wire.DATAPATH, b"fuzz"), PENDING),
        ],
        "barrier reply": [wire.serialize(ofpp.OFPBarrierReply(wire.DATAPATH), PENDING)],
        "flow stats reply": ofwire.multipart_replies(ofp.OFPMP_FLOW, stats, PENDING, 1024),
        "error": [
            ofwire.error(ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_TABLE_FULL, bytes(64), PENDING),
            ofwire.error(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_IS_SLAVE, bytes(16), PENDING),
            ofwire.error(ofp.OFPET_ROLE_REQUEST_FAILED, ofp.OFPRRFC_STALE, bytes(24), PENDING),
            ofwire.error(ofp.OFPET_EXPERIMENTER, 0, bytes(8), 0),
        ],
        "role reply": [ofwire.role_reply(ofp.OFPCR_ROLE_MASTER, 5, PENDING)],
        "features reply": [ofwire.features_reply(dpid, 254, PENDING)],
        "port desc reply": ofwire.multipart_replies(
            ofp.OFPMP_PORT_DESC, [p.wire() for p in ports], PENDING
        ),
        "other": [
            ofwire.async_reply((0b011, 0, 0b111, 0b111, 0b1111, 0), PENDING),
            ofwire.config_reply(PENDING),
            *ofwire.multipart_replies(ofp.OFPMP_DESC, [ofwire.desc_entry()], PENDING),
        ],
    }
    return Corpus(messages, messages["features reply"][0], messages["port desc reply"])


# -- operators ------------------------------------------------------------------------
Operator = Callable[[random.Random, bytearray, Sequence[bytes]], bytearray]


def _flip_bits(rng: random.Random, data: bytearray, _: Sequence[bytes]) -> bytearray:
    for _n in range(rng.choice((1, 1, 2, 4, 8))):
        if data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return data


def _set_byte(rng: random.Random, data: bytearray, _: Sequence[bytes]) -> bytearray:
    if data:
        data[rng.randrange(len(data))] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
    return data


def _set_field(rng: random.Random, data: bytearray, _: Sequence[bytes]) -> bytearray:
    """A 16- or 32-bit field, aligned as OpenFlow's are, to a boundary value."""
    wide = rng.random() < 0.4
    size = 4 if wide else 2
    if len(data) < size:
        return data
    at = rng.randrange(0, len(data) - size + 1, size if len(data) >= size * 2 else 1)
    packer, values = (_U32, _BOUNDARY_32) if wide else (_U16, _BOUNDARY_16)
    packer.pack_into(data, at, rng.choice(values))
    return data


def _header_field(index: int) -> Operator:
    def change(rng: random.Random, data: bytearray, corpus: Sequence[bytes]) -> bytearray:
        if len(data) < wire.HEADER_SIZE:
            return data
        fields = list(_HEADER.unpack_from(data))
        fields[index] = _header_value(rng, index, fields[index], len(data))
        _HEADER.pack_into(data, 0, *fields)
        return data

    return change


def _header_value(rng: random.Random, index: int, old: int, size: int) -> int:
    if index == 0:  # version
        return rng.choice((0, 1, 3, 5, 6, 0x7F, 0xFF, old ^ 1))
    if index == 1:  # type
        return rng.choice((rng.randrange(36), rng.randrange(256), ofp.OFPT_FEATURES_REPLY))
    if index == 2:
        return rng.choice(
            (0, 1, 7, 8, size - 1, size + 1, size + rng.randrange(1, 64), _MAX_LENGTH,
             rng.randrange(_MAX_LENGTH + 1))
        ) % (_MAX_LENGTH + 1)  # fmt: skip
    return rng.choice((0, 1, 2, 3, PENDING, 0xFFFFFFFF, rng.randrange(1 << 32)))  # xid


def _truncate(rng: random.Random, data: bytearray, _: Sequence[bytes]) -> bytearray:
    return data[: rng.randrange(len(data) + 1)] if data else data


def _extend(rng: random.Random, data: bytearray, _: Sequence[bytes]) -> bytearray:
    extra = rng.choice((1, 4, 8, 64, rng.randrange(1, 512)))
    return data + bytearray(rng.getrandbits(8) for _ in range(extra))


def _splice(rng: random.Random, data: bytearray, corpus: Sequence[bytes]) -> bytearray:
    other = rng.choice(corpus)
    return data[: rng.randrange(len(data) + 1)] + bytearray(other[rng.randrange(len(other)) :])


def _repeat(rng: random.Random, data: bytearray, _: Sequence[bytes]) -> bytearray:
    return data * rng.choice((2, 3))


def _zero_tail(rng: random.Random, data: bytearray, _: Sequence[bytes]) -> bytearray:
    if len(data) > wire.HEADER_SIZE:
        at = rng.randrange(wire.HEADER_SIZE, len(data))
        data[at:] = bytes(len(data) - at)
    return data


_LENGTH_OPERATORS = (_header_field(2),)
OPERATORS: dict[str, Operator] = {
    "flip bits": _flip_bits, "set byte": _set_byte, "set field": _set_field,
    "version": _header_field(0), "type": _header_field(1), "length": _LENGTH_OPERATORS[0],
    "xid": _header_field(3), "truncate": _truncate, "extend": _extend, "splice": _splice,
    "repeat": _repeat, "zero tail": _zero_tail,
}  # fmt: skip
_NAMES = sorted(OPERATORS)


def mutate(rng: random.Random, message: bytes, corpus: Sequence[bytes]) -> tuple[bytes, list[str]]:
    """A mutation of `message` (module docstring) and the operators applied."""
    data = bytearray(message)
    names = [rng.choice(_NAMES) for _ in range(rng.choice((1, 1, 1, 2, 3)))]
    for name in names:
        data = OPERATORS[name](rng, data, corpus)
    if "length" not in names and "repeat" not in names and rng.random() < 0.75:
        _tell_length(data)
    return bytes(data), names


def _tell_length(data: bytearray) -> None:
    if wire.HEADER_SIZE <= len(data) <= _MAX_LENGTH:
        _U16.pack_into(data, 2, len(data))


# -- not OpenFlow at all -------------------------------------------------------------------
def _random_bytes(rng: random.Random, corpus: Sequence[bytes]) -> bytes:
    return rng.randbytes(rng.choice((1, 7, 8, 9, 64, rng.randrange(1, 4096))))


def _truncated_header(rng: random.Random, corpus: Sequence[bytes]) -> bytes:
    return rng.choice(corpus)[: rng.randrange(1, wire.HEADER_SIZE)]


def _short_length(rng: random.Random, corpus: Sequence[bytes]) -> bytes:
    return _HEADER.pack(ofp.OFP_VERSION, ofp.OFPT_HELLO, rng.randrange(wire.HEADER_SIZE), 0)


def _length_beyond(rng: random.Random, corpus: Sequence[bytes]) -> bytes:
    length = rng.choice((_MAX_LENGTH, rng.randrange(64, _MAX_LENGTH)))
    head = _HEADER.pack(ofp.OFP_VERSION, rng.choice((0, 6, 19, 12)), length, 1)
    return head + rng.randbytes(rng.randrange(length - wire.HEADER_SIZE))


def _wrong_version(rng: random.Random, corpus: Sequence[bytes]) -> bytes:
    version = rng.choice((0, 1, 2, 3, 5, 6, 0x7F, 0xFF))
    if rng.random() < 0.5:
        return _HEADER.pack(version, ofp.OFPT_HELLO, wire.HEADER_SIZE, 0)
    offered = [v for v in range(1, 7) if v != ofp.OFP_VERSION and rng.random() < 0.5]
    hello = bytearray(ofwire.hello(offered or [1]))
    hello[0] = version
    return bytes(hello)


def _not_hello_first(rng: random.Random, corpus: Sequence[bytes]) -> bytes:
    return rng.choice([m for m in corpus if m[1] != ofp.OFPT_HELLO])


RAW: dict[str, Callable[[random.Random, Sequence[bytes]], bytes]] = {
    "random bytes": _random_bytes, "truncated header": _truncated_header,
    "length below 8": _short_length, "length beyond the data": _length_beyond,
    "wrong version": _wrong_version, "first message not HELLO": _not_hello_first,
}  # fmt: skip


# -- sessions ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """One fuzz connection: what it sends; `fuzzed` marks what is mutated or random.

    `first` goes at once; then, if `features` is set, it answers the
    controller's FEATURES_REQUEST with it and its PORT_DESC request with
    `port_desc` (the handshake, fuzzed or not); then `messages`, one at a
    time (`ofpeer`); then it shuts its side.
    """

    kind: str
    first: bytes
    features: bytes | None = None
    port_desc: tuple[bytes, ...] = ()
    messages: tuple[bytes, ...] = ()
    first_fuzzed: bool = False
    features_fuzzed: bool = False
    port_desc_fuzzed: frozenset[int] = frozenset()  # which parts
    operators: tuple[str, ...] = field(default=())


KINDS = ("raw", "before the handshake", "in the handshake", "after the handshake")
_WEIGHTS = (2, 2, 2, 4)


def plan(rng: random.Random, corpus: Corpus, stranger: int) -> Plan:
    """One session of a random kind; `stranger` is a dpid no switch has."""
    kind = rng.choices(KINDS, _WEIGHTS)[0]
    every = corpus.every()
    hello = corpus.messages["hello"][0]
    if kind == "raw":
        name = rng.choice(sorted(RAW))
        return Plan(kind, RAW[name](rng, every), first_fuzzed=True, operators=(name,))
    count = rng.choice((1, 2, 4, 8, rng.randrange(1, 17)))
    mutated = [mutate(rng, rng.choice(every), every) for _ in range(count)]
    messages = tuple(m for m, _ in mutated)
    ops = tuple(op for _, names in mutated for op in names)
    if kind == "before the handshake":
        return Plan(kind, hello, messages=messages, operators=ops)
    features = with_dpid(corpus.features, stranger)
    if kind == "after the handshake":
        return Plan(kind, hello, features, tuple(corpus.port_desc), messages, operators=ops)
    return _in_handshake(rng, corpus, features, hello=hello, messages=messages, ops=ops)


def _in_handshake(
    rng: random.Random, corpus: Corpus, features: bytes, *, hello: bytes,
    messages: tuple[bytes, ...], ops: tuple[str, ...],
) -> Plan:  # fmt: skip
    """The handshake's replies fuzzed: the features reply, the port list, or both."""
    every = corpus.every()
    which = rng.choice(("features", "ports", "both"))
    names = list(ops)
    if which != "ports":
        features, applied = mutate(rng, features, every)
        names += applied
    ports, fuzzed = list(corpus.port_desc), frozenset[int]()
    if which != "features":
        at = rng.randrange(len(ports))
        ports[at], applied = mutate(rng, ports[at], every)
        names += applied
        fuzzed = frozenset((at,))
    return Plan(
        "in the handshake", hello, features, tuple(ports), messages,
        features_fuzzed=which != "ports", port_desc_fuzzed=fuzzed, operators=tuple(names),
    )  # fmt: skip


def with_dpid(features: bytes, dpid: int) -> bytes:
    return features[:8] + dpid.to_bytes(8, "big") + features[16:]


def framed(stream: bytes) -> list[tuple[int, int]]:
    """(offset, length) of each message the controller would read in `stream`."""
    out, at = [], 0
    while at + wire.HEADER_SIZE <= len(stream):
        length = _U16.unpack_from(stream, at + 2)[0]
        if length < wire.HEADER_SIZE:
            break
        out.append((at, length))
        at += length
    return out


def hide_dpids(sent: bytes, piece: bytes, known: set[int], stranger: int) -> tuple[bytes, int]:
    """`piece`, to follow `sent` on the stream, with the dpid of every FEATURES_REPLY
    naming a `known` one made `stranger`'s (as far as it lies in `piece`); how many.

    The controller frames the whole stream, so this does too: a mutated length
    before can make a FEATURES_REPLY of bytes that were something else. A fuzz
    connection must not pass for a real switch (`test_openflow`'s docstring)."""
    stream, start = bytearray(sent + piece), len(sent)
    changed = 0
    for at, _ in framed(bytes(stream)):
        lo, hi = at + 8, at + 16
        if stream[at + 1] != ofp.OFPT_FEATURES_REPLY or hi > len(stream) or hi <= start:
            continue
        if int.from_bytes(stream[lo:hi], "big") in known:
            fresh = stranger.to_bytes(8, "big")
            for i in range(max(lo, start), hi):
                stream[i] = fresh[i - lo]
            changed += 1
    return bytes(stream[start:]), changed
