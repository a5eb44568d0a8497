"""Fixtures for the core tests: the engine on a real SQLite file in tmp_path."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from idstitch.settings import DEFAULT_PROJECT_SETTINGS
from idstitch.store.sqlite import open_database
from tests.core.harness import Engine


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database file with every migration applied, copied for each test (migrating costs fsyncs)."""
    path = tmp_path_factory.mktemp("template") / "idstitch.db"
    open_database(path).close()  # closing the last connection checkpoints the WAL into the file
    return path


@pytest.fixture
def make_engine(tmp_path: Path, migrated_database: Path) -> Iterator[Callable[..., Engine]]:
    """`make_engine(max_user_ids=2, ...)`: an engine whose project has those settings changed."""
    engines: list[Engine] = []

    def make(**changes: Any) -> Engine:
        path = tmp_path / f"idstitch-{len(engines)}.db"
        shutil.copyfile(migrated_database, path)
        engine = Engine(path, DEFAULT_PROJECT_SETTINGS.updated(changes))
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine()
