"""Fixtures every tier may use."""

from __future__ import annotations

import pytest

from tests.pki import Certs


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """The cluster's CA and certificates, and a stranger's (`tests.pki`), once per session."""
    return Certs.make(tmp_path_factory.mktemp("pki"))
