"""Where the cluster's API is and which token to send: flags, the environment, a running lab.

`resolve_target` decides, first match wins (see its docstring); `connect`
reads the token and opens a `Client` (checking an https API against the CA
file, if one is named). A running lab is found through the lab
package's hook (`vportd.ctl.hook`), or not at all when the lab is not installed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from vportd.ctl.client import DEFAULT_TIMEOUT, Client, TargetError, TokenError, normalize_url
from vportd.ctl.hook import INSTALL_LAB, LabEndpoints, lab_hook

DEFAULT_API: Final = "http://127.0.0.1:8080"

LabFinder = Callable[[Path | None, Mapping[str, str]], LabEndpoints | None]


@dataclass(frozen=True, slots=True)
class Target:
    """The API URLs, the token file and the CA file to use, and where each came from (for
    messages)."""

    urls: tuple[str, ...]
    urls_from: str
    token_file: Path | None
    token_from: str
    ca: Path | None = None  # None: an https API is checked against the system's CAs
    ca_from: str = "none"


def find_lab(lab_dir: Path | None, env: Mapping[str, str]) -> LabEndpoints | None:
    """The running lab, as the lab package finds it; None when there is none (or no lab
    package) at the default place. An explicit `lab_dir` without a lab is a TargetError."""
    hook = lab_hook()
    if hook is not None:
        return hook.find_lab(lab_dir, env)
    if lab_dir is not None:
        raise TargetError(f"--lab {lab_dir}: the lab is not installed ({INSTALL_LAB})")
    return None


def resolve_target(
    api: str | None,
    token_file: Path | None,
    lab_dir: Path | None,
    env: Mapping[str, str],
    labs: LabFinder = find_lab,
    *,
    ca: Path | None = None,
) -> Target:
    """Where the API is, which token file to read and which CA to trust, first match wins.

    API: `api` (a URL, or several separated by commas) > `$VPORTD_API` > every
    controller of the lab in `lab_dir` (or, without it, of a lab whose state
    exists in `$VPORTD_LAB_DIR` or /run/vportd-lab), the first controller first
    > http://127.0.0.1:8080. Token file: `token_file` > `$VPORTD_TOKEN_FILE` >
    the lab's `api.token` > none (the API then answers 401). CA file: `ca` >
    `$VPORTD_CA` > the lab's CA (a lab up with --tls) > none (the system's
    CAs). `labs` finds the lab.
    """
    lab = labs(lab_dir, env)
    lab_from = f"the lab in {lab.dir}" if lab else ""
    if api:
        urls, urls_from = _split_urls(api, "--api"), "--api"
    elif env.get("VPORTD_API"):
        urls, urls_from = _split_urls(env["VPORTD_API"], "$VPORTD_API"), "$VPORTD_API"
    elif lab and lab.urls:
        urls, urls_from = lab.urls, lab_from
    else:
        urls, urls_from = (DEFAULT_API,), "the default"
    trust, trust_from = _ca(ca, env, lab, lab_from)
    if token_file:
        token, token_from = token_file, "--token-file"
    elif env.get("VPORTD_TOKEN_FILE"):
        token, token_from = Path(env["VPORTD_TOKEN_FILE"]), "$VPORTD_TOKEN_FILE"
    elif lab:
        token, token_from = lab.token_file, lab_from
    else:
        token, token_from = None, "none"
    return Target(urls, urls_from, token, token_from, trust, trust_from)


def _ca(
    ca: Path | None, env: Mapping[str, str], lab: LabEndpoints | None, lab_from: str
) -> tuple[Path | None, str]:
    """The CA file to trust and where it came from (`resolve_target`)."""
    if ca:
        return ca, "--ca"
    if env.get("VPORTD_CA"):
        return Path(env["VPORTD_CA"]), "$VPORTD_CA"
    if lab and lab.ca:
        return lab.ca, lab_from
    return None, "none"


def _split_urls(text: str, origin: str) -> tuple[str, ...]:
    urls = tuple(normalize_url(u) for u in text.split(",") if u.strip())
    if not urls:
        raise TargetError(f"{origin}: no API URL in {text!r}", "bad-api")
    return urls


def read_token(path: Path) -> str:
    """The bearer token in `path` (surrounding whitespace removed); TokenError if unusable."""
    try:
        token = path.read_text().strip()
    except OSError as err:
        hint = " (the lab's token is root's: use sudo)" if isinstance(err, PermissionError) else ""
        raise TokenError(f"cannot read the token file {path}: {err.strerror}{hint}") from None
    if not token:
        raise TokenError(f"the token file {path} is empty")
    return token


def connect(target: Target, timeout: float = DEFAULT_TIMEOUT) -> Client:
    """A Client for `target`, its token read now."""
    token = read_token(target.token_file) if target.token_file else None
    return Client(target.urls, token, timeout, ca=target.ca)
