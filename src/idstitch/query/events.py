"""Events across persons: filtered, newest first, each with the person it belongs to now."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from idstitch.clock import format_time
from idstitch.query.compiler import Sql
from idstitch.query.people import distinct_ids_of, summaries
from idstitch.store.connection import Connection
from idstitch.store.reads import Page, decode_cursor, encode_cursor, event_from_row

_decode = msgspec.json.Decoder().decode


def events_page(
    conn: Connection,
    project_id: int,
    where: Sql,
    *,
    names: list[str] | None = None,
    person_id: str | None = None,
    distinct_id: str | None = None,
    session_id: str | None = None,
    after: datetime | None = None,
    before: datetime | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> Page:
    """Events the filter keeps, newest first; `after` is inclusive, `before` exclusive."""
    source = "events e"
    conditions = ["e.project_id = ?"]
    params: list[Any] = [project_id]
    ids: list[str] | None = None
    if person_id is not None:
        ids = distinct_ids_of(conn, project_id, person_id)
    if distinct_id is not None:
        ids = [distinct_id] if ids is None or distinct_id in ids else []
    if session_id is not None:
        row = conn.execute(
            "SELECT distinct_ids, first_at, last_at FROM sessions WHERE project_id = ? AND session_id = ?",
            (project_id, session_id),
        ).fetchone()
        in_session = _decode(row[0]) if row else []
        ids = in_session if ids is None else [i for i in ids if i in in_session]
        conditions.append("e.session_id = ? AND e.timestamp BETWEEN ? AND ?")
        params += [session_id, row[1] if row else "", row[2] if row else ""]
    if ids is not None:
        # A person's or a session's ids are few: walk their part of the index, never the whole table.
        source = f"events e{conn.dialect.indexed_by('events_by_distinct_id')}"
        conditions.append(f"e.distinct_id IN ({','.join('?' * len(ids))})" if ids else "FALSE")
        params += ids
    if names:
        conditions.append(f"e.event IN ({','.join('?' * len(names))})")
        params += names
    if after is not None:
        conditions.append("e.timestamp >= ?")
        params.append(format_time(after))
    if before is not None:
        conditions.append("e.timestamp < ?")
        params.append(format_time(before))
    conditions.append(where.text)
    params += where.params
    if cursor:
        timestamp, seq = decode_cursor(cursor, 2, (str, int))
        conditions.append("(e.timestamp, e.seq) < (?, ?)")
        params += [timestamp, seq]
    sql = (
        "SELECT e.seq, e.uuid, e.distinct_id, e.event, e.timestamp, e.session_id, e.properties, e.ops, d.person_id"
        f" FROM {source} LEFT JOIN distinct_ids d ON d.project_id = e.project_id AND d.distinct_id = e.distinct_id"
        f" WHERE {' AND '.join(conditions)} ORDER BY e.timestamp DESC, e.seq DESC LIMIT ?"
    )
    rows = conn.execute(sql, (*params, limit + 1)).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    people = summaries(conn, (r["person_id"] for r in rows))
    results = [
        {**event_from_row(r), "person": people.get(r["person_id"]) if r["person_id"] else None} for r in rows
    ]
    return Page(results, encode_cursor(rows[-1]["timestamp"], rows[-1]["seq"]) if more else None)
