"""Typed errors the core raises for input it refuses.

Each has a stable machine-readable `code` (the API's error bodies carry it).
A refused input never changes the core's state: every check runs before the
first write.
"""

from __future__ import annotations


class CoreError(Exception):
    """Base of every refusal; `code` is the stable machine-readable name."""

    code = "error"

    def __init_subclass__(cls, code: str = "error") -> None:
        cls.code = code

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidMac(CoreError, code="invalid-mac"): ...


class InvalidRequest(CoreError, code="invalid-request"): ...


class UnknownVM(CoreError, code="unknown-vm"): ...


class UnknownSwitch(CoreError, code="unknown-ovs"): ...


class UnknownMigration(CoreError, code="unknown-migration"): ...


class NotOnSource(CoreError, code="vm-not-on-source"): ...


class AlreadyMigrating(CoreError, code="already-migrating"): ...


class MigrationConflict(CoreError, code="migration-conflict"):
    """The migration is in a state that does not allow the request."""


class NotLeader(CoreError, code="not-leader"): ...


class NoController(CoreError, code="no-controller"): ...


class MigrationSuppressed(CoreError, code="migration-suppressed"):
    """The VM moved too often lately (flap damping): it may move again in `retry_after` s.

    `moves` is how many moves of the VM the window holds now.
    """

    def __init__(self, detail: str, *, vm: str, moves: int, retry_after: float) -> None:
        super().__init__(detail)
        self.vm = vm
        self.moves = moves
        self.retry_after = retry_after
