"""`pip install .` into a new venv: the controller with its runtime dependencies only.

The package is built from a copy of the source tree (a build writes into
the tree it builds) and installed with its dependencies from PyPI, once for
the module (about a minute). Then, from that venv: the console scripts
start, `vportd --check` accepts the sample configuration, every module of
the controller imports, `vportctl lab|demo|bench` name the extra to install,
and nothing of the lab or dev extras came with it.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.pki import Certs
from tests.sample_config import deployed
from tests.source_tree import REPO, copy_source

pytestmark = pytest.mark.install

INSTALL_TIMEOUT = 1200.0
# What the lab extra and the dev extra bring, by import name.
NOT_INSTALLED = ("matplotlib", "schemathesis", "hypothesis", "pytest", "mypy", "ruff")


@dataclass(frozen=True)
class Venv:
    bin: Path

    def run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / program), *args], capture_output=True, text=True, timeout=120,
            check=False, cwd=self.bin.parent,
        )  # fmt: skip


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A new venv with `pip install <the source tree>` done, no extras."""
    root = tmp_path_factory.mktemp("install")
    source = copy_source(root)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    done = subprocess.run(
        [*pip, "install", "-q", str(source)],
        capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return Venv(venv / "bin")


def test_the_console_scripts_print_the_installed_version(plain: Venv) -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    for script in ("vportd", "vportctl"):
        done = plain.run(script, "--version")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"{script} {version}"


def test_vportd_check_accepts_the_sample_configuration(
    plain: Venv, tmp_path: Path, certs: Certs
) -> None:
    done = plain.run("vportd", "--config", str(deployed(tmp_path, certs)), "--check")
    assert done.returncode == 0, done.stderr
    assert '"id": "c1"' in done.stdout


def test_every_module_of_the_controller_imports(plain: Venv) -> None:
    code = (
        "import importlib, pkgutil, vportd\n"
        "for m in pkgutil.walk_packages(vportd.__path__, 'vportd.'):\n"
        "    importlib.import_module(m.name)\n"
        "print('ok')\n"
    )
    done = plain.run("python", "-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_no_lab_or_dev_dependency_came_with_the_plain_install(plain: Venv) -> None:
    code = f"import importlib.util as u; print([m for m in {NOT_INSTALLED!r} if u.find_spec(m)])"
    done = plain.run("python", "-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("argv", [["lab", "status"], ["demo"], ["bench", "--suite", "core"]])
def test_the_lab_commands_say_which_extra_to_install(plain: Venv, argv: list[str]) -> None:
    done = plain.run("vportctl", *argv)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"'{argv[0]}' needs vportd's lab extra" in done.stderr
    assert "pip install 'vportd[lab]'" in done.stderr
