"""No module above the store knows which database it talks to (design.md "The flow of data").

Modules outside `idstitch/store/` may use the store interface (`store.backends`, `Connection`,
the dialect's pieces) but never a backend: no `sqlite3` or `psycopg`, no `store.sqlite` or
`store.postgres`, and no asking the dialect for its name. Parsed, never imported, as in
tests/core/test_core_imports.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.core.test_core_imports import PACKAGE_DIR, imported_modules

BACKENDS = ("sqlite3", "psycopg", "idstitch.store.sqlite", "idstitch.store.postgres")
ABOVE_THE_STORE = sorted(
    path for path in PACKAGE_DIR.rglob("*.py") if "store" not in path.relative_to(PACKAGE_DIR).parts
)


def _module(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE_DIR).with_suffix("").parts)


def backend_knowledge(source: str, module: str) -> list[str]:
    tree = ast.parse(source)
    found = sorted(
        name for name in imported_modules(source, module)
        if any(name == bad or name.startswith(bad + ".") for bad in BACKENDS)
    )
    found += [
        f"line {node.lineno}: dialect.name"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr == "name"
        and isinstance(node.value, ast.Attribute) and node.value.attr == "dialect"
    ]
    return found


@pytest.mark.parametrize("path", ABOVE_THE_STORE, ids=_module)
def test_modules_above_the_store_do_not_know_the_database(path: Path) -> None:
    assert backend_knowledge(path.read_text(), _module(path)) == []


@pytest.mark.parametrize(
    "source, found",
    [
        pytest.param("import sqlite3", ["sqlite3"], id="sqlite3"),
        pytest.param("from psycopg import errors", ["psycopg", "psycopg.errors"], id="psycopg"),
        pytest.param("from idstitch.store.postgres import connect", ["idstitch.store.postgres",
                                                                     "idstitch.store.postgres.connect"], id="backend"),
        pytest.param("if conn.dialect.name == 'sqlite': pass", ["line 1: dialect.name"], id="dialect-name"),
        pytest.param("from idstitch.store.backends import open_store", [], id="interface"),
    ],
)
def test_the_check_sees_what_it_forbids(source: str, found: list[str]) -> None:
    assert backend_knowledge(source, "server.example") == found
