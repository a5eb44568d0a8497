"""The ClickHouse engine's tests run on chdb, in a pytest process of their own (`pytest -m chdb`,
as `make test` runs them after installing requirements-chdb.lock): chdb hosts one engine per
process, so the session makes one and each test starts it over.

Nothing here imports chdb or clickhouse-connect until a test asks for the engine, so the main run
(`-m "not chdb"`) collects these modules without them installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from idstitch.analytics.clickhouse_engine import ClickHouseEngine


@pytest.fixture(scope="session")
def chdb_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseEngine]:
    """The process's one chdb engine, its tables made."""
    from idstitch.analytics.clickhouse_engine import ClickHouseEngine

    engine = ClickHouseEngine.in_process(str(tmp_path_factory.mktemp("chdb")))
    engine.prepare()
    yield engine
    engine.close()


@pytest.fixture
def clickhouse(chdb_engine: ClickHouseEngine) -> ClickHouseEngine:
    """The engine, emptied: a copy of no store yet."""
    chdb_engine.start_over("")
    return chdb_engine
