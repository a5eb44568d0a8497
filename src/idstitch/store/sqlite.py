"""The embedded store: one SQLite file in WAL mode, one writer connection, read-only readers.

`open_database` applies the migrations; `SQLitePersons` is the engine's `PersonStore` over one
open transaction of the writer connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from idstitch.attributes import Attribute, AttributeOps, OpKind, PersonAttributes, type_of
from idstitch.clock import Now, format_time, stored_time
from idstitch.engine import LinkEntry, PersonRow, ReplayedOps, StoredEvent
from idstitch.outcomes import WarningRecord
from idstitch.store.schema import MIGRATIONS

DATABASE_FILE = "idstitch.db"

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def encode_json(value: Any) -> str:
    return _encode(value).decode()


def open_database(path: Path | str, *, read_only: bool = False) -> sqlite3.Connection:
    """Open (and for the writer, create and migrate) the database at `path`."""
    if read_only:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA query_only = ON")
    else:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit is on disk before the request that caused it is answered (§8 of the rules).
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA cache_size = -65536")
    conn.row_factory = sqlite3.Row
    if not read_only:
        migrate(conn)
    return conn


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply the migrations not applied yet, each in its own transaction; returns their names."""
    conn.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {row[0] for row in conn.execute("SELECT name FROM migrations")}
    applied = []
    for name, sql in MIGRATIONS:
        if name in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(sql):
                conn.execute(statement)
            conn.execute("INSERT INTO migrations VALUES (?, datetime('now'))", (name,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied


def _statements(sql: str) -> Iterator[str]:
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer.strip()
            buffer = ""
    if buffer.strip():
        yield buffer.strip()


class SQLitePersons:
    """The engine's `PersonStore` for one project, inside an open write transaction."""

    def __init__(self, conn: sqlite3.Connection, project_id: int, now: Now, take_seq: Callable[[], int]) -> None:
        self.conn = conn
        self.project_id = project_id
        self.now = now
        self.next_seq = take_seq

    @staticmethod
    def max_seq(conn: sqlite3.Connection) -> int:
        return conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]

    # -- persons and ids -------------------------------------------------------------------

    def person_of(self, distinct_id: str) -> str | None:
        row = self.conn.execute(
            "SELECT person_id FROM distinct_ids WHERE project_id = ? AND distinct_id = ?",
            (self.project_id, distinct_id),
        ).fetchone()
        return row[0] if row else None

    def load_person(self, person_id: str) -> PersonRow | None:
        row = self.conn.execute(
            "SELECT created_at, is_identified FROM persons WHERE id = ?", (person_id,)
        ).fetchone()
        if row is None:
            return None
        return PersonRow(person_id, stored_time(row[0]), bool(row[1]))

    def distinct_ids_of(self, person_id: str) -> list[tuple[str, bool]]:
        rows = self.conn.execute(
            "SELECT distinct_id, is_user_id FROM distinct_ids WHERE person_id = ? ORDER BY created_at, distinct_id",
            (person_id,),
        )
        return [(r[0], bool(r[1])) for r in rows]

    def save_person(self, row: PersonRow, *, new: bool) -> None:
        values = (format_time(row.created_at), int(row.is_identified), row.person_id)
        if new:
            self.conn.execute(
                "INSERT INTO persons (created_at, is_identified, id, project_id) VALUES (?, ?, ?, ?)",
                (*values, self.project_id),
            )
        else:
            self.conn.execute(
                "UPDATE persons SET created_at = ?, is_identified = ?, version = version + 1 WHERE id = ?",
                values,
            )

    def delete_person(self, person_id: str) -> None:
        self.conn.execute("DELETE FROM person_attributes WHERE person_id = ?", (person_id,))
        self.conn.execute("DELETE FROM persons WHERE id = ?", (person_id,))

    def map_distinct_id(self, distinct_id: str, person_id: str, is_user_id: bool, created_at: datetime) -> None:
        self.conn.execute(
            "INSERT INTO distinct_ids (project_id, distinct_id, person_id, is_user_id, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (project_id, distinct_id)"
            " DO UPDATE SET person_id = excluded.person_id, is_user_id = excluded.is_user_id",
            (self.project_id, distinct_id, person_id, int(is_user_id), format_time(created_at)),
        )

    def set_user_id(self, distinct_id: str, is_user_id: bool) -> None:
        self.conn.execute(
            "UPDATE distinct_ids SET is_user_id = ? WHERE project_id = ? AND distinct_id = ?",
            (int(is_user_id), self.project_id, distinct_id),
        )

    def move_distinct_ids(self, from_person_id: str, to_person_id: str) -> None:
        self.conn.execute("UPDATE distinct_ids SET person_id = ? WHERE person_id = ?", (to_person_id, from_person_id))

    # -- attributes ------------------------------------------------------------------------

    def load_attributes(self, person_id: str) -> PersonAttributes:
        rows = self.conn.execute(
            "SELECT key, value, kind, time, seq, event_uuid FROM person_attributes WHERE person_id = ?",
            (person_id,),
        )
        items = {
            key: Attribute(
                _decode(value) if value is not None else None, OpKind(kind), stored_time(time), seq, event_uuid
            )
            for key, value, kind, time, seq, event_uuid in rows
        }
        return PersonAttributes(items)

    def save_attributes(self, person_id: str, attributes: PersonAttributes, keys: Iterable[str]) -> None:
        self.conn.executemany(
            "INSERT OR REPLACE INTO person_attributes (person_id, key, value, type, kind, time, seq, event_uuid)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [_attribute_row(person_id, key, attributes.items[key]) for key in keys],
        )

    def replace_attributes(self, person_id: str, attributes: PersonAttributes) -> None:
        self.conn.execute("DELETE FROM person_attributes WHERE person_id = ?", (person_id,))
        self.save_attributes(person_id, attributes, list(attributes.items))

    # -- events ----------------------------------------------------------------------------

    def existing_event_uuids(self, uuids: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(uuids), 500):
            chunk = uuids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(
                r[0]
                for r in self.conn.execute(
                    f"SELECT uuid FROM events WHERE project_id = ? AND uuid IN ({marks})",
                    (self.project_id, *chunk),
                )
            )
        return found

    def insert_events(self, events: list[StoredEvent]) -> None:
        received_at = format_time(self.now())
        rows = [
            (
                stored.seq,
                self.project_id,
                e.uuid,
                e.distinct_id,
                e.name,
                format_time(e.timestamp),
                received_at,
                e.session_id,
                int(e.process_person),
                encode_json(e.properties),
                encode_json(e.ops.to_json()) if e.ops else None,
            )
            for stored in events
            for e in (stored.event,)
        ]
        self.conn.executemany(
            "INSERT INTO events (seq, project_id, uuid, distinct_id, event, timestamp, received_at,"
            " session_id, process_person, properties, ops) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        sessions = _session_rows(self.project_id, events, rows)
        if sessions:
            self.conn.executemany(_UPSERT_SESSION, sessions)

    def replay_ops(self, distinct_ids: list[str]) -> Iterator[ReplayedOps]:
        marks = ",".join("?" * len(distinct_ids))
        rows = self.conn.execute(
            f"SELECT seq, uuid, distinct_id, timestamp, ops FROM events WHERE project_id = ?"
            f" AND distinct_id IN ({marks}) AND ops IS NOT NULL AND process_person = 1 ORDER BY seq",
            (self.project_id, *distinct_ids),
        )
        for seq, uuid, distinct_id, timestamp, ops in rows:
            yield ReplayedOps(seq, uuid, distinct_id, stored_time(timestamp), AttributeOps.from_json(_decode(ops)))

    # -- logs ------------------------------------------------------------------------------

    def insert_link(self, entry: LinkEntry) -> None:
        self.conn.execute(
            "INSERT INTO links (project_id, kind, actor, target_distinct_id, source_distinct_id,"
            " target_person_id, source_person_id, event_uuid, decision_row, outcome, reason, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self.project_id, entry.kind, entry.actor, entry.target_distinct_id, entry.source_distinct_id,
                entry.target_person_id, entry.source_person_id, entry.event_uuid, entry.decision_row,
                entry.outcome.value, entry.reason, format_time(self.now()),
            ),
        )

    def insert_warnings(self, warnings: list[WarningRecord]) -> None:
        created_at = format_time(self.now())
        self.conn.executemany(
            "INSERT INTO warnings (project_id, type, event_uuid, distinct_ids, details, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [
                (self.project_id, w.type.value, w.event_uuid, encode_json(list(w.distinct_ids)),
                 encode_json(w.details), created_at)
                for w in warnings
            ],
        )

    def insert_dead_letter(self, reason: str, payload: Any) -> None:
        insert_dead_letter(self.conn, self.project_id, reason, payload, self.now())

    def audit(self, actor: str, action: str, details: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT INTO audit_log (project_id, actor, action, details, created_at) VALUES (?, ?, ?, ?, ?)",
            (self.project_id, actor, action, encode_json(details), format_time(self.now())),
        )


def insert_dead_letter(
    conn: sqlite3.Connection, project_id: int | None, reason: str, payload: Any, received_at: datetime
) -> None:
    conn.execute(
        "INSERT INTO dead_letters (project_id, reason, payload, received_at) VALUES (?, ?, ?, ?)",
        (project_id, reason, payload if isinstance(payload, str) else encode_json(payload), format_time(received_at)),
    )


# One row per session, kept at ingest so session lists never aggregate events (query/sessions.py).
# The distinct ids are a JSON list; persons are resolved from them at read time, like events.
_UPSERT_SESSION = (
    "INSERT INTO sessions (project_id, session_id, first_at, last_at, event_count, identifies, entry_at, entry_url,"
    " distinct_ids, last_distinct_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (project_id, session_id) DO UPDATE SET"
    " first_at = min(first_at, excluded.first_at),"
    " last_at = max(last_at, excluded.last_at),"
    " last_distinct_id = CASE WHEN excluded.last_at >= last_at THEN excluded.last_distinct_id ELSE last_distinct_id END,"
    " event_count = event_count + excluded.event_count,"
    " identifies = identifies + excluded.identifies,"
    " entry_url = CASE WHEN excluded.entry_at < coalesce(entry_at, '~') THEN excluded.entry_url ELSE entry_url END,"
    " entry_at = CASE WHEN excluded.entry_at < coalesce(entry_at, '~') THEN excluded.entry_at ELSE entry_at END,"
    " distinct_ids = CASE WHEN distinct_ids = excluded.distinct_ids THEN distinct_ids ELSE ("
    "SELECT json_group_array(value) FROM (SELECT value FROM json_each(sessions.distinct_ids)"
    " UNION SELECT value FROM json_each(excluded.distinct_ids))) END"
)


def _session_rows(project_id: int, events: list[StoredEvent], rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The batch's events summed up per session id: first/last time, count, `$identify` count,
    entry URL (`$current_url` of the earliest event that has one), distinct ids, last distinct id."""
    found: dict[str, list[Any]] = {}
    for stored, row in zip(events, rows):
        session_id = row[7]
        if session_id is None:
            continue
        timestamp, distinct_id, identify = row[5], row[3], row[4] == "$identify"
        url = stored.event.properties.get("$current_url")
        url_at = timestamp if isinstance(url, str) else None
        s = found.get(session_id)
        if s is None:
            found[session_id] = [timestamp, timestamp, 1, int(identify), url_at, url if url_at else None, [distinct_id], distinct_id]
            continue
        if timestamp < s[0]:
            s[0] = timestamp
        if timestamp >= s[1]:
            s[1], s[7] = timestamp, distinct_id
        s[2] += 1
        s[3] += identify
        if url_at is not None and (s[4] is None or url_at < s[4]):
            s[4], s[5] = url_at, url
        if distinct_id not in s[6]:
            s[6].append(distinct_id)
    return [(project_id, session_id, *s[:6], encode_json(s[6]), s[7]) for session_id, s in found.items()]


def _attribute_row(person_id: str, key: str, attribute: Attribute) -> tuple[Any, ...]:
    present = attribute.is_present
    return (
        person_id,
        key,
        encode_json(attribute.value) if present else None,
        type_of(attribute.value).value if present else "null",
        attribute.kind.value,
        format_time(attribute.time),
        attribute.seq,
        attribute.event_uuid,
    )
