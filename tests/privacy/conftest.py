"""Helpers for the privacy tests: send events as the SDKs do, and scan the SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from idstitch.server.state import ServerConfig
from idstitch.store.sqlite import DATABASE_FILE
from tests.conftest import INGEST_TOKEN

NATIVE = {"Authorization": f"Bearer {INGEST_TOKEN}"}


def send(client, message_type: str, **message) -> dict:
    response = client.post(f"/ingest/{message_type}", json=message, headers=NATIVE)
    assert response.status_code == 200, response.text
    return response.json()


def capture(client, *events: dict) -> dict:
    response = client.post("/batch/", json={"api_key": INGEST_TOKEN, "batch": list(events)})
    assert response.status_code == 200, response.text
    return response.json()


def mentions_in_database(database: Path, needles: list[str]) -> list[tuple[str, str, str]]:
    """(table, column, needle) for every value of every column of every table that contains a
    needle, compared as text, case-insensitively."""
    conn = sqlite3.connect(database)
    try:
        found = []
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            columns = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for column, value in zip(columns, row):
                    if value is None:
                        continue
                    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
                    found += [(table, column, n) for n in needles if n.lower() in text.lower()]
        return found
    finally:
        conn.close()


def mentions_in_text(text: str, needles: list[str]) -> list[str]:
    return [n for n in needles if n.lower() in text.lower()]


@pytest.fixture
def database(config: ServerConfig) -> Path:
    return config.data_dir / DATABASE_FILE
