"""The embedded analytics engine: a DuckDB file in the data directory beside the SQLite file.

One process opens it (DuckDB locks the file); the feeder writes through the process's own
connection, and each query thread reads through a cursor of its own (DuckDB's connections to
one database, each a consistent snapshot). Batches arrive as Arrow tables, appended in one
statement each (row-by-row inserts would cost a hundred times more).

The copy numbers each distinct id it sees once (`id_keys`), and its events and mapping hold the
number: joining events to their persons on an integer costs half of a join on the id's text
(dialect `same_distinct_id`). Person ids (UUIDs, ids.person_id_for) are DuckDB UUIDs, 16 bytes
that group and join as integers do, and sort as their texts; reads give them back as texts.
A copy of another format is made again from nothing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from idstitch.analytics.duckdb_sql import DUCKDB, register_functions
from idstitch.analytics.engine import CopyState, FeedBatch, Rows, refuse_writes
from idstitch.store.dialects import Dialect
from idstitch.store.feed import FeedPosition

ANALYTICS_FILE = "analytics.duckdb"

# The copy's format: a copy in another (an older idstitch's) is dropped and made again.
FORMAT = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS copy_format (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq BIGINT NOT NULL, project_id INTEGER NOT NULL, id_key BIGINT NOT NULL, event VARCHAR NOT NULL,
    timestamp VARCHAR NOT NULL, session_id VARCHAR, properties VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS id_keys (project_id INTEGER NOT NULL, distinct_id VARCHAR NOT NULL, id_key BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS distinct_ids (project_id INTEGER NOT NULL, id_key BIGINT NOT NULL, person_id UUID NOT NULL);
CREATE TABLE IF NOT EXISTS persons (id UUID NOT NULL, project_id INTEGER NOT NULL, created_at VARCHAR NOT NULL, is_identified INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS person_attributes (person_id UUID NOT NULL, key VARCHAR NOT NULL, value VARCHAR, kind VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS copy_state (
    store_id VARCHAR, seq BIGINT NOT NULL, person_change BIGINT NOT NULL, event_change BIGINT NOT NULL
);
"""

_TABLES = ("events", "id_keys", "distinct_ids", "persons", "person_attributes")

_EVENTS = pa.schema([
    ("seq", pa.int64()), ("project_id", pa.int32()), ("distinct_id", pa.string()), ("event", pa.string()),
    ("timestamp", pa.string()), ("session_id", pa.string()), ("properties", pa.string()),
])
_IDS = pa.schema([("project_id", pa.int32()), ("distinct_id", pa.string()), ("person_id", pa.string())])
_PERSONS = pa.schema([("id", pa.string()), ("project_id", pa.int32()), ("created_at", pa.string()), ("is_identified", pa.int32())])
_ATTRIBUTES = pa.schema([("person_id", pa.string()), ("key", pa.string()), ("value", pa.string()), ("kind", pa.string())])
_SEQS = pa.schema([("seq", pa.int64())])
_PERSON_IDS = pa.schema([("person_id", pa.string())])
_KEPT = pa.schema([("project_id", pa.int32()), ("person_id", pa.string())])

# The distinct ids of a batch the copy has not numbered yet, numbered after the greatest it has.
_NUMBER_NEW_IDS = """
INSERT INTO id_keys
SELECT n.project_id, n.distinct_id, (SELECT coalesce(max(id_key), 0) FROM id_keys) + row_number() OVER ()
FROM (SELECT project_id, distinct_id FROM feed_events UNION SELECT project_id, distinct_id FROM feed_ids) n
WHERE NOT EXISTS (SELECT 1 FROM id_keys k WHERE k.project_id = n.project_id AND k.distinct_id = n.distinct_id)
"""
_KEYED = "JOIN id_keys k ON k.project_id = f.project_id AND k.distinct_id = f.distinct_id"
# The batch's changed persons (and the persons an erasure kept) as the copy's UUIDs.
_CHANGED = "(SELECT CAST(person_id AS UUID) FROM feed_changed)"
_KEPT_IDS = "(SELECT CAST(person_id AS UUID) FROM feed_kept)"


def _arrow(schema: pa.Schema, rows: Sequence[Sequence[Any]]) -> pa.Table:
    columns = list(zip(*rows)) if rows else [()] * len(schema)
    return pa.table([pa.array(list(c), type=f.type) for c, f in zip(columns, schema)], schema=schema)


class DuckDBConnection:
    """A DuckDB cursor as the `Connection` the query layer holds (`?` marks, tuples back). A
    result is read whole at once: DuckDB refuses a connection's next statement while one is open."""

    dialect: Dialect = DUCKDB

    def __init__(self, engine: DuckDBEngine) -> None:
        self._engine = engine
        self._generation = engine.generation
        self._cursor = engine.open_cursor()
        self._interrupted = False

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Rows:
        with self._engine.reading():
            # A new cursor after the file was replaced (forget_deleted), or after an interrupt
            # that came as its query ended (it must not stop the next one).
            if self._interrupted or self._generation != self._engine.generation:
                self._cursor.close()
                self._cursor, self._generation, self._interrupted = self._engine.open_cursor(), self._engine.generation, False
            result = self._cursor.execute(sql, list(parameters))
            rows = result.fetchall()
            uuids = [i for i, column in enumerate(result.description or ()) if str(column[1]) == "UUID"]
            return Rows([_as_texts(row, uuids) for row in rows] if uuids else rows)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Rows:
        return refuse_writes()

    def interrupt(self) -> None:
        """Stop the running query (from another thread: DuckDBDialect.time_limit)."""
        self._interrupted = True
        self._cursor.interrupt()

    def close(self) -> None:
        self._cursor.close()


class DuckDBEngine:
    """The analytics copy in a DuckDB file (`analytics.duckdb` in the data directory)."""

    name = "duckdb"

    def __init__(self, path: Path, *, memory_limit: str = "1GB", threads: int = 2) -> None:
        self.path = path
        self._memory_limit = memory_limit
        self._threads = threads
        self._db: duckdb.DuckDBPyConnection | None = None
        self._local = threading.local()
        self._readers: list[DuckDBConnection] = []
        self._lock = threading.Lock()
        # Reads in progress, and the file's generation (bumped when forget_deleted replaces it).
        self._gate = threading.Condition()
        self._reads = 0
        self.generation = 0

    @property
    def description(self) -> str:
        return str(self.path)

    def _database(self) -> duckdb.DuckDBPyConnection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = duckdb.connect(
                str(self.path),
                config={"memory_limit": self._memory_limit, "threads": self._threads,
                        "autoinstall_known_extensions": False, "autoload_known_extensions": False},
            )
            db.execute("SET TimeZone = 'UTC'")
            register_functions(db)
            self._db = db
        return self._db

    def prepare(self) -> None:
        db = self._database()
        tables = {name for (name,) in db.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()").fetchall()}
        version = db.execute("SELECT max(version) FROM copy_format").fetchall()[0][0] if "copy_format" in tables else None
        if tables and version != FORMAT:
            for table in tables:
                db.execute(f'DROP TABLE "{table}"')
        db.execute(_SCHEMA)
        if db.execute("SELECT count(*) FROM copy_format").fetchall()[0][0] == 0:
            db.execute("INSERT INTO copy_format VALUES (?)", [FORMAT])
        if db.execute("SELECT count(*) FROM copy_state").fetchall()[0][0] == 0:
            db.execute("INSERT INTO copy_state VALUES (NULL, 0, 0, 0)")

    def state(self) -> CopyState:
        [(store_id, seq, person_change, event_change)] = self._database().execute(
            "SELECT store_id, seq, person_change, event_change FROM copy_state"
        ).fetchall()
        return CopyState(store_id, FeedPosition(seq, person_change, event_change))

    def start_over(self, store_id: str) -> None:
        db = self._database()
        db.execute("BEGIN")
        try:
            for table in _TABLES:
                db.execute(f"DELETE FROM {table}")
            db.execute("UPDATE copy_state SET store_id = ?, seq = 0, person_change = 0, event_change = 0", [store_id])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("CHECKPOINT")

    def apply(self, batch: FeedBatch) -> None:
        db = self._database()
        tables = {
            "feed_events": _arrow(_EVENTS, batch.events),
            "feed_removed": _arrow(_SEQS, [(s,) for s in batch.removed_events]),
            "feed_changed": _arrow(_PERSON_IDS, [(p,) for p in batch.changed_persons]),
            "feed_ids": _arrow(_IDS, batch.persons.distinct_ids),
            "feed_persons": _arrow(_PERSONS, batch.persons.persons),
            "feed_attributes": _arrow(_ATTRIBUTES, batch.persons.attributes),
            "feed_kept": _arrow(_KEPT, [(p, i) for p, ids in batch.persons_kept.items() for i in ids]),
        }
        for name, table in tables.items():
            db.register(name, table)
        db.execute("BEGIN")
        try:
            if batch.removed_events:
                db.execute("DELETE FROM events WHERE seq IN (SELECT seq FROM feed_removed)")
            for project_id, before in batch.expired.items():
                db.execute("DELETE FROM events WHERE project_id = ? AND timestamp < ?", [project_id, before])
            if batch.events or batch.changed_persons:
                db.execute(_NUMBER_NEW_IDS)
            if batch.events:
                # In the order of the store's sequence, which is nearly time's: DuckDB skips the
                # row groups a time range cannot be in by their least and greatest timestamps.
                db.execute(
                    "INSERT INTO events SELECT f.seq, f.project_id, k.id_key, f.event, f.timestamp, f.session_id,"
                    f" f.properties FROM feed_events f {_KEYED} ORDER BY f.seq"
                )
            if batch.changed_persons:
                db.execute(f"DELETE FROM persons WHERE id IN {_CHANGED}")
                db.execute(f"DELETE FROM person_attributes WHERE person_id IN {_CHANGED}")
                db.execute(f"DELETE FROM distinct_ids WHERE person_id IN {_CHANGED}")
                # An id may have moved here from a person whose change is not in this batch.
                db.execute(f"DELETE FROM distinct_ids WHERE id_key IN (SELECT k.id_key FROM feed_ids f {_KEYED})")
                db.execute("INSERT INTO persons SELECT * FROM feed_persons")
                db.execute("INSERT INTO person_attributes SELECT * FROM feed_attributes")
                db.execute(f"INSERT INTO distinct_ids SELECT f.project_id, k.id_key, f.person_id FROM feed_ids f {_KEYED}")
            for project_id in batch.persons_kept:
                gone = f"SELECT id FROM persons WHERE project_id = ? AND id NOT IN {_KEPT_IDS}"
                db.execute(f"DELETE FROM person_attributes WHERE person_id IN ({gone})", [project_id])
                db.execute(
                    f"DELETE FROM distinct_ids WHERE project_id = ? AND person_id NOT IN {_KEPT_IDS}",
                    [project_id],
                )
                db.execute(f"DELETE FROM persons WHERE id IN ({gone})", [project_id])
                # The erased ids' texts: every id with neither a person nor an event left.
                db.execute(
                    "DELETE FROM id_keys WHERE project_id = ? AND id_key NOT IN (SELECT id_key FROM distinct_ids)"
                    " AND id_key NOT IN (SELECT id_key FROM events)",
                    [project_id],
                )
            p = batch.position
            db.execute("UPDATE copy_state SET seq = ?, person_change = ?, event_change = ?", [p.seq, p.person_change, p.event_change])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:
            for name in tables:
                db.unregister(name)

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Around each read: the file is not replaced while one runs."""
        with self._gate:
            self._reads += 1
        try:
            yield
        finally:
            with self._gate:
                self._reads -= 1
                self._gate.notify_all()

    def forget_deleted(self) -> None:
        """DuckDB keeps deleted rows' bytes in the file's free blocks: copy the database into a
        new file and put it in the old one's place, between reads. Readers reopen their cursor
        on their next query."""
        with self._gate:
            self._gate.wait_for(lambda: self._reads == 0)
            self.generation += 1
            # Every cursor closed first: an open one keeps the old database (and its file) alive.
            with self._lock:
                for conn in self._readers:
                    conn.close()
            self._replace_file()

    def _replace_file(self) -> None:
        fresh = self.path.with_name(self.path.name + ".rewrite")
        for leftover in (fresh, fresh.with_name(fresh.name + ".wal")):
            leftover.unlink(missing_ok=True)
        db = self._database()
        db.execute("CHECKPOINT")
        [(current,)] = db.execute("SELECT current_database()").fetchall()
        db.execute("ATTACH ? AS fresh", [str(fresh)])
        try:
            db.execute(f'COPY FROM DATABASE "{current}" TO fresh')
        finally:
            db.execute("DETACH fresh")
        db.close()
        self._db = None
        os.replace(fresh, self.path)
        self.path.with_name(self.path.name + ".wal").unlink(missing_ok=True)
        self._database()

    def reader(self) -> DuckDBConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = DuckDBConnection(self)
            with self._lock:
                self._readers.append(conn)
        return conn

    def open_cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = self._database().cursor()
        cursor.execute("SET TimeZone = 'UTC'")
        return cursor

    def size_bytes(self) -> int | None:
        try:
            return self.path.stat().st_size + _size(self.path.with_name(self.path.name + ".wal"))
        except FileNotFoundError:
            return None

    def close(self) -> None:
        with self._lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
        self._local = threading.local()
        if self._db is not None:
            self._db.close()
            self._db = None


def _as_texts(row: tuple[Any, ...], uuids: list[int]) -> tuple[Any, ...]:
    """A row with its UUID columns as the store's texts (NULL stays None)."""
    values = list(row)
    for i in uuids:
        if values[i] is not None:
            values[i] = str(values[i])
    return tuple(values)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
