"""Saved segments: named filters, used by id in any query (`segment_id`, or `{"segment": id}` inside
a filter). A segment is stored as its validated filter document and re-checked when it is used,
so it always means what its filter says today (PostHog's dynamic cohorts, not a frozen list)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from idstitch.clock import format_time
from idstitch.errors import Conflict, NotFound
from idstitch.query.compiler import EVENTS, Compiler
from idstitch.query.filters import FilterNode, dump_filter, parse_filter
from idstitch.store.connection import Connection, Row, returning_id
from idstitch.store.reads import Page, decode_cursor, encode_cursor

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def list_segments(conn: Connection, project_id: int) -> list[dict[str, Any]]:
    """Every saved segment, by name."""
    return [_segment(r) for r in _segment_rows(conn, project_id, None, None)]


def segments_page(conn: Connection, project_id: int, limit: int, cursor: str | None) -> Page:
    """Saved segments by name, a page at a time (names are unique in a project)."""
    (after,) = decode_cursor(cursor, 1, (str,)) if cursor else (None,)
    rows = _segment_rows(conn, project_id, after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return Page([_segment(r) for r in rows], encode_cursor(rows[-1]["name"]) if more else None)


def _segment_rows(conn: Connection, project_id: int, after_name: str | None, limit: int | None) -> list[Row]:
    sql = "SELECT id, name, description, filter, created_at FROM segments WHERE project_id = ?"
    params: list[Any] = [project_id]
    if after_name is not None:
        sql += " AND name > ?"
        params.append(after_name)
    sql += " ORDER BY name"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return conn.execute(sql, params).fetchall()


def get_segment(conn: Connection, project_id: int, segment_id: int) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT id, name, description, filter, created_at FROM segments WHERE project_id = ? AND id = ?",
        (project_id, segment_id),
    ).fetchone()
    return _segment(row) if row else None


def create_segment(
    conn: Connection, project_id: int, name: str, description: str, node: FilterNode, now: datetime
) -> dict[str, Any]:
    """Store a segment (inside the writer's transaction). Its filter must compile for each kind of
    query (segments it names must exist); a name already taken is a Conflict."""
    if conn.execute("SELECT 1 FROM segments WHERE project_id = ? AND name = ?", (project_id, name)).fetchone():
        raise Conflict(f"A segment named {name!r} already exists")
    # Events accept every kind of condition, so this checks the segments it names exist (a
    # property condition in a segment later used on persons is reported then, with its path).
    Compiler(conn, project_id, now).compile(node, EVENTS)
    segment_id = returning_id(
        conn,
        "INSERT INTO segments (project_id, name, description, filter, created_at) VALUES (?, ?, ?, ?, ?)",
        (project_id, name, description, _encode(dump_filter(node)).decode(), format_time(now)),
    )
    found = get_segment(conn, project_id, segment_id)
    assert found is not None
    return found


def delete_segment(conn: Connection, project_id: int, segment_id: int) -> dict[str, Any]:
    """Remove a segment (inside the writer's transaction); refused while another segment uses it."""
    found = get_segment(conn, project_id, segment_id)
    if found is None:
        raise NotFound(f"No segment with id {segment_id}")
    users = [s["name"] for s in list_segments(conn, project_id) if segment_id in _segments_named(s["filter"])]
    if users:
        raise Conflict(f"Segment {segment_id} is used by segments {users!r}; change or delete those first")
    conn.execute("DELETE FROM segments WHERE project_id = ? AND id = ?", (project_id, segment_id))
    return found


def _segments_named(document: Any) -> set[int]:
    found: set[int] = set()
    if isinstance(document, dict):
        if isinstance(document.get("segment"), int) and len(document) == 1:
            found.add(document["segment"])
        for value in document.values():
            found |= _segments_named(value)
    elif isinstance(document, list):
        for value in document:
            found |= _segments_named(value)
    return found


def _segment(row: Row) -> dict[str, Any]:
    document = _decode(row["filter"])
    parse_filter(document)  # stored documents were validated; fail loudly if the schema moved
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "filter": document,
        "created_at": row["created_at"],
    }
