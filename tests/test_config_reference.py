"""docs/configuration.md is what `vportd --config-reference` makes from the model: every
section and key with its type, default and description, and the rules across keys."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest
from pydantic import BaseModel, ConfigDict

from vportd.node.config import Config
from vportd.node.config_reference import REGENERATE, reference
from vportd.node.daemon import main

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_docs_configuration_md_is_the_model_s_reference() -> None:
    assert DOC.read_text() == reference(), (
        f"docs/configuration.md is out of date with src/vportd/node/config.py: regenerate it "
        f"with `.venv/bin/{REGENERATE}`"
    )


def test_vportd_prints_the_reference_without_a_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config-reference"]) == 0
    assert capsys.readouterr().out == reference()


def test_every_section_and_key_has_a_row() -> None:
    text = reference()
    for name, section in Config.model_fields.items():
        assert f"## `[{name}]`" in text
        candidates = (section.annotation, *get_args(section.annotation))
        model = next(a for a in candidates if isinstance(a, type) and issubclass(a, BaseModel))
        for key in model.model_fields:
            assert f"| `{key}` |" in text, f"{name}.{key}"


@pytest.mark.parametrize(
    "row",
    [
        '| `listen` | HOST:PORT | `"127.0.0.1:6653"` | Address and port to listen on',
        "| `echo_interval` | seconds, > 0, ≤ 3600 | `2.0` | Seconds between echo requests",
        '| `kind` | `"memory"` or `"etcd"` | `"memory"` |',
        "| `advertise` | URL | unset |",
        "| `token_file` | path | unset |",
        "| `links` | list of tables | `[]` |",
        "| `a_port` | integer, ≥ 1, ≤ 4294967040 | required |",
        "| `id` | string, length ≥ 1, length ≤ 64, matching `^[A-Za-z0-9_.-]+$` | required |",
    ],
)
def test_a_row_shows_type_default_and_description(row: str) -> None:
    assert row in reference()


class Undocumented(BaseModel):
    """A section with a key that has no docstring."""

    model_config = ConfigDict(use_attribute_docstrings=True)
    described: int = 1
    """Has one."""
    bare: int = 2


class WithUndocumented(BaseModel):
    part: Undocumented


def test_a_key_without_a_description_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"^part\.bare \(a docstring under the key\) has no"):
        reference(WithUndocumented)
