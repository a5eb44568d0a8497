"""A long-lived app for the fuzz tests (Hypothesis runs many examples against one server), with
the rate limits off so that only the input decides the answer.

A module marked `both_stores` gets one such app on SQLite and one on PostgreSQL (`fuzz_store`).

The fuzz budget per property is the Hypothesis profile's (tests/conftest.py: 40 locally, 300
when CI is set); `IDSTITCH_FUZZ_EXAMPLES` overrides it for a longer run, e.g.
`IDSTITCH_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest tests/security`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from idstitch.server.app import create_app
from idstitch.server.state import ServerConfig
from tests.conftest import INGEST_TOKEN, SECRET_KEY, STORES, _drop_quietly
from tests.postgres_server import PostgresServer
from tests.store_contents import TableDigest, table_digests

FUZZ_EXAMPLES = int(os.environ.get("IDSTITCH_FUZZ_EXAMPLES") or settings.default.max_examples)
fuzz_settings = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


def fuzz_config(data_dir: Path, database: str | None = None) -> ServerConfig:
    return ServerConfig(
        data_dir=data_dir, database=database, ingest_token=INGEST_TOKEN, secret_key=SECRET_KEY, ingest_rate_limit=0,
        api_rate_limit=0, max_body_bytes=2 * 1024 * 1024,
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`fuzz_store` as the root conftest's `store`, once per module and store."""
    if "fuzz_store" in metafunc.fixturenames:
        both = metafunc.definition.get_closest_marker("both_stores") is not None
        metafunc.parametrize("fuzz_store", STORES if both else STORES[:1], indirect=True, scope="module")


@pytest.fixture(scope="module")
def fuzz_store(request: pytest.FixtureRequest) -> str | None:
    """The `--database` of the module's fuzz app: None (SQLite), or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    from idstitch.store.backends import PostgresStore

    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"fuzz_{uuid.uuid4().hex[:12]}"
    dsn = server.create_database(name)
    request.addfinalizer(lambda: _drop_quietly(server, name))
    PostgresStore(dsn).prepare()
    return dsn


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory: pytest.TempPathFactory, fuzz_store: str | None) -> Iterator[TestClient]:
    config = fuzz_config(tmp_path_factory.mktemp("fuzz") / "data", fuzz_store)
    with TestClient(create_app(config), raise_server_exceptions=False) as client:
        client.config = config  # type: ignore[attr-defined]
        yield client


def store_contents(client: TestClient) -> dict[str, TableDigest]:
    """A digest of every table of the fuzz app's store (tests/store_contents.py)."""
    conn = client.config.store().connect(read_only=True)  # type: ignore[attr-defined]
    try:
        return table_digests(conn)
    finally:
        conn.close()


def stored_uuids(config: ServerConfig, uuids: list[str]) -> set[str]:
    """Which of `uuids` the store holds events of, read through the store."""
    conn = config.store().connect(read_only=True)
    try:
        marks = ",".join("?" * len(uuids))
        return {r[0] for r in conn.execute(f"SELECT uuid FROM events WHERE uuid IN ({marks})", uuids)}
    finally:
        conn.close()
