"""What the lab tells the operator: progress and warnings on stderr, and its exit codes."""

from __future__ import annotations

import sys

EXIT_OK = 0
EXIT_FAILED = 1  # a step failed (and was undone), or `status`: no lab is up
EXIT_USAGE = 2  # bad options
EXIT_CONTROLLER_DOWN = 3  # `up`: the lab is up but a controller is not running
EXIT_INTERRUPTED = 130  # `up`: interrupted (Ctrl-C); what was built is removed


def say(message: str) -> None:
    """Progress and warnings go to stderr; results (summaries, JSON) to stdout."""
    print(f"lab: {message}", file=sys.stderr, flush=True)
