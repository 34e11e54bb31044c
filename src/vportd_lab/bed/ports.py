"""Free TCP ports on 127.0.0.1 for private daemons: labs, tests, benchmarks."""

from __future__ import annotations

import random
import socket

# A block is picked below the kernel's ephemeral range (32768..), where the
# kernel's own picks for outgoing connections would not land in it meanwhile.
BLOCK_LOW, BLOCK_HIGH = 20000, 32000


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bindable(port: int) -> bool:
    """Whether a listener could bind `port` on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_block(count: int, avoid: set[int] | frozenset[int] = frozenset()) -> int | None:
    """The first of `count` consecutive free ports, none in `avoid`; None if none found."""
    for _ in range(200):
        first = random.randrange(BLOCK_LOW, BLOCK_HIGH - count)
        block = set(range(first, first + count))
        if not block & avoid and all(bindable(p) for p in block):
            return first
    return None
