"""Argument types for vportctl's options: numbers in a range, with argparse's error messages.

The lab package's commands use them too, so that every command of vportctl
refuses a bad number the same way.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

MAX_TCP_PORT = 65535


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def tcp_port(text: str) -> int:
    value = positive_int(text)
    if value > MAX_TCP_PORT:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value}")
    return value


def count(low: int, high: int) -> Callable[[str], int]:
    """An integer from `low` to `high`."""

    def parse(text: str) -> int:
        value = _int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}: {value}")
        return value

    return parse


def positive_float(text: str) -> float:
    value = _float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {value:g}")
    return value


def non_negative_float(text: str) -> float:
    value = _float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {value:g}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
