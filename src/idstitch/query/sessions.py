"""Sessions: the events that share a session id (identity-rules.md §6).

The `sessions` table has one row per session id, kept at ingest by one upsert per batch
(`store/sqlite.py`, `store/postgres.py`): first and last time, event count, number of `$identify` events, entry URL
(`$current_url` of the earliest event that has one), and the distinct ids seen. Like events, a
session keeps its distinct ids and its person is resolved through the mapping when it is read, so
merges and splits never rewrite sessions. The person a session is shown with is the owner of
the distinct id of its latest event (the one it "ended as").

Two flags are decided at read time from the mapping and the link log:

* **identified**: an identify happened in it: it has an `$identify` event, and one of its ids is a
  user id (an identify that named nobody, Hotjar's `identify(null, attrs)`, does not count).
* **inferred**: not identified, and one of its ids (the device's anonymous id) was joined to the
  session's current person by an identify whose event came later and outside this session
  (Highlight's indicator: the anonymous visit was attributed after the fact). An identify
  refused (row F) or already linked (row D) assigned nothing, so it does not count; nor does
  one undone, and one an undo let through counts (its outcome now, `link_effects`).
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

import msgspec

from idstitch.clock import format_time, stored_time
from idstitch.query.compiler import Sql
from idstitch.query.people import distinct_ids_of, summaries
from idstitch.store.connection import Connection, Row
from idstitch.store.dialects import Dialect
from idstitch.store.reads import Page, decode_cursor, encode_cursor

_decode = msgspec.json.Decoder().decode


@cache
def _sql(dialect: Dialect) -> tuple[str, str, str, str]:
    """The `identified` and `inferred` tests of a session row `s`, the columns of a page, and
    the join to the person a session ended as (`sp`)."""
    # Walk the session's few ids first, then look each up by primary key or index; left to
    # itself a planner may scan the project's whole mapping (or link log) once per session.
    join, ids = dialect.join_each, dialect.json_array_values("s.distinct_ids")
    identified = (
        f"(s.identifies > 0 AND EXISTS (SELECT 1 FROM {ids} ij"
        f" {join('distinct_ids', 'iu', 'iu.project_id = s.project_id AND iu.distinct_id = ij.value')}"
        " WHERE iu.is_user_id = 1))"
    )
    inferred = (
        f"(NOT {identified} AND EXISTS (SELECT 1 FROM {ids} fj"
        f" {join('links', 'fl', 'fl.project_id = s.project_id AND fl.source_distinct_id = fj.value')}"
        f" {join('distinct_ids', 'fs', 'fs.project_id = s.project_id AND fs.distinct_id = fj.value')}"
        f" {join('distinct_ids', 'ft', 'ft.project_id = fl.project_id AND ft.distinct_id = fl.target_distinct_id')}"
        f" {join('events', 'fe', 'fe.project_id = fl.project_id AND fe.uuid = fl.event_uuid')}"
        f" {join('link_effects', 'fx', 'fx.link_id = fl.id', outer=True)}"
        " WHERE fl.kind = 'identify' AND coalesce(fx.outcome, fl.outcome) IN ('created', 'attached', 'merged')"
        f" AND ft.person_id = fs.person_id AND fe.timestamp >= s.last_at AND fe.session_id {dialect.is_distinct_from} s.session_id))"
    )
    columns = (
        "s.session_id, s.first_at, s.last_at, s.event_count, s.entry_url, s.distinct_ids, sp.person_id,"
        f" {identified} AS identified, {inferred} AS inferred"
    )
    person = join("distinct_ids", "sp", "sp.project_id = s.project_id AND sp.distinct_id = s.last_distinct_id", outer=True)
    return identified, inferred, columns, person


def session_ids_of(conn: Connection, project_id: int, distinct_ids: list[str]) -> list[str]:
    """The sessions any of these ids took part in (through the events index by distinct id)."""
    if not distinct_ids:
        return []
    marks = ",".join("?" * len(distinct_ids))
    rows = conn.execute(
        f"SELECT DISTINCT session_id FROM events WHERE project_id = ? AND distinct_id IN ({marks})"
        " AND session_id IS NOT NULL",
        (project_id, *distinct_ids),
    )
    return [r[0] for r in rows]


def sessions_page(
    conn: Connection,
    project_id: int,
    where: Sql,
    *,
    person_id: str | None = None,
    distinct_id: str | None = None,
    after: datetime | None = None,
    before: datetime | None = None,
    identified: bool | None = None,
    inferred: bool | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> Page:
    """Sessions, newest first by start; `after`/`before` (datetimes) bound the start time."""
    dialect = conn.dialect
    identified_sql, inferred_sql, columns, person = _sql(dialect)
    sql = f"SELECT {columns} FROM sessions s {person} WHERE s.project_id = ?"
    params: list[Any] = [project_id]
    if person_id is not None or distinct_id is not None:
        ids: list[str] = []
        if person_id is not None:
            ids = distinct_ids_of(conn, project_id, person_id)
        if distinct_id is not None:
            ids = [distinct_id] if person_id is None or distinct_id in ids else []
        # Drive from the few sessions of these ids (primary key lookups), not from the time index.
        sql = (
            f"SELECT {columns} FROM {dialect.json_array_values('?')} picked"
            f" {dialect.join_each('sessions', 's', 's.project_id = ? AND s.session_id = picked.value')}"
            f" {person} WHERE TRUE"
        )
        params = [msgspec.json.encode(session_ids_of(conn, project_id, ids)).decode(), project_id]
    if after is not None:
        sql += " AND s.first_at >= ?"
        params.append(format_time(after))
    if before is not None:
        sql += " AND s.first_at < ?"
        params.append(format_time(before))
    # The flags are bound as booleans: SQLite reads them as 1 and 0, PostgreSQL as booleans.
    if identified is not None:
        sql += f" AND {identified_sql} = ?"
        params.append(identified)
    if inferred is not None:
        sql += f" AND {inferred_sql} = ?"
        params.append(inferred)
    sql += f" AND {where.text}"
    params += where.params
    if cursor:
        first_at, session_id = decode_cursor(cursor, 2, (str, str))
        sql += " AND (s.first_at, s.session_id) < (?, ?)"
        params += [first_at, session_id]
    rows = conn.execute(sql + " ORDER BY s.first_at DESC, s.session_id DESC LIMIT ?", (*params, limit + 1)).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    people = summaries(conn, (r["person_id"] for r in rows))
    results = [_session(r, people) for r in rows]
    return Page(results, encode_cursor(rows[-1]["first_at"], rows[-1]["session_id"]) if more else None)


def _session(row: Row, people: dict[str, dict[str, Any]]) -> dict[str, Any]:
    started, ended = row["first_at"], row["last_at"]
    return {
        "session_id": row["session_id"],
        "person": people.get(row["person_id"]) if row["person_id"] else None,
        "distinct_ids": sorted(_decode(row["distinct_ids"])),
        "started_at": started,
        "ended_at": ended,
        "duration_seconds": round((stored_time(ended) - stored_time(started)).total_seconds(), 3),
        "event_count": row["event_count"],
        "entry_url": row["entry_url"],
        "identified": bool(row["identified"]),
        "inferred": bool(row["inferred"]),
    }
