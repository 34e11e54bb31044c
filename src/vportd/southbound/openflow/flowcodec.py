"""The core's flows as OpenFlow 1.3 flow mods, and flow stats back as core flows.

* `encode_flow_mod` packs an ADD as OFPFC_ADD (cookie, table, priority,
  match; `Output` and `ToController` become one apply-actions instruction, a
  final `GotoTable` a goto-table instruction) and a DELETE as
  OFPFC_DELETE_STRICT on the same table, priority and match (any cookie, out
  port and out group ANY), which removes exactly that flow. It packs with
  `struct`, byte for byte what os-ken builds (tests/southbound/test_ofcodec.py
  holds it to os-ken's), because os-ken's objects, and its MACs through
  netaddr, cost far more per flow mod and a boot storm sends many.
* `decode_flow_stats` turns a flow stats entry back into an equal core `Flow`:
  `decode_flow_stats(stats of encode_flow_mod(add f)) == f` for every flow the
  compiler makes. A full eth_dst mask reads back as an exact match, as OVS
  reports it.
* A flow that no core `Flow` can stand for exactly (a match field, instruction
  or action the core never makes, an output to a reserved port such as
  NORMAL, an idle or hard timeout: someone else's flow) raises
  `ForeignFlowError`, a `CodecError` carrying a `ForeignFlow`. We raise rather
  than decode to a sentinel `Flow` because the core's `Match` cannot hold an
  unknown match field: a sentinel could not name the flow to delete. The
  `ForeignFlow` keeps the raw match, so `encode_delete_foreign` removes
  exactly that flow, and its `key` (the core key when only the actions or
  timeouts are foreign) lets a reconciler leave it to be overwritten by its
  own ADD instead.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from dataclasses import dataclass, field
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofpp

from vportd.core.flow import (
    Action,
    Flow,
    FlowCommand,
    FlowKey,
    FlowMod,
    GotoTable,
    Match,
    Output,
    PopVlan,
    PushVlan,
    SetField,
    ToController,
)
from vportd.southbound.openflow.wire import (
    DATAPATH,
    OFP_VERSION,
    OFPP_CONTROLLER,
    OFPP_MAX,
    CodecError,
    Packed,
)

_EXACT_MAC = "ff:ff:ff:ff:ff:ff"
_MATCHABLE = frozenset({"in_port", "eth_dst", "eth_src", "vlan_vid", "tunnel_id"})
_MAX_TABLE = 254
_MAX_PRIORITY = 0xFFFF
_MAX_COOKIE = 0xFFFF_FFFF_FFFF_FFFE  # all ones is reserved
_MAX_U32 = 0xFFFF_FFFF
_MAX_U16 = 0xFFFF
_MAX_VID = 0x1FFF  # OFPVID_PRESENT | a 12-bit VID
_NXM_1 = 0x0001 << 16  # the Nicira extension class (OVS's NXM_NX_* fields)
_NXM_NX_TUN_IPV4_DST = 32


@dataclass(frozen=True)
class ForeignFlow:
    """A flow on a switch that no core `Flow` stands for (see the module docstring)."""

    table: int
    priority: int
    cookie: int
    reason: str
    key: FlowKey | None  # the core key, when the match alone is representable
    raw_match: Any = field(compare=False, repr=False)  # os-ken OFPMatch, for an exact delete


class ForeignFlowError(CodecError):
    def __init__(self, foreign: ForeignFlow) -> None:
        super().__init__(
            f"table {foreign.table} priority {foreign.priority} cookie {foreign.cookie:#x}: "
            f"{foreign.reason}"
        )
        self.foreign = foreign


# -- core -> OpenFlow -----------------------------------------------------------
def _check(ok: bool, what: str) -> None:
    if not ok:
        raise CodecError(what)


_OXM_BASIC = ofp.OFPXMC_OPENFLOW_BASIC << 16


@functools.lru_cache(maxsize=1 << 16)
def _match_wire(match: Match) -> bytes:
    """The match packed, cached: a VM's match recurs on every switch its flows are on."""
    return _oxm_match(match)


def _oxm_match(match: Match) -> bytes:
    """ofp_match with OXM fields in field order, padded to 8 bytes (OpenFlow 1.3, 7.2.2)."""
    tlvs = b""
    if match.in_port is not None:
        _check(0 < match.in_port <= _MAX_U32, f"in_port {match.in_port} out of range")
        tlvs += _oxm(ofp.OFPXMT_OFB_IN_PORT, struct.pack("!I", match.in_port))
    if match.eth_dst is not None:
        mask = match.eth_dst_mask
        value = _mac_bytes(match.eth_dst)
        if mask is None:
            tlvs += _oxm(ofp.OFPXMT_OFB_ETH_DST, value)
        else:
            tlvs += _oxm(ofp.OFPXMT_OFB_ETH_DST, value, _mac_bytes(mask))
    else:
        _check(match.eth_dst_mask is None, "an eth_dst mask without an eth_dst")
    if match.eth_src is not None:
        tlvs += _oxm(ofp.OFPXMT_OFB_ETH_SRC, _mac_bytes(match.eth_src))
    if match.vlan_vid is not None:
        tlvs += _vlan_vid(match.vlan_vid, match.vlan_vid_mask)
    else:
        _check(match.vlan_vid_mask is None, "a vlan_vid mask without a vlan_vid")
    if match.tunnel_id is not None:
        _check(0 <= match.tunnel_id < 1 << 64, f"tunnel_id {match.tunnel_id} out of range")
        tlvs += _oxm(ofp.OFPXMT_OFB_TUNNEL_ID, struct.pack("!Q", match.tunnel_id))
    length = 4 + len(tlvs)
    return struct.pack("!HH", ofp.OFPMT_OXM, length) + tlvs + bytes(-length % 8)


def _vlan_vid(vid: int, mask: int | None) -> bytes:
    _check(0 <= vid <= _MAX_VID, f"vlan_vid {vid:#x} out of range")
    value = struct.pack("!H", vid)
    if mask is None:
        return _oxm(ofp.OFPXMT_OFB_VLAN_VID, value)
    _check(0 <= mask <= _MAX_VID, f"vlan_vid mask {mask:#x} out of range")
    return _oxm(ofp.OFPXMT_OFB_VLAN_VID, value, struct.pack("!H", mask))


def _oxm(field: int, value: bytes, mask: bytes | None = None) -> bytes:
    if mask is None:
        return _oxm_header(field, False, len(value)) + value
    # Bits outside the mask are sent as zero, as os-ken does (OpenFlow 1.3, 7.2.3.5).
    masked = bytes(v & m for v, m in zip(value, mask, strict=True))
    return _oxm_header(field, True, 2 * len(value)) + masked + mask


def _oxm_header(field: int, masked: bool, length: int) -> bytes:
    return struct.pack("!I", _OXM_BASIC | field << 9 | masked << 8 | length)


_MAC_TEXT = len("02:00:00:00:00:00")
_MAC_BYTES = 6


def _mac_bytes(mac: str) -> bytes:
    try:
        raw = bytes.fromhex(mac.replace(":", ""))
    except ValueError:
        raw = b""
    _check(len(raw) == _MAC_BYTES and len(mac) == _MAC_TEXT, f"{mac!r} is not a MAC address")
    return raw


_APPLY = struct.Struct("!HH4x")  # ofp_instruction_actions
_OUTPUT = struct.Struct("!HHIH6x")  # ofp_action_output
_GOTO = struct.Struct("!HHB3x")  # ofp_instruction_goto_table
_PUSH = struct.Struct("!HHH2x")  # ofp_action_push
_POP = struct.Struct("!HH4x")  # ofp_action_header (pop_vlan)


def _set_field(field: str, value: int | str) -> bytes:
    """ofp_action_set_field: one OXM TLV, padded to 8 bytes (OpenFlow 1.3, 7.2.5)."""
    if field == "vlan_vid" and isinstance(value, int):
        tlv = _vlan_vid(value, None)
    elif field == "tunnel_id" and isinstance(value, int):
        _check(0 <= value < 1 << 64, f"tunnel_id {value} out of range")
        tlv = _oxm(ofp.OFPXMT_OFB_TUNNEL_ID, struct.pack("!Q", value))
    elif field == "tun_ipv4_dst" and isinstance(value, str):
        try:
            raw = ipaddress.IPv4Address(value).packed
        except ValueError:
            raise CodecError(f"tun_ipv4_dst {value!r} is not an IPv4 address") from None
        tlv = struct.pack("!I", _NXM_1 | _NXM_NX_TUN_IPV4_DST << 9 | len(raw)) + raw
    else:
        raise CodecError(f"set_field {field}={value!r}: not a field the core sets")
    length = 4 + len(tlv)
    length += -length % 8
    return struct.pack("!HH", ofp.OFPAT_SET_FIELD, length) + tlv + bytes(length - 4 - len(tlv))


def _action_wire(action: Action) -> bytes:
    """One apply-action packed (never a goto: that is an instruction)."""
    match action:
        case Output(port=port):
            _check(port != OFPP_CONTROLLER, "output to the controller is ToController")
            _check(0 < port <= OFPP_MAX, f"output to port {port:#x}: not a switch port")
            return _OUTPUT.pack(ofp.OFPAT_OUTPUT, _OUTPUT.size, port, ofp.OFPCML_MAX)
        case ToController(max_len=max_len):
            _check(0 <= max_len <= _MAX_U16, f"max_len {max_len} out of range")
            return _OUTPUT.pack(ofp.OFPAT_OUTPUT, _OUTPUT.size, OFPP_CONTROLLER, max_len)
        case PushVlan(ethertype=ethertype):
            _check(ethertype in (0x8100, 0x88A8), f"push_vlan of ethertype {ethertype:#x}")
            return _PUSH.pack(ofp.OFPAT_PUSH_VLAN, _PUSH.size, ethertype)
        case PopVlan():
            return _POP.pack(ofp.OFPAT_POP_VLAN, _POP.size)
        case SetField(field=field, value=value):
            return _set_field(field, value)
    raise CodecError(f"{action} is no apply-action")


@functools.lru_cache(maxsize=1 << 12)
def _instructions_wire(actions: tuple[Action, ...]) -> bytes:
    """The instructions packed, cached: a flood flow's outputs recur on every rewrite.

    The actions but a final `GotoTable` become one apply-actions instruction, in order.
    """
    goto: int | None = None
    packed = b""
    for action in actions:
        _check(goto is None, f"{action} after GotoTable: a goto is the last action")
        if isinstance(action, GotoTable):
            _check(0 <= action.table <= _MAX_TABLE, f"goto table {action.table} out of range")
            goto = action.table
        else:
            packed += _action_wire(action)
    wire = b""
    if packed:
        wire += _APPLY.pack(ofp.OFPIT_APPLY_ACTIONS, _APPLY.size + len(packed)) + packed
    if goto is not None:
        wire += _GOTO.pack(ofp.OFPIT_GOTO_TABLE, _GOTO.size, goto)
    return wire


# ofp_header, then ofp_flow_mod up to its match (OpenFlow 1.3, 7.3.4.1)
_FLOW_MOD = struct.Struct("!BBHI" + ofp.OFP_FLOW_MOD_PACK_STR0.removeprefix("!"))


def encode_flow_mod(mod: FlowMod) -> Packed:
    """A core flow mod as a `Packed` OFPT_FLOW_MOD, byte for byte what os-ken would build."""
    flow = mod.flow
    _check(0 <= flow.table <= _MAX_TABLE, f"table {flow.table} out of range")
    _check(0 <= flow.priority <= _MAX_PRIORITY, f"priority {flow.priority} out of range")
    _check(0 <= flow.cookie <= _MAX_COOKIE, f"cookie {flow.cookie:#x} out of range")
    match = _match_wire(flow.match)
    if mod.command is FlowCommand.ADD:
        command, cookie, instructions = ofp.OFPFC_ADD, flow.cookie, _instructions_wire(flow.actions)
    else:
        command, cookie, instructions = ofp.OFPFC_DELETE_STRICT, 0, b""
    length = _FLOW_MOD.size + len(match) + len(instructions)
    head = _FLOW_MOD.pack(
        OFP_VERSION, ofp.OFPT_FLOW_MOD, length, 0, cookie, 0, flow.table, command, 0, 0,
        flow.priority, ofp.OFP_NO_BUFFER, ofp.OFPP_ANY, ofp.OFPG_ANY, 0,
    )  # fmt: skip
    return Packed(head + match + instructions)


def encode_delete_foreign(foreign: ForeignFlow) -> Any:
    """OFPFC_DELETE_STRICT for exactly that foreign flow (its raw match)."""
    return ofpp.OFPFlowMod(
        DATAPATH, table_id=foreign.table, command=ofp.OFPFC_DELETE_STRICT,
        priority=foreign.priority, buffer_id=ofp.OFP_NO_BUFFER, out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY, match=foreign.raw_match, instructions=[],
    )  # fmt: skip


# -- OpenFlow -> core -----------------------------------------------------------
_PORT_NAMES: dict[int, str] = {
    getattr(ofp, n): n.removeprefix("OFPP_")
    for n in dir(ofp)
    if n.startswith("OFPP_") and isinstance(getattr(ofp, n), int) and getattr(ofp, n) > OFPP_MAX
}


def _mac(value: object, what: str) -> tuple[str, str | None]:
    if isinstance(value, tuple) and len(value) == 2:  # noqa: PLR2004
        mac, mask = str(value[0]).lower(), str(value[1]).lower()
        return (mac, None) if mask == _EXACT_MAC else (mac, mask)
    if isinstance(value, str):
        return value.lower(), None
    raise CodecError(f"unreadable {what} {value!r}")


def decode_match(match: Any) -> Match:
    """A core `Match`, or CodecError naming what it cannot hold."""
    fields = dict(match.items())
    unknown = sorted(set(fields) - _MATCHABLE)
    if unknown:
        raise CodecError(f"matches on {', '.join(unknown)}")
    eth_dst = dst_mask = eth_src = None
    if "eth_dst" in fields:
        eth_dst, dst_mask = _mac(fields["eth_dst"], "eth_dst")
    if "eth_src" in fields:
        eth_src, src_mask = _mac(fields["eth_src"], "eth_src")
        if src_mask is not None:
            raise CodecError("matches on a masked eth_src")
    in_port = fields.get("in_port")
    if in_port is not None and not isinstance(in_port, int):
        raise CodecError(f"unreadable in_port {in_port!r}")
    vid, vid_mask = _vid(fields.get("vlan_vid"))
    tunnel_id = fields.get("tunnel_id")
    if tunnel_id is not None and not isinstance(tunnel_id, int):
        raise CodecError(f"matches on a masked tunnel_id {tunnel_id!r}")
    return Match(
        in_port=in_port, eth_dst=eth_dst, eth_dst_mask=dst_mask, eth_src=eth_src,
        vlan_vid=vid, vlan_vid_mask=vid_mask, tunnel_id=tunnel_id,
    )  # fmt: skip


def _vid(value: object) -> tuple[int | None, int | None]:
    """A `vlan_vid` match as (value, mask); a full mask reads back as an exact match."""
    if value is None or isinstance(value, int):
        return value, None
    if isinstance(value, tuple) and len(value) == 2:  # noqa: PLR2004
        vid, mask = int(value[0]), int(value[1])
        return (vid, None) if mask == _MAX_VID else (vid, mask)
    raise CodecError(f"unreadable vlan_vid {value!r}")


_SETTABLE = frozenset({"vlan_vid", "tunnel_id", "tun_ipv4_dst"})


def _decode_action(action: Any) -> Action:
    if isinstance(action, ofpp.OFPActionPushVlan):
        return PushVlan(int(action.ethertype))
    if isinstance(action, ofpp.OFPActionPopVlan):
        return PopVlan()
    if isinstance(action, ofpp.OFPActionSetField) and action.key in _SETTABLE:
        value = action.value
        return SetField(action.key, str(value) if action.key == "tun_ipv4_dst" else int(value))
    if not isinstance(action, ofpp.OFPActionOutput):
        raise CodecError(f"has action {type(action).__name__}")
    port = int(action.port)
    if port == OFPP_CONTROLLER:
        return ToController(int(action.max_len))
    if port > OFPP_MAX:  # NORMAL, FLOOD, LOCAL...: the core outputs to switch ports only
        raise CodecError(f"outputs to reserved port {_PORT_NAMES.get(port, hex(port))}")
    return Output(port)


def decode_instructions(instructions: list[Any]) -> tuple[Action, ...]:
    actions: list[Action] = []
    goto: GotoTable | None = None
    for inst in instructions:
        if isinstance(inst, ofpp.OFPInstructionGotoTable) and goto is None:
            goto = GotoTable(int(inst.table_id))
        elif (
            isinstance(inst, ofpp.OFPInstructionActions)
            and inst.type == ofp.OFPIT_APPLY_ACTIONS
            and not actions
        ):
            actions.extend(_decode_action(a) for a in inst.actions)
        else:
            raise CodecError(f"has instruction {type(inst).__name__} (type {inst.type})")
    if goto is not None:
        actions.append(goto)
    return tuple(actions)


def decode_flow_stats(stats: Any) -> Flow:
    """The core `Flow` of one OFPFlowStats entry; ForeignFlowError if there is none."""
    table, priority, cookie = int(stats.table_id), int(stats.priority), int(stats.cookie)

    def foreign(reason: str, key: FlowKey | None) -> ForeignFlowError:
        return ForeignFlowError(ForeignFlow(table, priority, cookie, reason, key, stats.match))

    try:
        match = decode_match(stats.match)
    except CodecError as exc:
        raise foreign(str(exc), None) from None
    key = (table, priority, match)
    if stats.idle_timeout or stats.hard_timeout:
        timeouts = f"idle {stats.idle_timeout}s, hard {stats.hard_timeout}s"
        raise foreign(f"has timeouts ({timeouts})", key)
    try:
        actions = decode_instructions(stats.instructions)
    except CodecError as exc:
        raise foreign(str(exc), key) from None
    return Flow(table, priority, match, actions, cookie)
