"""A long-lived app for the fuzz tests (Hypothesis runs many examples against one server), with
the rate limits off so that only the input decides the answer.

The fuzz budget is bounded for CI: `IDSTITCH_FUZZ_EXAMPLES` (default 40 per property) scales it
for a longer local run, e.g. `IDSTITCH_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest tests/security`.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from idstitch.server.app import create_app
from idstitch.server.state import ServerConfig
from idstitch.store.sqlite import DATABASE_FILE
from tests.conftest import INGEST_TOKEN, SECRET_KEY

FUZZ_EXAMPLES = int(os.environ.get("IDSTITCH_FUZZ_EXAMPLES", "40"))
fuzz_settings = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


def fuzz_config(data_dir: Path) -> ServerConfig:
    return ServerConfig(
        data_dir=data_dir, ingest_token=INGEST_TOKEN, secret_key=SECRET_KEY, ingest_rate_limit=0, api_rate_limit=0,
        max_body_bytes=2 * 1024 * 1024,
    )


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    config = fuzz_config(tmp_path_factory.mktemp("fuzz") / "data")
    with TestClient(create_app(config), raise_server_exceptions=False) as client:
        client.database = config.data_dir / DATABASE_FILE  # type: ignore[attr-defined]
        yield client


def stored_uuids(database: Path, uuids: list[str]) -> set[str]:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        marks = ",".join("?" * len(uuids))
        return {r[0] for r in conn.execute(f"SELECT uuid FROM events WHERE uuid IN ({marks})", uuids)}
    finally:
        conn.close()
