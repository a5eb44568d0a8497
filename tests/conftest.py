"""Shared fixtures: a real idstitch app on a real SQLite file, driven in-process or as a process."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import settings

from idstitch.server.app import create_app
from idstitch.server.state import ServerConfig
from tests.postgres_server import PostgresServer, PostgresUnavailable

INGEST_TOKEN = "phc_test_token"
SECRET_KEY = "sk_test_secret"


STORES = ("sqlite", "postgres")


def running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


# Hypothesis budgets for the fuzz properties (tests/security): "dev" keeps a local run short;
# "ci", chosen when CI is set, runs a few hundred examples of each. HYPOTHESIS_PROFILE picks one.
settings.register_profile("dev", max_examples=40)
settings.register_profile("ci", max_examples=300, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if running_in_ci() else "dev"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_stores: run the module's app tests on SQLite and on PostgreSQL (the `store` fixture)"
    )
    config.addinivalue_line("markers", "sqlite_only: a test of a both_stores module about the SQLite file itself")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests whose app needs a store run on SQLite, and on PostgreSQL too where marked `both_stores`."""
    if "store" in metafunc.fixturenames:
        definition = metafunc.definition
        both = definition.get_closest_marker("both_stores") and not definition.get_closest_marker("sqlite_only")
        metafunc.parametrize("store", STORES if both else STORES[:1], indirect=True)


@pytest.fixture
def store(request: pytest.FixtureRequest) -> str | None:
    """The `--database` of the app under test: None (the SQLite file), or a PostgreSQL database
    with idstitch's schema and no rows."""
    if request.param == "sqlite":
        return None
    dsn: str = request.getfixturevalue("postgres_tests_database")
    _empty(dsn)
    return dsn


@pytest.fixture(scope="session")
def postgres_tests_database(postgres_server: PostgresServer) -> str:
    """One migrated database for the session's tests; each test starts from it emptied
    (`TRUNCATE` costs milliseconds; creating and dropping a database costs a checkpoint each)."""
    from idstitch.store.backends import PostgresStore

    dsn = postgres_server.create_database("idstitch_tests")
    PostgresStore(dsn).prepare()
    return dsn


def _empty(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename NOT IN ('migrations', 'store_identity') AND tablename NOT LIKE 'events\\_%'"
        )]
        conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")
        conn.execute("ALTER SEQUENCE events_seq RESTART")


def _drop_quietly(server: PostgresServer, name: str) -> None:
    try:
        server.drop_database(name)
    except Exception:  # best effort: the session's server and its directory go at the end anyway
        pass


@pytest.fixture
def config(tmp_path: Path, store: str | None) -> ServerConfig:
    return ServerConfig(data_dir=tmp_path / "data", database=store, ingest_token=INGEST_TOKEN, secret_key=SECRET_KEY)


@pytest.fixture
def client(config: ServerConfig) -> Iterator[TestClient]:
    """The real app with its writer thread, on the test's store."""
    with TestClient(create_app(config)) as test_client:
        yield test_client


@pytest.fixture
def api(client: TestClient) -> httpx.Client:
    """The same app, holding the secret key."""
    client.headers["Authorization"] = f"Bearer {SECRET_KEY}"
    return client


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL (15 on Debian) for the whole session, started only when a test asks for it.

    Without the binaries: a skip locally, a failure in CI (where scripts/test-deps must have installed them).
    """
    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        if running_in_ci():
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A DSN to a fresh, empty database for this test only, named after it; dropped afterwards."""
    slug = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:40]
    name = f"t_{slug}_{uuid.uuid4().hex[:8]}"
    yield postgres_server.create_database(name)
    _drop_quietly(postgres_server, name)
