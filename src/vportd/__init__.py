"""vportd: migration-aware SDN controller for Open vSwitch clusters."""

import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def _version() -> str:
    """The installed distribution's version; from a source tree that is not installed, its
    pyproject.toml's, marked as such."""
    try:
        return version("vportd")
    except PackageNotFoundError:
        return _source_version(Path(__file__).resolve().parents[2] / "pyproject.toml")


def _source_version(pyproject: Path) -> str:
    try:
        project = tomllib.loads(pyproject.read_text())["project"]
        return f"{project['version']}+source"
    except (OSError, tomllib.TOMLDecodeError, KeyError):
        return "0+unknown"


__version__: str = _version()

__all__ = ["__version__"]
