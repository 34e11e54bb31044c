"""The API's bearer tokens, read from their files as the daemon starts (and `vportd --check`).

A token file must be private: one that every user may read, or that its group
or others may write, is refused (a token anyone on the host can read is no
secret). The VMM's token and the controllers' must differ: the same token in
both would let a VMM's token pass as a controller's on the east-west routes.
Every refusal is a `ConfigError` naming the key.
"""

from __future__ import annotations

import stat
from pathlib import Path

from vportd.node.config import APISection, ConfigError

MIN_TOKEN = 16
# The mode bits a token file must not have, and what each lets others do.
LOOSE_BITS = {
    stat.S_IROTH: "readable by every user",
    stat.S_IWOTH: "writable by every user",
    stat.S_IWGRP: "writable by its group",
}


def read_token(path: Path | None, key: str) -> str | None:
    """A bearer token from its file (whitespace stripped); None when not configured."""
    if path is None:
        return None
    try:
        token = path.read_text().strip()
        mode = path.stat().st_mode
    except OSError as err:
        raise ConfigError(f"{key}: cannot read {path}: {err.strerror}") from None
    loose = [what for bit, what in LOOSE_BITS.items() if mode & bit]
    if loose:
        raise ConfigError(
            f"{key}: {path} is {' and '.join(loose)} (mode {stat.S_IMODE(mode):04o}): "
            f"chmod 600 {path}"
        )
    if len(token) < MIN_TOKEN:
        raise ConfigError(f"{key}: the token in {path} is shorter than {MIN_TOKEN} characters")
    return token


def read_tokens(api: APISection) -> tuple[str | None, str | None]:
    """The VMM's and the controllers' tokens, which must differ."""
    token = read_token(api.token_file, "api.token_file")
    peer_token = read_token(api.peer_token_file, "api.peer_token_file")
    if token is not None and token == peer_token:
        raise ConfigError(
            "api.peer_token_file: holds the same token as api.token_file "
            f"({'the same file' if _same(api) else 'a copy'}): the controllers' token must "
            "be their own"
        )
    return token, peer_token


def _same(api: APISection) -> bool:
    assert api.token_file is not None and api.peer_token_file is not None
    return api.token_file.samefile(api.peer_token_file)
