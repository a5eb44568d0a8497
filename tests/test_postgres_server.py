"""The PostgreSQL test harness itself: fresh databases, restarts that keep data, the deadlock counter."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from tests.postgres_server import PostgresServer


def test_fresh_database_accepts_a_connection(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        # Fresh and empty: no tables of anyone else's.
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        assert tables == (0,)


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_restart_keeps_committed_data_and_accepts_new_connections(
    postgres_server: PostgresServer, postgres_dsn: str, mode: str
) -> None:
    with psycopg.connect(postgres_dsn) as conn:
        conn.execute("CREATE TABLE kept (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO kept VALUES (1, 'before restart')")
    old = psycopg.connect(postgres_dsn)

    postgres_server.restart(mode=mode)  # immediate: no checkpoint, so the committed row comes back by WAL recovery

    with pytest.raises(psycopg.OperationalError):
        old.execute("SELECT 1")  # the old session is gone; clients have to reconnect
    old.close()
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT id, note FROM kept").fetchall() == [(1, "before restart")]


def test_deadlocks_counts_a_real_deadlock(postgres_server: PostgresServer, postgres_dsn: str) -> None:
    before = postgres_server.deadlocks()
    assert isinstance(before, int)
    with psycopg.connect(postgres_dsn, autocommit=True) as setup:
        setup.execute("CREATE TABLE rows (id int PRIMARY KEY, v int)")
        setup.execute("INSERT INTO rows VALUES (1, 0), (2, 0)")

    errors: list[Exception] = []
    with psycopg.connect(postgres_dsn) as first, psycopg.connect(postgres_dsn) as second:
        first.execute("UPDATE rows SET v = 1 WHERE id = 1")
        second.execute("UPDATE rows SET v = 2 WHERE id = 2")

        def cross(conn: psycopg.Connection[tuple[object, ...]], row: int) -> None:
            try:
                conn.execute("UPDATE rows SET v = 3 WHERE id = %s", (row,))
            except psycopg.errors.DeadlockDetected as exc:
                errors.append(exc)
            conn.rollback()

        waiter = threading.Thread(target=cross, args=(first, 2))
        waiter.start()
        time.sleep(0.2)  # let `first` block on row 2 before `second` closes the cycle on row 1
        cross(second, 1)
        waiter.join(timeout=30)
    assert len(errors) == 1

    # The victim's count is flushed to pg_stat_database when its session ends (it just did), not at once.
    deadline = time.monotonic() + 10
    while postgres_server.deadlocks() == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert postgres_server.deadlocks() == before + 1
