"""What a switch connection's requests raise."""

from __future__ import annotations

from vportd.core.flow import FlowMod
from vportd.southbound.openflow.incoming import ErrorMsg


class SwitchClosed(ConnectionError):
    """The connection is closed (or closing); `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OpenFlowError(Exception):
    """The switch answered a request with an error, or with the wrong reply."""

    def __init__(self, text: str, error: ErrorMsg | None = None) -> None:
        super().__init__(text)
        self.error = error


class FlowModsFailed(OpenFlowError):
    """Some flow mods of a batch were refused by the switch."""

    def __init__(self, failures: list[tuple[FlowMod, ErrorMsg]]) -> None:
        first_mod, first = failures[0]
        super().__init__(
            f"{len(failures)} flow mod(s) failed, first {first_mod.command} "
            f"{first_mod.flow}: {first.describe()}",
            first,
        )
        self.failures = failures

    @property
    def as_slave(self) -> bool:
        """Refused because the switch takes us for a slave: our role is not what we think."""
        return any(error.is_slave for _, error in self.failures)
