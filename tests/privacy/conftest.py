"""Helpers for the privacy tests: send events as the SDKs do, and scan every table of the store."""

from __future__ import annotations

from pathlib import Path

from idstitch.server.state import ServerConfig
from idstitch.store.connection import Connection
from idstitch.store.sqlite import DATABASE_FILE
from tests.conftest import INGEST_TOKEN

NATIVE = {"Authorization": f"Bearer {INGEST_TOKEN}"}

# The tables of each store, partitions of PostgreSQL's `events` left out (`events` reads them all).
_TABLES = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table'",
    "postgresql": "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
    " AND relkind IN ('r', 'p') AND NOT relispartition",
}


def send(client, message_type: str, **message) -> dict:
    response = client.post(f"/ingest/{message_type}", json=message, headers=NATIVE)
    assert response.status_code == 200, response.text
    return response.json()


def capture(client, *events: dict) -> dict:
    response = client.post("/batch/", json={"api_key": INGEST_TOKEN, "batch": list(events)})
    assert response.status_code == 200, response.text
    return response.json()


def store_options(config: ServerConfig) -> list[str]:
    """The CLI options naming the test's store."""
    return ["--data-dir", str(config.data_dir), *(["--database", config.database] if config.database else [])]


def mentions_in_database(config: ServerConfig, needles: list[str]) -> list[tuple[str, str, str]]:
    """(table, column, needle) for every value of every column of every table of the store that
    contains a needle, compared as text, case-insensitively."""
    conn = config.store().connect()
    try:
        found = []
        for (table,) in conn.execute(_TABLES[conn.dialect.name]).fetchall():
            for row in conn.execute(f'SELECT * FROM "{table}"').fetchall():
                for column in row.keys():
                    value = row[column]
                    if value is None:
                        continue
                    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
                    found += [(table, column, n) for n in needles if n.lower() in text.lower()]
        return found
    finally:
        conn.close()


def mentions_in_text(text: str, needles: list[str]) -> list[str]:
    return [n for n in needles if n.lower() in text.lower()]


def read_rows(config: ServerConfig, sql: str) -> list[tuple]:
    """The rows of a query, read through the test's store."""
    conn: Connection = config.store().connect()
    try:
        return [tuple(row) for row in conn.execute(sql).fetchall()]
    finally:
        conn.close()


def sqlite_file(config: ServerConfig) -> Path:
    return config.data_dir / DATABASE_FILE
