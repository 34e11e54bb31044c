"""The machine a benchmark ran on, as its report states it."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from pathlib import Path


def machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": str(os.cpu_count() or 0),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "ovs": first_line(["ovs-vswitchd", "--version"]),
        "load_average": load_average(),
        "commit": first_line(["git", "describe", "--always", "--dirty"]) or "unknown",
    }


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def first_line(args: list[str]) -> str:
    try:
        out = subprocess.run(
            args, capture_output=True, text=True, timeout=10, check=False,
            cwd=Path(__file__).parent,
        ).stdout  # fmt: skip
    except OSError:
        return ""
    return out.splitlines()[0].strip() if out.strip() else ""
