"""The package as an operator meets it: the sample configuration, the version, the lab extra.

`tests/test_install.py` (marker `install`) installs the package into a new
venv; these need only the project's venv.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from tests.pki import Certs
from tests.sample_config import ETC, SAMPLE, deployed, sample_files
from tests.source_tree import REPO, copy_source
from vportd.ctl.hook import extra_requirements, lab_hook, missing_lab_requirements
from vportd.node import daemon
from vportd.node.config import load_config


def test_the_sample_configuration_is_a_three_host_cluster_over_tls() -> None:
    config = load_config(SAMPLE)
    assert config.controller.id == "c1"
    assert config.store.kind == "etcd" and len(config.store.endpoints) == 3
    assert config.tls is not None and config.api.url == "https://c1.example.net:8080"
    assert config.ovsdb.remotes and all(r.startswith("ssl:") for r in config.ovsdb.remotes)
    assert config.openflow.listen == "0.0.0.0:6653"


def test_the_sample_names_its_files_under_etc_vportd(certs: Certs) -> None:
    assert {path.parent for path in sample_files(certs)} == {ETC}


def test_vportd_check_accepts_the_sample_once_its_files_exist(
    tmp_path: Path, certs: Certs, capsys: pytest.CaptureFixture[str]
) -> None:
    config = deployed(tmp_path, certs)
    assert daemon.main(["--config", str(config), "--check"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["controller"]["id"] == "c1"
    assert shown["tls"]["cert"] == str(tmp_path / "c1.pem")


@pytest.mark.parametrize(
    ("name", "key"), [("peer.token", "api.peer_token_file"), ("c1.key", "tls.key")]
)
def test_vportd_check_names_a_file_of_the_sample_that_is_missing(
    name: str, key: str, tmp_path: Path, certs: Certs, capsys: pytest.CaptureFixture[str]
) -> None:
    config = deployed(tmp_path, certs)
    (tmp_path / name).unlink()
    assert daemon.main(["--config", str(config), "--check"]) == 2
    assert f"{key}: cannot read {tmp_path / name}" in capsys.readouterr().err


def test_from_a_source_tree_not_installed_the_version_is_pyprojects(tmp_path: Path) -> None:
    """Without site-packages (-S) and egg-info vportd is not installed: the tree says."""
    src = str(copy_source(tmp_path) / "src")
    code = f"import sys; sys.path.insert(0, {src!r}); import vportd; print(vportd.__version__)"
    done = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert done.stdout.strip() == f"{version}+source"


def test_the_lab_extra_is_installed_in_the_project_venv() -> None:
    assert extra_requirements(metadata.requires("vportd") or [], "lab") == ["matplotlib"]
    assert missing_lab_requirements() == []
    assert lab_hook() is not None


def test_a_missing_requirement_of_the_lab_extra_means_no_lab(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A distribution whose lab extra needs what is not installed: vportctl sees no lab."""
    info = tmp_path / "fakevportd-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fakevportd\nVersion: 1.0\n"
        "Requires-Dist: httpx==0.28.1\n"
        'Requires-Dist: matplotlib==3.11.2; extra == "lab"\n'
        "Requires-Dist: no-such-lab-dependency>=1; extra == 'lab'\n"
        'Requires-Dist: no-such-dev-tool; extra == "dev"\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert missing_lab_requirements("fakevportd") == ["no-such-lab-dependency"]
    assert lab_hook(distribution="fakevportd") is None
