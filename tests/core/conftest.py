"""Fixtures for the core tests: the engine on a real SQLite file in tmp_path."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from idstitch.settings import DEFAULT_PROJECT_SETTINGS
from idstitch.store.postgres import PostgresWriteSession
from idstitch.store.sqlite import SQLiteWriteSession, open_database
from idstitch.store.transactions import WriteSession
from tests.core.harness import RECEIVED_AT, Engine


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database file with every migration applied, copied for each test (migrating costs fsyncs)."""
    path = tmp_path_factory.mktemp("template") / "idstitch.db"
    open_database(path).close()  # closing the last connection checkpoints the WAL into the file
    return path


@pytest.fixture
def make_engine(tmp_path: Path, migrated_database: Path, store: str | None) -> Iterator[Callable[..., Engine]]:
    """`make_engine(max_user_ids=2, ...)`: an engine whose project has those settings changed,
    on a SQLite file, or on PostgreSQL in modules marked `both_stores` (the `store` fixture)."""
    engines: list[Engine] = []

    def make(**changes: Any) -> Engine:
        settings = DEFAULT_PROJECT_SETTINGS.updated(changes)
        if store is not None:
            assert not engines, "one PostgreSQL database per test: make one engine"
            session: WriteSession = PostgresWriteSession(store, lambda: RECEIVED_AT)
        else:
            path = tmp_path / f"idstitch-{len(engines)}.db"
            shutil.copyfile(migrated_database, path)
            session = SQLiteWriteSession(path, lambda: RECEIVED_AT)
            # These tests are about the rules, not durability: skip the fsync of every commit.
            session.conn.execute("PRAGMA synchronous = OFF")
        engine = Engine(session, settings)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine()
