"""Read questions the web UI asks beyond the API's: last seen, ids with their dates, warnings by
type over time, and suggestions for the filter builder. Each is `fn(conn, project_id, ...)` on a
read-only connection; each walks an index or a bounded part of one, never every person.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec

from idstitch.clock import format_time
from idstitch.history import undone_by
from idstitch.identity import LinkKind
from idstitch.store.connection import Connection, Row
from idstitch.store.reads import ascii_lower, free_of_nul

_decode = msgspec.json.Decoder().decode
_CHUNK = 500


def last_seen(conn: Connection, project_id: int, person_ids: list[str]) -> dict[str, str | None]:
    """The newest event time of each person across all its ids (one index seek per id)."""
    out: dict[str, str | None] = {p: None for p in person_ids}
    for start in range(0, len(person_ids), _CHUNK):
        chunk = person_ids[start : start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            "SELECT d.person_id, max((SELECT max(e.timestamp) FROM events e"
            "  WHERE e.project_id = d.project_id AND e.distinct_id = d.distinct_id))"
            f" FROM distinct_ids d WHERE d.project_id = ? AND d.person_id IN ({marks}) GROUP BY d.person_id",
            (project_id, *chunk),
        )
        out.update({person_id: seen for person_id, seen in rows})
    return out


def distinct_ids_with_dates(conn: Connection, project_id: int, person_id: str) -> list[dict[str, Any]]:
    """The person's ids, user ids first, each with when it joined and its first and last event."""
    if not free_of_nul(person_id):
        return []
    rows = conn.execute(
        "SELECT d.distinct_id, d.is_user_id, d.created_at,"
        " (SELECT min(e.timestamp) FROM events e WHERE e.project_id = d.project_id AND e.distinct_id = d.distinct_id),"
        " (SELECT max(e.timestamp) FROM events e WHERE e.project_id = d.project_id AND e.distinct_id = d.distinct_id),"
        " (SELECT count(*) FROM events e WHERE e.project_id = d.project_id AND e.distinct_id = d.distinct_id)"
        " FROM distinct_ids d WHERE d.project_id = ? AND d.person_id = ?"
        " ORDER BY d.is_user_id DESC, d.created_at, d.distinct_id",
        (project_id, person_id),
    )
    return [
        {
            "distinct_id": distinct_id,
            "is_user_id": bool(is_user_id),
            "created_at": created_at,
            "first_event_at": first,
            "last_event_at": last,
            "events": count,
        }
        for distinct_id, is_user_id, created_at, first, last, count in rows
    ]


def warnings_for_events(conn: Connection, project_id: int, event_uuids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Warnings recorded for these events, by event uuid (for the refusals of a link log)."""
    found: dict[str, list[dict[str, Any]]] = {}
    wanted = list(dict.fromkeys(u for u in event_uuids if u))
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        rows = conn.execute(
            f"SELECT * FROM warnings WHERE project_id = ? AND event_uuid IN ({','.join('?' * len(chunk))}) ORDER BY id",
            (project_id, *chunk),
        )
        for row in rows:
            found.setdefault(row["event_uuid"], []).append(_warning(row))
    return found


def _warning(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "type": row["type"],
        "event_uuid": row["event_uuid"],
        "distinct_ids": _decode(row["distinct_ids"]),
        "details": _decode(row["details"]),
        "created_at": row["created_at"],
    }


def warning_overview(
    conn: Connection, project_id: int, now: datetime, *, days: int = 14, examples: int = 3
) -> list[dict[str, Any]]:
    """Warnings grouped by type, most recent type first: totals, the last 24 hours and 7 days,
    a count per day (UTC) over the last `days` days, and the newest `examples` of each type."""
    day_keys = [(now - timedelta(days=offset)).date().isoformat() for offset in range(days - 1, -1, -1)]
    since_day = day_keys[0] + "T00:00:00.000000Z"
    last_24h, last_7d = format_time(now - timedelta(hours=24)), format_time(now - timedelta(days=7))
    groups: dict[str, dict[str, Any]] = {}
    # A stored warning may stand for several of one request (warning_digest.py): its `count`.
    count = conn.dialect.json_text_at(conn.dialect.json_document("details"), "count")
    times = f"coalesce(CAST({count.text} AS INTEGER), 1)"
    for kind, total, newest, in_24h, in_7d in conn.execute(
        # sum(CASE ...), not sum(created_at >= ?): PostgreSQL has no sum of booleans.
        f"SELECT type, sum({times}), max(created_at), sum(CASE WHEN created_at >= ? THEN {times} ELSE 0 END),"
        f" sum(CASE WHEN created_at >= ? THEN {times} ELSE 0 END)"
        " FROM warnings WHERE project_id = ? GROUP BY type",
        (*count.params, last_24h, *count.params, last_7d, *count.params, project_id),
    ):
        groups[kind] = {
            "type": kind, "total": total, "last_at": newest, "last_24h": in_24h, "last_7d": in_7d,
            "days": day_keys, "daily": [0] * days, "examples": [],
        }
    position = {day: i for i, day in enumerate(day_keys)}
    for kind, day, on_day in conn.execute(
        f"SELECT type, substr(created_at, 1, 10), sum({times}) FROM warnings"
        " WHERE project_id = ? AND created_at >= ? GROUP BY 1, 2",
        (*count.params, project_id, since_day),
    ):
        if kind in groups and day in position:
            groups[kind]["daily"][position[day]] = on_day
    for row in conn.execute(
        "SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY type ORDER BY id DESC) AS newest"
        " FROM warnings WHERE project_id = ?) AS ranked WHERE newest <= ? ORDER BY id DESC",
        (project_id, examples),
    ):
        if row["type"] in groups:
            groups[row["type"]]["examples"].append(_warning(row))
    return sorted(groups.values(), key=lambda g: g["last_at"], reverse=True)


def event_names(conn: Connection, project_id: int, limit: int = 200) -> list[str]:
    """Distinct event names, by a skip scan of the events-by-name index (one seek per name)."""
    rows = conn.execute(
        "WITH RECURSIVE names(event) AS ("
        " SELECT (SELECT min(event) FROM events WHERE project_id = ?)"
        " UNION ALL"
        " SELECT (SELECT min(event) FROM events WHERE project_id = ? AND event > names.event)"
        " FROM names WHERE names.event IS NOT NULL"
        ") SELECT event FROM names WHERE event IS NOT NULL LIMIT ?",
        (project_id, project_id, limit),
    )
    return [r[0] for r in rows]


def recent_attribute_keys(conn: Connection, project_id: int, persons: int = 500) -> list[str]:
    """Attribute keys of the most recently created persons (suggestions, not a full inventory)."""
    rows = conn.execute(
        "SELECT DISTINCT a.key FROM (SELECT id FROM persons WHERE project_id = ? ORDER BY created_at DESC LIMIT ?) p"
        " JOIN person_attributes a ON a.person_id = p.id WHERE a.kind != 'unset' ORDER BY a.key",
        (project_id, persons),
    )
    return [r[0] for r in rows]


def persons_with_email_prefix(conn: Connection, project_id: int, prefix: str, limit: int = 20) -> list[str]:
    """Persons whose `email` starts with `prefix` (ignoring ASCII case), through the email index."""
    if not prefix or '"' in prefix or "\\" in prefix or not free_of_nul(prefix):
        return []
    low = '"' + prefix.lower()
    rows = conn.execute(
        _EMAIL_PREFIX[conn.dialect.name],
        (low, low + "\U0010ffff", project_id, limit),
    )
    return [r[0] for r in rows]


# A range over lower(value) read as bytes: SQLite's lower() folds ASCII only and compares
# BINARY; PostgreSQL does the same under the "C" collation, whatever the database's own collation
# (under another one, a range is not a prefix and lower() folds non-ASCII letters too).
_EMAIL_PREFIX = {
    "sqlite": (
        "SELECT pa.person_id FROM person_attributes pa INDEXED BY person_attributes_by_email"
        " JOIN persons p ON p.id = pa.person_id WHERE pa.key = 'email' AND lower(pa.value) >= ? AND lower(pa.value) < ?"
        " AND pa.kind != 'unset' AND p.project_id = ? ORDER BY lower(pa.value), pa.person_id LIMIT ?"
    ),
    "postgresql": (
        "SELECT pa.person_id FROM person_attributes pa"
        " JOIN persons p ON p.id = pa.person_id WHERE pa.key = 'email'"
        ' AND lower(pa.value COLLATE "C") >= ? AND lower(pa.value COLLATE "C") < ?'
        ' AND pa.kind != \'unset\' AND p.project_id = ? ORDER BY lower(pa.value COLLATE "C"), pa.person_id LIMIT ?'
    ),
}


def text_search_condition(conn: Connection, keys: tuple[str, ...], text: str) -> tuple[str, tuple[Any, ...]]:
    """A condition on `p.id` (a person of the query it goes in): the person has one of `keys`
    with a string value containing `text`, ignoring ASCII case (as the filters' `contains`).
    One pass over those keys of the attribute index (person_attributes_by_key)."""
    needle = ascii_lower(msgspec.json.encode(text).decode()[1:-1])  # values are stored as JSON text
    marks = ",".join("?" * len(keys))
    contains = {
        "sqlite": "instr(lower(value), ?) > 0",
        "postgresql": 'strpos(lower(value COLLATE "C"), ?) > 0',
    }[conn.dialect.name]
    return (
        f"p.id IN (SELECT person_id FROM person_attributes WHERE key IN ({marks})"
        f" AND substr(value, 1, 1) = '\"' AND {contains})",
        (*keys, needle),
    )


def undone_entries(conn: Connection, project_id: int, links: list[dict[str, Any]]) -> dict[int, int]:
    """Which of these link-log entries (reads.links) an undo in effect undid, each with that
    undo's id (history.undone_links). An undo of one entry of a split undoes the whole split, so
    each entry of it (one per id, sharing `seq`) is marked with that undo."""
    undone = undone_by((link["id"], link["undoes"]) for link in links)
    splits = [link["id"] for link in links if link["kind"] == LinkKind.SPLIT]
    if not any(link_id in undone for link_id in splits):
        return undone
    marks = ",".join("?" * len(splits))
    seq = dict(conn.execute(f"SELECT id, seq FROM links WHERE project_id = ? AND id IN ({marks})", (project_id, *splits)))
    undoing = {seq[link_id]: undone[link_id] for link_id in splits if link_id in undone}
    return {**{link_id: undoing[seq[link_id]] for link_id in splits if seq[link_id] in undoing}, **undone}
