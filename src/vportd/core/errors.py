"""Typed errors the core raises for input it refuses.

Each error names the HTTP status the API gives it (DESIGN §4), so adapters map
errors to answers without a table of their own. A refused input never changes
the core's state: every check runs before the first write.
"""

from __future__ import annotations


class CoreError(Exception):
    """Base of every refusal; `code` is the stable machine-readable name."""

    code = "error"
    status = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidMac(CoreError):
    code = "invalid-mac"
    status = 400


class InvalidRequest(CoreError):
    code = "invalid-request"
    status = 400


class UnknownVM(CoreError):
    code = "unknown-vm"
    status = 404


class UnknownSwitch(CoreError):
    code = "unknown-ovs"
    status = 404


class UnknownMigration(CoreError):
    code = "unknown-migration"
    status = 404


class NotOnSource(CoreError):
    code = "vm-not-on-source"
    status = 409


class AlreadyMigrating(CoreError):
    code = "already-migrating"
    status = 409


class MigrationConflict(CoreError):
    """The migration is in a state that does not allow the request."""

    code = "migration-conflict"
    status = 409


class StaleEvent(CoreError):
    """An update older than what the table holds (its sequence number is behind)."""

    code = "stale-event"
    status = 409


class NotLeader(CoreError):
    code = "not-leader"
    status = 503


class NoController(CoreError):
    code = "no-controller"
    status = 503
