"""An erasure is reported complete only when the erased bytes have left the store's files: on
SQLite the database file and its WAL, even while another connection holds an old snapshot."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from tests.privacy.conftest import send, sqlite_file
from tests.privacy.test_delete import ADA, ada_everywhere

pytestmark = pytest.mark.both_stores

# Values Ada's person held before they were overwritten, or merged away: not rows any more, but
# their bytes were once in the file's pages.
ADA_EARLIER = ["ada.old@example.com", "ada@work.example", "user-ada-work"]


def ada_with_history(api) -> None:
    ada_everywhere(api)
    send(api, "identify", user_id="user-ada-42", set={"email": "ada.old@example.com"}, timestamp="2020-01-01T00:00:00Z")
    send(api, "identify", user_id="user-ada-work", anonymous_id="work-anon", set={"email": "ada@work.example"})
    merged = api.post("/api/persons/merge", json={"target_distinct_id": "user-ada-42", "source_distinct_id": "user-ada-work"})
    assert merged.status_code == 200, merged.text


def file_mentions(config) -> list[str]:
    """Ada's ids and emails found anywhere in the bytes of the database file and its WAL."""
    database = sqlite_file(config)
    raw = b"".join(p.read_bytes() for p in database.parent.iterdir() if p.name.startswith(database.name))
    return [n for n in ADA + ADA_EARLIER if n.encode() in raw]


def copy_mentions(config) -> list[str]:
    """Ada's ids and emails found in the bytes of the analytics copy's files."""
    raw = b"".join(p.read_bytes() for p in config.data_dir.iterdir() if p.name.startswith("analytics.duckdb"))
    return [n for n in ADA + ADA_EARLIER if n.encode() in raw]


def open_snapshot(config) -> sqlite3.Connection:
    """Another process's long read: a transaction holding a snapshot from before the erasure."""
    reader = sqlite3.connect(sqlite_file(config), isolation_level=None, check_same_thread=False)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM events").fetchone()
    return reader


@pytest.mark.sqlite_only
def test_an_erasure_leaves_no_byte_of_the_person_in_the_database_or_wal(api, config):
    ada_with_history(api)
    assert set(file_mentions(config)) >= {"ada@example.com", "ada.old@example.com", "ada@work.example"}

    response = api.post("/api/privacy/delete", json={"email": "ada@example.com", "suppress": True})

    assert response.status_code == 200, response.text
    assert response.json()["complete"] is True and response.json()["pending"] is None
    assert file_mentions(config) == []


@pytest.mark.sqlite_only
def test_an_erasure_leaves_no_byte_of_the_person_in_the_analytics_copy(api, config):
    ada_with_history(api)
    counted = api.post("/api/counts", json={"measure": "events", "interval": None})
    assert counted.json()["answered_by"]["engine"] == "duckdb"
    assert set(copy_mentions(config)) >= {"ada@example.com", "user-ada-42"}

    response = api.post("/api/privacy/delete", json={"email": "ada@example.com", "suppress": True})

    assert response.status_code == 200, response.text
    assert response.json()["complete"] is True
    assert copy_mentions(config) == []
    after = api.post("/api/counts", json={"measure": "persons", "interval": None}).json()
    assert after["answered_by"]["engine"] == "duckdb"
    assert after["total"] == api.post("/api/persons/query", json={"limit": 1000}).json()["results"].__len__()


@pytest.mark.sqlite_only
def test_an_erasure_waits_for_a_short_read_to_end_before_answering(api, config):
    ada_with_history(api)
    reader = open_snapshot(config)
    threading.Timer(1.0, reader.close).start()

    started = time.monotonic()
    response = api.post("/api/privacy/delete", json={"email": "ada@example.com"})

    assert response.status_code == 200, response.text
    assert response.json()["complete"] is True
    assert time.monotonic() - started >= 0.9
    assert file_mentions(config) == []


@pytest.mark.sqlite_only
def test_an_erasure_held_up_by_a_long_read_says_it_is_pending_until_the_bytes_are_gone(api, config):
    ada_with_history(api)
    reader = open_snapshot(config)
    try:
        response = api.post("/api/privacy/delete", json={"email": "ada@example.com"})

        assert response.status_code == 202, response.text
        answer = response.json()
        assert answer["complete"] is False and "read" in answer["pending"]
        assert answer["erased"]["persons"] == 2  # the rows are gone; their bytes are what is pending
        assert api.get("/api/privacy/persons", params={"email": "ada@example.com"}).json()["persons"] == []
        status = api.get("/api/privacy/erasure")
        assert status.status_code == 200 and status.json()["complete"] is False
        assert file_mentions(config) != []
    finally:
        reader.close()

    assert api.get("/api/privacy/erasure").json() == {"complete": True, "pending": None, "remains": []}
    assert file_mentions(config) == []


def test_on_postgresql_an_erasure_vacuums_its_rows_once_older_snapshots_end(api, config):
    if config.database is None:
        pytest.skip("PostgreSQL's dead row versions; the SQLite file is tested above")
    import psycopg

    ada_everywhere(api)
    with psycopg.connect(config.database, autocommit=True) as reader:
        reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        reader.execute("SELECT count(*) FROM events").fetchone()  # its snapshot still sees Ada's rows
        response = api.post("/api/privacy/delete", json={"email": "ada@example.com"})

        assert response.status_code == 202, response.text
        assert "VACUUM cannot remove them yet" in response.json()["pending"]
        assert api.get("/api/privacy/erasure").json()["complete"] is False
        reader.execute("COMMIT")

    status = api.get("/api/privacy/erasure").json()
    assert status["complete"] is True and status["pending"] is None
    # What PostgreSQL keeps beyond a VACUUM is said, not hidden.
    assert any("free space" in r for r in status["remains"]) and any("WAL" in r for r in status["remains"])
    with psycopg.connect(config.database, autocommit=True) as conn:
        deadline = time.monotonic() + 5
        while not (vacuumed := conn.execute(
            "SELECT vacuum_count > 0 FROM pg_stat_all_tables WHERE relname = 'person_attributes'"
        ).fetchone()[0]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert vacuumed
