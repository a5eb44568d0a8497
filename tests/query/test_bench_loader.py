"""bench/query.py's bulk loader writes what the engine writes, so its numbers are about real rows."""

from __future__ import annotations

import importlib.util
import sqlite3
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "query.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_query", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_query"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench_query", None)


def rows(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute(sql).fetchall(), key=repr)
    finally:
        conn.close()


TABLES = {
    "persons": "SELECT id, created_at, is_identified FROM persons",
    "mapping": "SELECT distinct_id, person_id, is_user_id, created_at FROM distinct_ids",
    "attributes": "SELECT person_id, key, value, type, kind, time, event_uuid FROM person_attributes",
    "events": "SELECT uuid, distinct_id, event, timestamp, session_id, properties, ops FROM events",
    "sessions": "SELECT * FROM sessions",
    "links": "SELECT kind, actor, target_distinct_id, source_distinct_id, target_person_id, source_person_id,"
             " event_uuid, decision_row, outcome, reason FROM links",
    "warnings": "SELECT type, event_uuid, distinct_ids, details FROM warnings",
}


def test_the_bulk_loader_writes_the_rows_the_engine_writes(bench, tmp_path):
    engine_db, bulk_db = tmp_path / "engine.db", tmp_path / "bulk.db"
    assert bench.engine_load(engine_db, 3000, seed=7) == bench.bulk_load(bulk_db, 3000, seed=7)
    for name, sql in TABLES.items():
        assert rows(engine_db, sql) == rows(bulk_db, sql), name
    identified = rows(bulk_db, "SELECT count(*) FROM persons WHERE is_identified")[0][0]
    merged = rows(bulk_db, "SELECT count(*) FROM links WHERE outcome = 'merged'")[0][0]
    assert identified > 0 and merged > 0  # the workload exercises logins and device merges
