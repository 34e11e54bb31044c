"""Running the system tools the lab drives (`ip`, `ethtool`, `sysctl`) with errors that help."""

from __future__ import annotations

import os
import shutil
import subprocess

# ip, ethtool and sysctl live in sbin, which a non-login PATH may lack.
_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


class LabError(RuntimeError):
    """A lab operation failed; the message is meant for the operator."""


def tool(name: str) -> str:
    """The full path of a system tool, or a LabError naming the package to install."""
    found = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *_SBIN]))
    if found is None:
        raise LabError(f"{name} is not installed (make env installs the lab's tools)")
    return found


def run(args: list[str], *, check: bool = True, timeout: float = 30.0) -> str:
    """Run a command and return its stdout; raise LabError with its stderr if it fails."""
    argv = [tool(args[0]), *args[1:]]
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise LabError(f"{' '.join(args)}: no answer after {timeout:g} s") from None
    if check and done.returncode != 0:
        why = done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}"
        raise LabError(f"{' '.join(args)}: {why}")
    return done.stdout
