"""What one switch holds, as the compiler believes it: flows by OpenFlow identity."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping

from vportd.core.flow import FORWARD_TABLE, PRIO_VM, Flow, FlowKey, Match, Output
from vportd.core.pipeline import Out, forwarding_flow, handover_cookie, vm_cookie


def _vm_key_mac(key: FlowKey) -> str | None:
    """The MAC of a VM forwarding flow's key (table 1, priority 100, `eth_dst` only)."""
    m = key[2]
    if (
        key[1] == PRIO_VM
        and key[0] == FORWARD_TABLE
        and m.in_port is None
        and m.eth_dst_mask is None
        and m.eth_src is None
    ):
        return m.eth_dst
    return None


def _forwarding_out(mac: str, flow: Flow) -> Out | None:
    """Where `flow`, found under `mac`'s VM key, outputs, if it is exactly
    `forwarding_flow(mac, out)` for some `out`."""
    actions = flow.actions
    if not all(isinstance(a, Output) for a in actions):
        return None
    ports = [a.port for a in actions if isinstance(a, Output)]
    if len(ports) == 1 and flow.cookie == vm_cookie(mac):
        return ports[0]
    if len(ports) == 2 and flow.cookie == handover_cookie(mac):  # noqa: PLR2004 (back, on)
        return (ports[0], ports[1])
    return None


class SwitchFlows(MutableMapping[FlowKey, Flow]):
    """The flows one switch holds, by OpenFlow identity (table, priority, match).

    A VM's forwarding flow, `forwarding_flow(mac, out)`, is by far the most
    common (the root of a fabric holds one for every VM): it is kept as MAC ->
    out, some 40 bytes instead of a flow, its match, key and cookie (some 250),
    and made a `Flow` again when read. Any other flow is kept as it is.
    """

    __slots__ = ("_odd", "_other", "_vm")

    def __init__(self, flows: Iterable[Flow] = ()) -> None:
        self._vm: dict[str, Out] = {}
        self._other: dict[FlowKey, Flow] = {}
        self._odd = 0  # of `_other`: flows under a VM key that are not its `forwarding_flow`
        for flow in flows:
            self[flow.key] = flow

    # -- the compiler's fast paths ----------------------------------------
    def set_vm(self, mac: str, out: Out) -> None:
        """Hold `forwarding_flow(mac, out)`."""
        if self._odd:
            self._drop_odd(mac)
        self._vm[mac] = out

    def pop_vm(self, mac: str) -> Flow | None:
        """Remove whatever flow is under `mac`'s VM key; the flow removed."""
        out = self._vm.pop(mac, None)
        if out is not None:
            return forwarding_flow(mac, out)
        return self._drop_odd(mac) if self._odd else None

    def other(self, key: FlowKey) -> Flow | None:
        """`get(key)` for a key that is not a VM forwarding flow's (gates, floods, arrivals)."""
        return self._other.get(key)

    def put_other(self, key: FlowKey, flow: Flow) -> None:
        """`self[key] = flow` for such a key."""
        self._other[key] = flow

    def pop_other(self, key: FlowKey) -> Flow | None:
        """`pop(key, None)` for such a key."""
        return self._other.pop(key, None)

    def _drop_odd(self, mac: str) -> Flow | None:
        flow = self._other.pop((FORWARD_TABLE, PRIO_VM, Match(eth_dst=mac)), None)
        if flow is not None:
            self._odd -= 1
        return flow

    # -- the mapping -------------------------------------------------------
    def get(self, key: FlowKey, default: Flow | None = None) -> Flow | None:  # type: ignore[override]
        # Mapping.get goes through __getitem__ and KeyError: this is the compiler's hot read.
        mac = _vm_key_mac(key)
        if mac is not None:
            out = self._vm.get(mac)
            if out is not None:
                return forwarding_flow(mac, out, key[2])
        return self._other.get(key, default)

    def __getitem__(self, key: FlowKey) -> Flow:
        mac = _vm_key_mac(key)
        if mac is not None:
            out = self._vm.get(mac)
            if out is not None:
                return forwarding_flow(mac, out, key[2])
        return self._other[key]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple) or len(key) != 3 or not isinstance(key[2], Match):  # noqa: PLR2004
            return False
        mac = _vm_key_mac(key)
        return (mac is not None and mac in self._vm) or key in self._other

    def __setitem__(self, key: FlowKey, flow: Flow) -> None:
        mac = _vm_key_mac(key)
        if mac is None:
            self._other[key] = flow
            return
        out = _forwarding_out(mac, flow)
        if out is not None:
            self.set_vm(mac, out)
            return
        self._vm.pop(mac, None)
        if key not in self._other:
            self._odd += 1
        self._other[key] = flow

    def __delitem__(self, key: FlowKey) -> None:
        mac = _vm_key_mac(key)
        if mac is not None:
            if self._vm.pop(mac, None) is not None:
                return
            if key in self._other:
                self._odd -= 1
        del self._other[key]

    def __iter__(self) -> Iterator[FlowKey]:
        for mac in list(self._vm):
            yield (FORWARD_TABLE, PRIO_VM, Match(eth_dst=mac))
        yield from list(self._other)

    def __len__(self) -> int:
        return len(self._vm) + len(self._other)

    def __repr__(self) -> str:
        return f"SwitchFlows({list(self.values())!r})"
