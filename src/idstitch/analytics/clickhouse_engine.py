"""The scale-out analytics engine: a ClickHouse database, through clickhouse-connect (a server by
HTTP, or chdb in-process: `get_client(interface='chdb')`, which the tests run on).

    events             MergeTree ordered by (project, day, event, seq): the copy of the store's
                       events; `properties` is a Map of each top-level key to the JSON text of
                       its value (clickhouse_sql.py reads it), split here when an event is copied
    distinct_ids       ReplacingMergeTree(version, is_deleted), one row per (project, id)
    persons            ReplacingMergeTree(version, is_deleted), one row per person
    person_attributes  ReplacingMergeTree(version, is_deleted), one row per (person, key)
    copy_state         ReplacingMergeTree(written): the copy's store and position

The person side is PostHog's "overrides" design: events never hold a person id; every read joins
the mapping as it is now, with `final = 1`, so a person's replaced or deleted rows never count.
A person's change writes all its rows again, and a tombstone (is_deleted = 1) for each row it no
longer has, all with the step's person position as the version: a later step always wins.

ClickHouse has no transactions, so `apply` is all-or-nothing the way a crash allows: every write
can be made again without storing anything twice, and the position is written last. Events past
the position (a step that stopped before writing it) are deleted first, events at or before it
are not written again (a step applied twice), a rewritten or deleted event is deleted and written
again, and the person rows carry versions. A reader may see a step half done (new events before
their persons, say) until its end; never anything twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import clickhouse_connect
import msgspec
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from idstitch.analytics.clickhouse_sql import CLICKHOUSE
from idstitch.analytics.engine import CopyState, FeedBatch, Rows, refuse_writes
from idstitch.errors import InvalidSetting
from idstitch.store.connection import to_pyformat
from idstitch.store.dialects import Dialect, StatementTimeout
from idstitch.store.feed import FeedPosition

log = logging.getLogger("idstitch.analytics")

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode

_TIMEOUT_EXCEEDED = 159
# An IN list of ids stays far below max_query_size (256 KiB of SQL text).
_CHUNK = 1000

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS events (
        seq Int64, project_id Int32, distinct_id String, event LowCardinality(String), timestamp String,
        session_id Nullable(String), properties Map(LowCardinality(String), String),
        INDEX seq_range seq TYPE minmax GRANULARITY 1,
        INDEX time_range timestamp TYPE minmax GRANULARITY 1
    ) ENGINE = MergeTree ORDER BY (project_id, substring(timestamp, 1, 10), event, seq)""",
    """CREATE TABLE IF NOT EXISTS distinct_ids (
        project_id Int32, distinct_id String, person_id String, version UInt64, is_deleted UInt8,
        INDEX person person_id TYPE bloom_filter GRANULARITY 1
    ) ENGINE = ReplacingMergeTree(version, is_deleted) ORDER BY (project_id, distinct_id)""",
    """CREATE TABLE IF NOT EXISTS persons (
        id String, project_id Int32, created_at String, is_identified UInt8, version UInt64, is_deleted UInt8
    ) ENGINE = ReplacingMergeTree(version, is_deleted) ORDER BY id""",
    """CREATE TABLE IF NOT EXISTS person_attributes (
        person_id String, key LowCardinality(String), value Nullable(String), kind LowCardinality(String),
        version UInt64, is_deleted UInt8
    ) ENGINE = ReplacingMergeTree(version, is_deleted) ORDER BY (person_id, key)""",
    """CREATE TABLE IF NOT EXISTS copy_state (
        store_id Nullable(String), seq Int64, person_change Int64, event_change Int64, written UInt64
    ) ENGINE = ReplacingMergeTree(written) ORDER BY tuple()""",
)
_TABLES = ("events", "distinct_ids", "persons", "person_attributes")
_EVENT_COLUMNS = ("seq", "project_id", "distinct_id", "event", "timestamp", "session_id", "properties")
_PERSON_COLUMNS = ("id", "project_id", "created_at", "is_identified", "version", "is_deleted")
_ID_COLUMNS = ("project_id", "distinct_id", "person_id", "version", "is_deleted")
_ATTRIBUTE_COLUMNS = ("person_id", "key", "value", "kind", "version", "is_deleted")
_STATE_COLUMNS = ("store_id", "seq", "person_change", "event_change", "written")

# Every read: a LEFT JOIN's missing side is NULL (the query layer tests `IS NULL` and relies on
# `coalesce`), FINAL on the person side's tables, JSON read by RapidJSON, which reads an integer
# past 64 bits as a double as SQLite does (simdjson calls it a string), and the branches of an
# `if` computed only for the rows that take them (a time's rare shapes cost a regex's groups).
READ_SETTINGS = {"join_use_nulls": 1, "final": 1, "allow_simdjson": 0, "short_circuit_function_evaluation": "force_enable"}


def client_binding(sql: str) -> str:
    """`?` marks to clickhouse-connect's client-side `%s`; ClickHouse's literals escape with a
    backslash and also quote with backticks."""
    return to_pyformat(sql, quotes="'\"`", backslash_escapes=True)


class ClickHouseConnection:
    """A clickhouse-connect client as the `Connection` the query layer holds (`?` marks, tuples
    back, whole results), each statement under `statement_seconds` when set (Dialect.time_limit)."""

    dialect: Dialect = CLICKHOUSE

    def __init__(self, client: Client) -> None:
        self.client = client
        self.statement_seconds: float | None = None

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Rows:
        settings = {"max_execution_time": self.statement_seconds} if self.statement_seconds else None
        try:
            if parameters:
                result = self.client.query(client_binding(sql), parameters=tuple(parameters), settings=settings)
            else:
                result = self.client.query(sql, settings=settings)
        except DatabaseError as error:
            if error.code == _TIMEOUT_EXCEEDED and self.statement_seconds:
                raise StatementTimeout(self.statement_seconds) from None
            raise
        return Rows(result.result_rows)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Rows:
        return refuse_writes()

    def close(self) -> None:
        self.client.close()


class ClickHouseEngine:
    """The analytics copy in a ClickHouse database: `server(...)` or `in_process(path)`."""

    name = "clickhouse"

    def __init__(self, connect: dict[str, Any], *, description: str, database: str | None = None) -> None:
        self._connect_args = connect
        self._database = database
        self._description = description
        self._writer: Client | None = None
        self._local = threading.local()
        self._readers: list[ClickHouseConnection] = []
        self._lock = threading.Lock()
        self._written = 0

    @classmethod
    def server(cls, url: str) -> ClickHouseEngine:
        """`clickhouse://user:password@host:port/database` (`clickhouses://` for HTTPS)."""
        parts = urlsplit(url)
        if parts.scheme not in ("clickhouse", "clickhouses") or not parts.hostname:
            raise InvalidSetting(f"analytics {_redacted(url)!r} is not clickhouse://user:password@host:port/database")
        database = unquote(parts.path.lstrip("/")) or "default"
        try:
            port = parts.port
        except ValueError:
            raise InvalidSetting(f"analytics {_redacted(url)!r} has a port that is not a number") from None
        connect = {
            "host": parts.hostname, "port": port, "username": unquote(parts.username or "default"),
            "password": unquote(parts.password or ""), "secure": parts.scheme == "clickhouses",
            # Settings travel with each query; no server session, so threads never wait on one.
            "autogenerate_session_id": False,
        }
        return cls(connect, description=_redacted(url), database=database)

    @classmethod
    def in_process(cls, path: str) -> ClickHouseEngine:
        """chdb in this process, its data in the directory `path` (one such engine per process)."""
        return cls({"interface": "chdb", "path": path}, description=f"chdb:{path}")

    @property
    def description(self) -> str:
        return self._description

    def _client(self, settings: dict[str, Any] | None = None, *, database: bool = True) -> Client:
        args = dict(self._connect_args)
        if database and self._database is not None:
            args["database"] = self._database
        return clickhouse_connect.get_client(settings=settings or {}, **args)

    def _write(self) -> Client:
        if self._writer is None:
            self._writer = self._client()
        return self._writer

    # -- the interface -------------------------------------------------------------------------

    def prepare(self) -> None:
        if self._database is not None:
            bootstrap = self._client(database=False)
            try:
                bootstrap.command(f"CREATE DATABASE IF NOT EXISTS `{self._database.replace('`', '``')}`")
            finally:
                bootstrap.close()
        client = self._write()
        for statement in _SCHEMA:
            client.command(statement)
        if client.query("SELECT count() FROM copy_state").result_rows[0][0] == 0:
            self._write_state(None, FeedPosition())

    def state(self) -> CopyState:
        rows = self._write().query(
            "SELECT store_id, seq, person_change, event_change, written FROM copy_state FINAL"
        ).result_rows
        if not rows:
            return CopyState(None, FeedPosition())
        store_id, seq, person_change, event_change, written = rows[0]
        self._written = max(self._written, written)
        return CopyState(store_id, FeedPosition(seq, person_change, event_change))

    def start_over(self, store_id: str) -> None:
        client = self._write()
        for table in _TABLES:
            client.command(f"TRUNCATE TABLE {table}")
        self._write_state(store_id, FeedPosition())

    def apply(self, batch: FeedBatch) -> None:
        client = self._write()
        state = self.state()
        # A step that stopped before its position was written left events past it: gone first.
        if _count(client, f"events WHERE seq > {int(state.position.seq)}"):
            client.command(f"DELETE FROM events WHERE seq > {int(state.position.seq)}")
        for start in range(0, len(batch.removed_events), _CHUNK):
            seqs = ",".join(str(int(s)) for s in batch.removed_events[start : start + _CHUNK])
            client.command(f"DELETE FROM events WHERE seq IN ({seqs})")
        for project_id, before in batch.expired.items():
            where = _bind(
                "events WHERE project_id = ? AND substring(timestamp, 1, 10) <= ? AND timestamp < ?",
                (project_id, before[:10], before),
            )
            if _count(client, where):
                client.command(f"DELETE FROM {where}")
        # Events the copy holds already (this step applied before, by this feeder or another)
        # stay as they are; those it deleted above are written again.
        removed = set(batch.removed_events)
        events = [_event_row(row) for row in batch.events if row[0] > state.position.seq or row[0] in removed]
        if events:
            client.insert("events", events, column_names=_EVENT_COLUMNS)
        if batch.changed_persons:
            self._replace_persons(client, batch)
        for project_id, kept in batch.persons_kept.items():
            # After an erasure (its journal names no one): the persons the store no longer has go.
            present = client.query(_bind("SELECT id FROM persons FINAL WHERE project_id = ?", (project_id,))).result_rows
            gone = sorted({row[0] for row in present} - set(kept))
            if gone:
                self._replace_persons(client, FeedBatch(batch.position, changed_persons=gone))
        self._write_state(state.store_id, batch.position)

    def forget_deleted(self) -> None:
        """Merge every table's parts, so deleted rows and replaced versions leave the current
        parts; ClickHouse removes the merged-away parts after its `old_parts_lifetime`."""
        client = self._write()
        for table in _TABLES:
            client.command(f"OPTIMIZE TABLE {table} FINAL")

    def _replace_persons(self, client: Client, batch: FeedBatch) -> None:
        version = int(batch.position.person_change)
        rows = batch.persons
        live_persons = {(project_id, person_id) for person_id, project_id, *_ in rows.persons}
        live_ids = {(project_id, distinct_id) for project_id, distinct_id, _ in rows.distinct_ids}
        live_attributes = {(person_id, key) for person_id, key, *_ in rows.attributes}
        old_persons: set[tuple[int, str]] = set()
        old_ids: dict[tuple[int, str], str] = {}
        old_attributes: set[tuple[str, str]] = set()
        for start in range(0, len(batch.changed_persons), _CHUNK):
            chunk = batch.changed_persons[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for person_id, project_id in client.query(
                _bind(f"SELECT id, project_id FROM persons FINAL WHERE id IN ({marks})", chunk)
            ).result_rows:
                old_persons.add((project_id, person_id))
            # The ids' rows hold their person, not their key: the keys that ever belonged to one
            # of these persons first (a bloom filter finds them), then their rows now (FINAL).
            for project_id, distinct_id, person_id in client.query(_bind(
                "SELECT project_id, distinct_id, person_id FROM distinct_ids FINAL WHERE (project_id, distinct_id) IN"
                f" (SELECT project_id, distinct_id FROM distinct_ids WHERE person_id IN ({marks})) AND person_id IN ({marks})",
                (*chunk, *chunk),
            )).result_rows:
                old_ids[(project_id, distinct_id)] = person_id
            for person_id, key in client.query(
                _bind(f"SELECT person_id, key FROM person_attributes FINAL WHERE person_id IN ({marks})", chunk)
            ).result_rows:
                old_attributes.add((person_id, key))
        # One insert per table, tombstones and rows together: a reader sees a table before or after.
        persons = [(p, project, created, int(identified), version, 0) for p, project, created, identified in rows.persons]
        persons += [(p, project, "", 0, version, 1) for project, p in sorted(old_persons - live_persons)]
        ids = [(project, d, p, version, 0) for project, d, p in rows.distinct_ids]
        ids += [(project, d, old_ids[(project, d)], version, 1) for project, d in sorted(old_ids.keys() - live_ids)]
        attributes = [(p, key, _canonical(value), kind, version, 0) for p, key, value, kind in rows.attributes]
        attributes += [(p, key, None, "", version, 1) for p, key in sorted(old_attributes - live_attributes)]
        if persons:
            client.insert("persons", persons, column_names=_PERSON_COLUMNS)
        if ids:
            client.insert("distinct_ids", ids, column_names=_ID_COLUMNS)
        if attributes:
            client.insert("person_attributes", attributes, column_names=_ATTRIBUTE_COLUMNS)

    def _write_state(self, store_id: str | None, position: FeedPosition) -> None:
        # The newest row wins (FINAL); a clock that stepped back never makes an older one win.
        self._written = max(time.time_ns(), self._written + 1)
        self._write().insert(
            "copy_state", [(store_id, position.seq, position.person_change, position.event_change, self._written)],
            column_names=_STATE_COLUMNS,
        )

    def reader(self) -> ClickHouseConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = ClickHouseConnection(self._client(READ_SETTINGS))
            with self._lock:
                self._readers.append(conn)
        return conn

    def size_bytes(self) -> int | None:
        rows = self._write().query(
            "SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND database = currentDatabase()"
            f" AND table IN ({', '.join(repr(t) for t in (*_TABLES, 'copy_state'))})"
        ).result_rows
        return int(rows[0][0]) if rows else None

    def close(self) -> None:
        with self._lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
        self._local = threading.local()
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _bind(sql: str, parameters: Sequence[Any]) -> str:
    """`sql` with its `?` marks replaced by the values, as clickhouse-connect writes literals."""
    from clickhouse_connect.driver.binding import format_query_value

    return client_binding(sql) % tuple(format_query_value(v) for v in parameters)


def _count(client: Client, source: str) -> int:
    return int(client.query(f"SELECT count() FROM {source}").result_rows[0][0])


def _event_row(row: Sequence[Any]) -> tuple[Any, ...]:
    seq, project_id, distinct_id, event, timestamp, session_id, properties = row
    return (seq, project_id, distinct_id, event, timestamp, session_id, _split(properties))


def _split(properties: str) -> dict[str, str]:
    """An event's properties (JSON text of an object) as each top-level key's value, written as
    msgspec writes it, which is the store's own text of it (SQLite's `->` gives it back as is)."""
    try:
        document = _decode(properties)
    except msgspec.DecodeError:
        log.warning("an event's properties are not JSON; copied without them: %.200r", properties)
        return {}
    if not isinstance(document, dict):
        return {}
    return {key: _encode(value).decode() for key, value in document.items()}


def _canonical(value: str | None) -> str | None:
    """An attribute's JSON text as msgspec writes it (the store's SQLite text already is; a
    PostgreSQL store's jsonb text is not), so equal values are equal texts."""
    if value is None:
        return None
    try:
        return _encode(_decode(value)).decode()
    except msgspec.DecodeError:
        return value


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()
