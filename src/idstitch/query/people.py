"""Persons as lists and lists show them: filtered pages, and the short form (display name, avatar)
shown wherever a session or an event names its person (identity-rules.md §5)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from idstitch.attributes import OpKind
from idstitch.display import avatar_url, display_name
from idstitch.errors import InvalidRequest
from idstitch.ids import is_person_id
from idstitch.query.compiler import Sql
from idstitch.store import reads
from idstitch.store.connection import Connection
from idstitch.store.reads import Page, decode_cursor, encode_cursor

_decode = msgspec.json.Decoder().decode
_SHOWN_KEYS = ("highlightDisplayName", "name", "email", "avatar")
_CHUNK = 500


def summaries(conn: Connection, person_ids: Iterable[str | None]) -> dict[str, dict[str, Any]]:
    """`{person_id: {id, display_name, avatar_url, is_identified, user_ids}}`, three queries per 500."""
    ids = list(dict.fromkeys(p for p in person_ids if p))
    out: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        identified = dict(conn.execute(f"SELECT id, is_identified FROM persons WHERE id IN ({marks})", chunk).fetchall())
        shown: dict[str, dict[str, Any]] = {i: {} for i in chunk}
        for person_id, key, value in conn.execute(
            f"SELECT person_id, key, value FROM person_attributes WHERE person_id IN ({marks})"
            f" AND key IN ({','.join('?' * len(_SHOWN_KEYS))}) AND kind != ?",
            (*chunk, *_SHOWN_KEYS, OpKind.UNSET.value),
        ):
            shown[person_id][key] = _decode(value) if value is not None else None
        user_ids: dict[str, list[str]] = {i: [] for i in chunk}
        for person_id, distinct_id in conn.execute(
            f"SELECT person_id, distinct_id FROM distinct_ids WHERE person_id IN ({marks}) AND is_user_id = 1"
            " ORDER BY created_at, distinct_id",
            chunk,
        ):
            user_ids[person_id].append(distinct_id)
        for person_id in chunk:
            if person_id not in identified:
                continue
            out[person_id] = {
                "id": person_id,
                "display_name": display_name(person_id, shown[person_id], user_ids[person_id]),
                "avatar_url": avatar_url(shown[person_id]),
                "is_identified": bool(identified[person_id]),
                "user_ids": user_ids[person_id],
            }
    return out


def persons_page(
    conn: Connection, project_id: int, where: Sql, limit: int, cursor: str | None, *, details: Connection | None = None
) -> Page:
    """Persons the filter keeps, newest first, as full persons (ids, properties, display name);
    `details`: where each person is read, if not on `conn` (which holds a copy of persons only)."""
    rows = newest_rows(conn, project_id, where, limit + 1, cursor)
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(_full(details or conn, project_id, rows), encode_cursor(rows[-1][1], rows[-1][0]) if more else None)


def newest_and_count(
    conn: Connection, project_id: int, where: Sql, limit: int, cap: int, *, details: Connection | None = None
) -> tuple[list[dict[str, Any]], int]:
    """The `limit` newest persons the filter keeps, and how many it keeps up to `cap` (cap + 1:
    more), from one run of the filter (a `did` condition costs a pass over the events)."""
    rows = newest_rows(conn, project_id, where, cap + 1, None)
    return _full(details or conn, project_id, rows[:limit]), len(rows)


def newest_rows(conn: Connection, project_id: int, where: Sql, limit: int, cursor: str | None) -> list[Any]:
    """`(id, created_at)` of up to `limit` persons the filter keeps, newest first, after `cursor`."""
    sql = f"SELECT p.id, p.created_at FROM persons p WHERE p.project_id = ? AND {where.text}"
    params: list[Any] = [project_id, *where.params]
    if cursor:
        created_at, person_id = decode_cursor(cursor, 2, (str, str))
        if not is_person_id(person_id):
            raise InvalidRequest(f"cursor {cursor!r} is not one this API gave out")
        sql += " AND (p.created_at, p.id) < (?, ?)"
        params += [created_at, conn.dialect.person_id(person_id)]
    return conn.execute(sql + " ORDER BY p.created_at DESC, p.id DESC LIMIT ?", (*params, limit)).fetchall()


def _full(source: Connection, project_id: int, rows: list[Any]) -> list[dict[str, Any]]:
    return [found for row in rows if (found := reads.person(source, project_id, row[0])) is not None]


def distinct_ids_of(conn: Connection, project_id: int, person_id: str) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT distinct_id FROM distinct_ids WHERE project_id = ? AND person_id = ?", (project_id, person_id)
        )
    ]
