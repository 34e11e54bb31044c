"""The installed console scripts ``vportd`` and ``vportctl`` start and behave."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from vportd import __version__
from vportd.ctl import cli
from vportd.ctl.hook import LabHook, lab_hook
from vportd_lab import hook as lab_package_hook

BIN = Path(sys.executable).parent


def run(
    script: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    exe = BIN / script
    if not exe.exists():
        pytest.fail(f"{exe} is missing: install the package (make env)")
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, timeout=60, check=False, env=env
    )


def no_api_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose vportd API is a loopback port nothing listens on, and no lab."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return {
        **os.environ,
        "VPORTD_API": f"http://127.0.0.1:{port}",
        "VPORTD_LAB_DIR": str(tmp_path / "no-lab"),
    }


def test_vportd_version() -> None:
    result = run("vportd", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"vportd {__version__}"


def test_vportd_with_a_missing_config_file_names_it() -> None:
    result = run("vportd", "--config", "/nonexistent/vportd.toml")
    assert result.returncode == 2
    assert "/nonexistent/vportd.toml" in result.stderr


def test_vportd_refuses_an_unknown_key_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[controller]\nid = "c0"\n[openflow]\nlisten = "127.0.0.1:6653"\nlistn = 1\n')
    result = run("vportd", "--config", str(bad))
    assert result.returncode == 2
    assert "openflow.listn: unknown key" in result.stderr


def test_vportd_refuses_a_bad_value_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[controller]\nid = "c0"\n[migration]\nsync_timeout = -3\n')
    result = run("vportd", "--config", str(bad))
    assert result.returncode == 2
    assert "migration.sync_timeout" in result.stderr


def test_vportd_check_prints_the_validated_config(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[controller]\nid = "c7"\n')
    result = run("vportd", "--config", str(good), "--check")
    assert result.returncode == 0
    assert '"id": "c7"' in result.stdout


def test_vportd_without_config_is_a_usage_error() -> None:
    result = run("vportd")
    assert result.returncode == 2
    assert "--config" in result.stderr


def test_vportctl_help_lists_every_command() -> None:
    result = run("vportctl", "--help")
    assert result.returncode == 0, result.stderr
    for command in (
        "status",
        "switches",
        "vports",
        "vport",
        "migrate",
        "migrations",
        "abort",
        "lab",
        "demo",
        "bench",
        "--json",
    ):
        assert command in result.stdout


def test_vportctl_version() -> None:
    result = run("vportctl", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"vportctl {__version__}"


def test_vportctl_status_without_a_cluster_exits_3(tmp_path: Path) -> None:
    env = no_api_env(tmp_path)
    result = run("vportctl", "status", env=env)
    assert result.returncode == 3
    assert f"cannot reach the vportd API: {env['VPORTD_API']}" in result.stderr


@pytest.mark.parametrize("where", ["before", "after"])
def test_vportctl_json_flag_before_or_after_command(where: str, tmp_path: Path) -> None:
    args = ["--json", "vports"] if where == "before" else ["vports", "--json"]
    result = run("vportctl", *args, env=no_api_env(tmp_path))
    assert result.returncode == 3
    assert json.loads(result.stdout)["error"] == "unreachable"


def test_vportctl_help_documents_exit_codes_and_api_resolution() -> None:
    result = run("vportctl", "--help")
    assert result.returncode == 0
    for text in ("exit status", "$VPORTD_API", "$VPORTD_TOKEN_FILE", "--lab", "examples:"):
        assert text in result.stdout


def test_vportctl_migrate_requires_source_and_destination() -> None:
    result = run("vportctl", "migrate", "52:54:00:00:00:01", "--from", "hv1")
    assert result.returncode == 2
    assert "--to" in result.stderr


def test_the_global_lab_names_the_lab_for_the_lab_commands_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`vportctl --lab DIR lab up` once made the lab in the default directory, where the
    client commands given the same `--lab DIR` then found nothing."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)  # (status only reads the lab's state file)
    monkeypatch.setenv("VPORTD_LAB_DIR", str(tmp_path / "default"))
    mine = tmp_path / "mine"
    assert cli.main(["--lab", str(mine), "lab", "status"]) == 1
    assert f"no lab is up in {mine}" in capsys.readouterr().err
    assert cli.main(["--lab", str(mine), "lab", "status", "--dir", str(mine)]) == 1
    capsys.readouterr()


def test_a_global_lab_and_a_dir_that_differ_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["--lab", str(tmp_path / "a"), "lab", "down", "--dir", str(tmp_path / "b")]
    assert cli.main(argv) == 2
    assert "name two labs: give one" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_controller_never_imports_the_lab_package() -> None:
    """Every module of `vportd` imports without loading `vportd_lab` (vportctl reaches it
    only through its hook, when it builds its parser)."""
    code = (
        "import pkgutil, importlib, sys, vportd\n"
        "for m in pkgutil.walk_packages(vportd.__path__, 'vportd.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] == 'vportd_lab'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_vportctl_finds_the_lab_package_through_its_hook() -> None:
    hook: LabHook = lab_package_hook  # mypy checks the module against the protocol
    assert lab_hook() is hook


@pytest.fixture
def without_lab_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if `vportd_lab` were not installed: importing its hook fails as a missing module."""
    monkeypatch.setitem(sys.modules, "vportd_lab.hook", None)


@pytest.mark.usefixtures("without_lab_package")
@pytest.mark.parametrize(
    "argv",
    [
        ["lab", "up", "--dir", "/nonexistent"],
        ["demo"],
        ["demo", "--hops", "2"],
        ["bench"],
        ["bench", "--suite", "core"],
        ["lab", "--help"],
    ],
)
def test_without_the_lab_package_its_commands_say_so(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert f"'{argv[0]}' needs vportd's lab extra" in err and "pip install 'vportd[lab]'" in err


@pytest.mark.usefixtures("without_lab_package")
def test_without_the_lab_package_the_client_commands_work(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = no_api_env(tmp_path)
    monkeypatch.setenv("VPORTD_API", env["VPORTD_API"])
    assert cli.main(["--json", "vports"]) == 3  # the API from $VPORTD_API, unreachable
    assert json.loads(capsys.readouterr().out)["error"] == "unreachable"
    assert cli.main(["--json", "--lab", str(tmp_path), "vports"]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["error"] == "no-lab" and "pip install 'vportd[lab]'" in doc["detail"]


def test_a_broken_lab_package_is_not_taken_for_a_missing_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_lab_hook.py").write_text("import no_such_dependency_of_the_lab\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert lab_hook("not_installed_lab.hook") is None
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_of_the_lab"):
        lab_hook("broken_lab_hook")
