"""The ClickHouse engine's tests run on chdb, in a pytest process of their own (`pytest -m chdb`,
as `make test` runs them after installing requirements-chdb.lock): chdb hosts one engine per
process, so the session makes one and each test starts it over.

Nothing here imports chdb or clickhouse-connect until a test asks for the engine, so the main run
(`-m "not chdb"`) collects these modules without them installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient

from idstitch.analytics.feeder import Feeder
from idstitch.clock import utc_now
from idstitch.server.app import create_app
from idstitch.server.state import ServerConfig
from idstitch.store.connection import Connection
from tests.conftest import INGEST_TOKEN, SECRET_KEY

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


@dataclass
class FedCopy:
    """A real app on a SQLite file (its own analytics off), and a feeder copying its store into
    the ClickHouse engine."""

    api: TestClient
    store: Connection
    engine: ClickHouseEngine
    feeder: Feeder
    project_id: int

    def send(self, *messages: dict[str, Any]) -> None:
        response = self.api.post("/ingest/batch", json={"token": INGEST_TOKEN, "batch": list(messages)})
        assert response.status_code == 200, response.text
        assert all(r["status"] in ("accepted", "duplicate") for r in response.json()["results"]), response.text

    def catch_up(self) -> None:
        lag = self.feeder.catch_up(seconds=120)
        assert lag.caught_up, lag.to_json()

    def person_id(self, distinct_id: str) -> str:
        response = self.api.get("/api/persons", params={"distinct_id": distinct_id})
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    def store_mapping(self) -> list[tuple[str, str]]:
        return sorted((r[0], r[1]) for r in self.store.execute("SELECT distinct_id, person_id FROM distinct_ids"))

    def copy_mapping(self) -> list[tuple[str, str]]:
        return sorted((r[0], r[1]) for r in self.engine.reader().execute("SELECT distinct_id, person_id FROM distinct_ids"))


@pytest.fixture
def fed(clickhouse: ClickHouseEngine, tmp_path: Path) -> Iterator[FedCopy]:
    config = ServerConfig(
        data_dir=tmp_path / "data", ingest_token=INGEST_TOKEN, secret_key=SECRET_KEY, analytics="off"
    )
    with TestClient(create_app(config)) as client:
        client.headers["Authorization"] = f"Bearer {SECRET_KEY}"
        store = client.app.state.idstitch.store  # type: ignore[attr-defined]
        feeder = Feeder(lambda: store.connect(read_only=True), clickhouse, now=utc_now)
        reads = store.connect(read_only=True)
        project_id = int(reads.execute("SELECT id FROM projects ORDER BY id LIMIT 1").fetchone()[0])
        try:
            yield FedCopy(client, reads, clickhouse, feeder, project_id)
        finally:
            feeder.stop()
            reads.close()
