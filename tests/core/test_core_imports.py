"""The core imports only the standard library and itself (style.md §2 "Layout, one direction").

Like httpx's exported-members test: parse the modules, never import them, so a forbidden import
fails here even if it sits in a branch that never runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import idstitch

PACKAGE_DIR = Path(idstitch.__file__).parent
CORE_MODULES = (
    "ids", "attributes", "identity", "id_rules", "commands", "outcomes", "first_touch",
    "display", "clock", "settings", "errors", "engine", "regexes", "warning_digest",
    "history", "replay", "undo", "previews", "rule_previews",
)
FORBIDDEN = (
    "starlette", "fastapi", "sqlite3", "msgspec", "uvicorn",
    "idstitch.store", "idstitch.server", "idstitch.ingest",
)


def imported_modules(source: str, module: str) -> set[str]:
    """Every module a source file imports, relative imports resolved against `idstitch.<module>`."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = ["idstitch", *module.split(".")][: -node.level]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            # `from idstitch import store` imports the module idstitch.store.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def forbidden_imports(source: str, module: str) -> list[str]:
    return sorted(
        name
        for name in imported_modules(source, module)
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN)
    )


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_imports_nothing_from_the_adapters_or_io_libraries(module: str) -> None:
    source = (PACKAGE_DIR / f"{module}.py").read_text()
    assert forbidden_imports(source, module) == []


@pytest.mark.parametrize(
    "source, found",
    [
        pytest.param("import sqlite3", ["sqlite3"], id="import"),
        pytest.param("import msgspec.json as j", ["msgspec.json"], id="import-submodule"),
        pytest.param(
            "from starlette.requests import Request", ["starlette.requests", "starlette.requests.Request"],
            id="from-import",
        ),
        pytest.param("def f():\n    import uvicorn\n", ["uvicorn"], id="inside-a-function"),
        pytest.param(
            "from idstitch.store.sqlite import open_database",
            ["idstitch.store.sqlite", "idstitch.store.sqlite.open_database"],
            id="store",
        ),
        pytest.param("from idstitch import server", ["idstitch.server"], id="package-attribute"),
        pytest.param("from .ingest import pipeline", ["idstitch.ingest", "idstitch.ingest.pipeline"], id="relative"),
        pytest.param("from . import store", ["idstitch.store"], id="relative-package"),
        pytest.param("import fastapi", ["fastapi"], id="fastapi"),
        pytest.param("import sqlite_utils\nfrom idstitch.storey import x", [], id="prefix-is-not-a-match"),
        pytest.param("import json\nfrom idstitch.ids import normalize_distinct_id", [], id="allowed"),
    ],
)
def test_forbidden_import_check_sees_every_form_of_import(source: str, found: list[str]) -> None:
    assert forbidden_imports(source, "engine") == found
