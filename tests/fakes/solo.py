"""A controller's runtime on its own, following one OVSDB remote (no store, no LLDP)."""

from __future__ import annotations

from vportd.node.config import parse_config
from vportd.node.runtime import Runtime


def solo_runtime(remote: str) -> Runtime:
    """Listening for switches on a free loopback port."""
    return Runtime(
        parse_config(
            f'[controller]\nid = "c0"\n[openflow]\nlisten = "127.0.0.1:0"\n'
            f'[ovsdb]\nremotes = ["{remote}"]\n[topology]\nlldp = false\n'
        )
    )
