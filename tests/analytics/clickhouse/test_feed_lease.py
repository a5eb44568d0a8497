"""Servers sharing a PostgreSQL store share its ClickHouse copy, and one feeds it at a time: the
one holding the feed's lease ships, the others read the copy's position for their lag; when the
holder's session ends, the next to ask takes over (analytics/feeder.py, store/feed.py)."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from idstitch.analytics.feeder import Feeder
from idstitch.clock import utc_now
from idstitch.server.app import create_app
from idstitch.server.state import ServerConfig
from idstitch.store.dialects import FEED_LOCK
from idstitch.store.postgres import PostgresConnection
from tests.conftest import INGEST_TOKEN, SECRET_KEY

pytestmark = pytest.mark.chdb

GRACE = 0.3


def _send(client: TestClient, first: int, count: int) -> None:
    batch = [{"type": "track", "distinct_id": f"anon-{i % 7}", "event": "$pageview", "timestamp": f"2026-11-{1 + i % 28:02d}T10:00:00Z"}
             for i in range(first, first + count)]
    response = client.post("/ingest/batch", json={"token": INGEST_TOKEN, "batch": batch})
    assert response.status_code == 200, response.text


def _holder(admin: PostgresConnection) -> int:
    """The backend pid holding the feed's lease."""
    row = admin.execute(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = ?::bigint::oid AND objid = ?::bigint::oid",
        (FEED_LOCK >> 32, FEED_LOCK & 0xFFFF_FFFF),
    ).fetchone()
    return int(row[0])


def test_one_feeder_ships_and_another_takes_over_when_its_session_ends(clickhouse, postgres_dsn, tmp_path):
    config = ServerConfig(data_dir=tmp_path / "data", database=postgres_dsn, ingest_token=INGEST_TOKEN,
                          secret_key=SECRET_KEY, analytics="off")
    with TestClient(create_app(config)) as client:
        store = client.app.state.idstitch.store
        admin = PostgresConnection(postgres_dsn)
        first = Feeder(store.connect, clickhouse, now=utc_now, lease_grace=GRACE)
        second = Feeder(store.connect, clickhouse, now=utc_now, lease_grace=GRACE)
        try:
            _send(client, 0, 40)
            assert (first.step(), second.step()) == (0, 0)  # the first took the lease: it waits its grace
            assert not first.lag.feeding and not second.lag.feeding
            time.sleep(GRACE)
            assert first.catch_up().caught_up and first.lag.feeding
            assert second.step() == 0
            assert (second.lag.position, second.lag.caught_up, second.lag.feeding) == (first.lag.position, True, False)

            _send(client, 40, 20)
            lag = second.catch_up(seconds=0.3)  # it never ships: the copy stays behind
            assert (lag.caught_up, lag.behind.seq, lag.feeding) == (False, 20, False)
            assert first.catch_up().caught_up
            assert second.catch_up().caught_up

            held_by = _holder(admin)
            admin.execute("SELECT pg_terminate_backend(?)", (held_by,))
            _send(client, 60, 30)
            assert second.step() == 0  # took the lease over: its grace first
            assert _holder(admin) != held_by
            time.sleep(GRACE)
            assert second.catch_up().caught_up and second.lag.feeding
            assert first.step() == 0 and not first.lag.feeding  # its new session finds the lease taken
            assert first.lag.position == second.lag.position

            copied = clickhouse.reader().execute("SELECT count(), uniqExact(seq), max(seq) FROM events").fetchone()
            stored = admin.execute("SELECT count(*), count(DISTINCT seq), max(seq) FROM events").fetchone()
            assert tuple(copied) == tuple(stored) == (90, 90, stored[2])
        finally:
            first.stop()
            second.stop()
            admin.close()
