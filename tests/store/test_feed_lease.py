"""One feeder at a time ships to an analytics copy the servers of a store share: the feed's lease
(store/feed.py `take_lease`) is a PostgreSQL session's, until that session ends; a SQLite file is
one server's, so its feeder never asks anyone."""

from __future__ import annotations

from idstitch.store import sqlite
from idstitch.store.dialects import FEED_LOCK
from idstitch.store.feed import Lease, take_lease
from idstitch.store.postgres import PostgresConnection


def test_one_session_holds_the_lease_until_it_ends(postgres_dsn):
    first, second, third = (PostgresConnection(postgres_dsn) for _ in range(3))
    try:
        assert take_lease(first) is Lease.TAKEN
        assert [take_lease(first), take_lease(second), take_lease(first)] == [Lease.HELD, Lease.ELSEWHERE, Lease.HELD]
        # Asking again never stacks the lock: one unlock frees it.
        assert first.execute("SELECT pg_advisory_unlock(?)", (FEED_LOCK,)).fetchone()[0] is True
        assert take_lease(second) is Lease.TAKEN
        third.execute("SELECT pg_terminate_backend(?)", (second.raw.info.backend_pid,))
        assert take_lease(third) is Lease.TAKEN
        # The session it had is gone; its connection's next one is a new session, without it.
        assert take_lease(second) is Lease.ELSEWHERE
    finally:
        for conn in (first, second, third):
            conn.close()


def test_the_feeder_of_a_sqlite_file_feeds_alone(tmp_path):
    conn = sqlite.open_database(tmp_path / "idstitch.sqlite3")
    try:
        assert take_lease(conn) is Lease.ALONE
        assert take_lease(conn).ships
    finally:
        conn.close()
