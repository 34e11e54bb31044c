"""vportd: migration-aware SDN controller for Open vSwitch clusters."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__: str = version("vportd")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.1.0"

__all__ = ["__version__"]
