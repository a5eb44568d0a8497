"""Shared fixtures: a real idstitch app on a real SQLite file, driven in-process or as a process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from idstitch.server.app import create_app
from idstitch.server.state import ServerConfig

INGEST_TOKEN = "phc_test_token"
SECRET_KEY = "sk_test_secret"


@pytest.fixture
def config(tmp_path: Path) -> ServerConfig:
    return ServerConfig(data_dir=tmp_path / "data", ingest_token=INGEST_TOKEN, secret_key=SECRET_KEY)


@pytest.fixture
def client(config: ServerConfig) -> Iterator[TestClient]:
    """The real app with its writer thread, on a SQLite file in tmp_path."""
    with TestClient(create_app(config)) as test_client:
        yield test_client


@pytest.fixture
def api(client: TestClient) -> httpx.Client:
    """The same app, holding the secret key."""
    client.headers["Authorization"] = f"Bearer {SECRET_KEY}"
    return client
