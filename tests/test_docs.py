"""The README documents every CLI command, setting, warning type and public API route."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from idstitch.cli import cli
from idstitch.outcomes import WarningType
from idstitch.server.app import create_app
from idstitch.server.state import ServerConfig
from idstitch.settings import PROJECT_SETTINGS, SERVER_SETTINGS

README = (Path(__file__).parent.parent / "README.md").read_text()


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_cli_command_is_in_the_readme(command: str) -> None:
    assert f"idstitch {command}" in README


@pytest.mark.parametrize("name", [s.name for s in PROJECT_SETTINGS])
def test_every_project_setting_is_in_the_readme(name: str) -> None:
    assert f"`{name}`" in README


@pytest.mark.parametrize("variable", [s.env for s in SERVER_SETTINGS if s.env])
def test_every_server_environment_variable_is_in_the_readme(variable: str) -> None:
    assert variable in README


@pytest.mark.parametrize("kind", [w.value for w in WarningType])
def test_every_warning_type_is_in_the_readme(kind: str) -> None:
    assert f"`{kind}`" in README


def _documented(path: str) -> bool:
    # `{person_id}` in the code may read `{id}` in the README: compare with placeholders erased.
    shape = re.sub(r"\{[^}]+\}", "{}", path).rstrip("/")
    readme = re.sub(r"\{[^}]+\}", "{}", README)
    return re.search(re.escape(shape) + r"(?![\w-])", readme) is not None


def _api_routes() -> list[str]:
    paths = create_app(ServerConfig(data_dir=Path("unused"))).openapi()["paths"]
    return sorted(path for path in paths if path.startswith("/api/"))


@pytest.mark.parametrize("path", _api_routes())
def test_every_api_route_is_in_the_readme(path: str) -> None:
    assert _documented(path), f"{path} is not documented in README.md"
