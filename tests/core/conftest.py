"""Fixtures for the core tests: the engine on a real SQLite file in tmp_path."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from idstitch.settings import DEFAULT_PROJECT_SETTINGS
from tests.core.harness import Engine


@pytest.fixture
def make_engine(tmp_path: Path) -> Iterator[Callable[..., Engine]]:
    """`make_engine(max_user_ids=2, ...)`: an engine whose project has those settings changed."""
    engines: list[Engine] = []

    def make(**changes: Any) -> Engine:
        settings = DEFAULT_PROJECT_SETTINGS.updated(changes)
        engine = Engine(tmp_path / f"idstitch-{len(engines)}.db", settings)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine()
