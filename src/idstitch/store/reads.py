"""Read queries over the store, one function per question, each `fn(conn, project_id, ...)`.

Lists are paged by keyset cursors (the last row's sort key), never by offset, so page 1,000 of
100k persons costs what page 1 does.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from idstitch.attributes import AttributeType, OpKind
from idstitch.display import avatar_url, display_name
from idstitch.errors import InvalidRequest
from idstitch.store.connection import Connection, Row

_decode = msgspec.json.Decoder().decode


@dataclass(frozen=True, slots=True)
class Page:
    results: list[dict[str, Any]]
    next_cursor: str | None


def encode_cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(list(parts))).decode()


def decode_cursor(cursor: str, arity: int, kinds: tuple[type, ...] | None = None) -> list[Any]:
    """The sort key a cursor holds; `kinds` (one type per part) makes a forged cursor whose part
    has another type a 400 too: PostgreSQL refuses to compare a bigint column with a text, where
    SQLite compared them by its type order and answered a wrong page."""
    try:
        parts = msgspec.json.decode(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, msgspec.DecodeError):
        raise InvalidRequest(f"cursor {cursor!r} is not one this API gave out") from None
    if not isinstance(parts, list) or len(parts) != arity or not all(map(_is_sort_key, parts)):
        raise InvalidRequest(f"cursor {cursor!r} is not one this API gave out")
    if kinds is not None and not all(_is_kind(part, kind) for part, kind in zip(parts, kinds)):
        raise InvalidRequest(f"cursor {cursor!r} is not one this API gave out")
    return parts


def _is_sort_key(part: Any) -> bool:
    # What a cursor can hold and both stores can bind: a forged `[[], {}]` was a 500, not a 400.
    # No NUL in a text: no stored id or time has one, and PostgreSQL cannot even bind it.
    if isinstance(part, int) and not isinstance(part, bool):
        return -(2**63) <= part < 2**63
    if isinstance(part, str):
        return "\x00" not in part
    return isinstance(part, float)


def _is_kind(part: Any, kind: type) -> bool:
    return isinstance(part, kind) and not (kind is int and isinstance(part, bool))


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(text: str) -> str:
    """`text` with A-Z folded only: SQLite's lower() (PostgreSQL's under the "C" collation)."""
    return text.translate(_ASCII_LOWER)


def free_of_nul(*texts: str) -> bool:
    """Whether every text can be a stored id or name: none holds NUL (ids.py refuses it at ingest,
    and PostgreSQL cannot compare with it), so a lookup by such a text finds nothing."""
    return not any("\x00" in text for text in texts)


def person_id_for_distinct_id(conn: Connection, project_id: int, distinct_id: str) -> str | None:
    if not free_of_nul(distinct_id):
        return None
    row = conn.execute(
        "SELECT person_id FROM distinct_ids WHERE project_id = ? AND distinct_id = ?", (project_id, distinct_id)
    ).fetchone()
    return row[0] if row else None


def person(conn: Connection, project_id: int, person_id: str) -> dict[str, Any] | None:
    """A person with its ids, properties and display fields, or None."""
    if not free_of_nul(person_id):
        return None
    row = conn.execute(
        "SELECT id, created_at, is_identified FROM persons WHERE id = ? AND project_id = ?", (person_id, project_id)
    ).fetchone()
    if row is None:
        return None
    return _persons_from_rows(conn, [row])[0]


def _persons_from_rows(conn: Connection, rows: list[Row]) -> list[dict[str, Any]]:
    if not rows:
        return []
    ids = [r[0] for r in rows]
    marks = ",".join("?" * len(ids))
    distinct: dict[str, list[tuple[str, bool]]] = {i: [] for i in ids}
    for person_id, distinct_id, is_user_id in conn.execute(
        f"SELECT person_id, distinct_id, is_user_id FROM distinct_ids WHERE person_id IN ({marks})"
        " ORDER BY created_at, distinct_id",
        ids,
    ):
        distinct[person_id].append((distinct_id, bool(is_user_id)))
    properties: dict[str, dict[str, Any]] = {i: {} for i in ids}
    for person_id, key, value in conn.execute(
        f"SELECT person_id, key, value FROM person_attributes WHERE person_id IN ({marks}) AND kind != ?",
        (*ids, OpKind.UNSET.value),
    ):
        properties[person_id][key] = _decode(value) if value is not None else None
    out = []
    for row in rows:
        person_id, created_at, is_identified = row[0], row[1], row[2]
        props = properties[person_id]
        user_ids = [d for d, is_user_id in distinct[person_id] if is_user_id]
        out.append(
            {
                "id": person_id,
                "distinct_ids": [d for d, _ in distinct[person_id]],
                "user_ids": user_ids,
                "properties": props,
                "is_identified": bool(is_identified),
                "created_at": created_at,
                "display_name": display_name(person_id, props, user_ids),
                "avatar_url": avatar_url(props),
            }
        )
    return out


def attributes(conn: Connection, person_id: str) -> list[dict[str, Any]]:
    """Each present attribute with its type, when it was set, by which operation and event."""
    if not free_of_nul(person_id):
        return []
    rows = conn.execute(
        "SELECT key, value, type, kind, time, event_uuid FROM person_attributes"
        " WHERE person_id = ? AND kind != ? ORDER BY key",
        (person_id, OpKind.UNSET.value),
    )
    return [
        {
            "key": key,
            "value": _decode(value) if value is not None else None,
            "type": AttributeType(kind_type).value,
            "operation": kind,
            "set_at": time,
            "event_uuid": event_uuid,
        }
        for key, value, kind_type, kind, time, event_uuid in rows
    ]


def links(conn: Connection, project_id: int, person_id: str) -> list[dict[str, Any]]:
    """Every link-log entry that names one of the person's ids or the person itself, oldest first."""
    return [_link(row) for row in _link_rows(conn, project_id, person_id, 0, None)]


def links_page(conn: Connection, project_id: int, person_id: str, limit: int, cursor: str | None) -> Page:
    """The person's link-log entries, oldest first, a page at a time."""
    (after,) = decode_cursor(cursor, 1, (int,)) if cursor else (0,)
    rows = _link_rows(conn, project_id, person_id, after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return Page([_link(row) for row in rows], encode_cursor(rows[-1]["id"]) if more else None)


def _link_rows(conn: Connection, project_id: int, person_id: str, after_id: int, limit: int | None) -> list[Row]:
    if not free_of_nul(person_id):
        return []
    ids = [r[0] for r in conn.execute("SELECT distinct_id FROM distinct_ids WHERE person_id = ?", (person_id,))]
    marks = ",".join("?" * len(ids)) or "NULL"
    sql = (
        f"{_LINKS} WHERE l.project_id = ? AND l.id > ? AND ("
        f" l.target_distinct_id IN ({marks}) OR l.source_distinct_id IN ({marks})"
        " OR l.target_person_id = ? OR l.source_person_id = ?) ORDER BY l.id"
    )
    params: list[Any] = [project_id, after_id, *ids, *ids, person_id, person_id]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return conn.execute(sql, params).fetchall()


# Each entry with what an undo or redo re-decided for it (store/persons.py `rewrite_identity`).
_LINKS = (
    "SELECT l.*, x.outcome AS outcome_now, x.reason AS reason_now, x.decided_by"
    " FROM links l LEFT JOIN link_effects x ON x.link_id = l.id"
)


def _outcome(outcome: str, reason: str | None) -> str:
    return outcome if reason is None else f"{outcome}:{reason}"


def link(conn: Connection, project_id: int, link_id: int) -> dict[str, Any] | None:
    row = conn.execute(f"{_LINKS} WHERE l.project_id = ? AND l.id = ?", (project_id, link_id)).fetchone()
    return _link(row) if row else None


def links_since(conn: Connection, project_id: int, after_id: int) -> list[dict[str, Any]]:
    """The entries logged after `after_id`, oldest first (what an action just logged)."""
    rows = conn.execute(f"{_LINKS} WHERE l.project_id = ? AND l.id > ? ORDER BY l.id", (project_id, after_id))
    return [_link(row) for row in rows]


def last_log_ids(conn: Connection, project_id: int) -> tuple[int, int]:
    """The newest link-log and warning ids, to tell what an action adds."""
    row = conn.execute(
        "SELECT (SELECT coalesce(max(id), 0) FROM links WHERE project_id = ?),"
        " (SELECT coalesce(max(id), 0) FROM warnings WHERE project_id = ?)",
        (project_id, project_id),
    ).fetchone()
    return int(row[0]), int(row[1])


def warnings_since(conn: Connection, project_id: int, after_id: int) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT * FROM warnings WHERE project_id = ? AND id > ? ORDER BY id", (project_id, after_id))
    return [_warning(r) for r in rows]


def persons_holding(conn: Connection, project_id: int, distinct_ids: Iterable[str]) -> list[dict[str, Any]]:
    """The persons owning any of the ids, by person id."""
    wanted = sorted({d for d in distinct_ids if free_of_nul(d)})
    person_ids: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        person_ids.update(
            r[0] for r in conn.execute(
                f"SELECT person_id FROM distinct_ids WHERE project_id = ? AND distinct_id IN ({','.join('?' * len(chunk))})",
                (project_id, *chunk),
            )
        )
    found: list[dict[str, Any]] = []
    ordered = sorted(person_ids)
    for start in range(0, len(ordered), 500):
        chunk = ordered[start : start + 500]
        rows = conn.execute(
            f"SELECT id, created_at, is_identified FROM persons WHERE id IN ({','.join('?' * len(chunk))}) ORDER BY id", chunk
        ).fetchall()
        found.extend(_persons_from_rows(conn, rows))
    return found


def _link(row: Row) -> dict[str, Any]:
    logged = _outcome(row["outcome"], row["reason"])
    now = logged if row["outcome_now"] is None else _outcome(row["outcome_now"], row["reason_now"])
    detail = row["detail"]
    if isinstance(detail, str):
        detail = _decode(detail)
    return {
        "id": row["id"],
        "kind": row["kind"],
        "actor": row["actor"],
        "target_distinct_id": row["target_distinct_id"],
        "source_distinct_id": row["source_distinct_id"],
        "target_person_id": row["target_person_id"],
        "source_person_id": row["source_person_id"],
        "event_uuid": row["event_uuid"],
        "decision_row": row["decision_row"],
        "outcome": now,
        "logged_outcome": logged,
        "decided_by": row["decided_by"],
        "undoes": (detail or {}).get("undoes") if row["kind"] == "undo" else None,
        "created_at": row["created_at"],
    }


def events_page(conn: Connection, project_id: int, person_id: str, limit: int, cursor: str | None) -> Page:
    """The person's events across all its ids, newest first."""
    if not free_of_nul(person_id):
        return Page([], None)
    ids = [r[0] for r in conn.execute("SELECT distinct_id FROM distinct_ids WHERE person_id = ?", (person_id,))]
    if not ids:
        return Page([], None)
    marks = ",".join("?" * len(ids))
    sql = (
        "SELECT seq, uuid, distinct_id, event, timestamp, session_id, properties, ops FROM events"
        f" WHERE project_id = ? AND distinct_id IN ({marks})"
    )
    params: list[Any] = [project_id, *ids]
    if cursor:
        timestamp, seq = decode_cursor(cursor, 2, (str, int))
        sql += " AND (timestamp, seq) < (?, ?)"
        params += [timestamp, seq]
    sql += " ORDER BY timestamp DESC, seq DESC LIMIT ?"
    rows = conn.execute(sql, (*params, limit + 1)).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    results = [event_from_row(r) for r in rows]
    return Page(results, encode_cursor(rows[-1]["timestamp"], rows[-1]["seq"]) if more else None)


def event_from_row(row: Row) -> dict[str, Any]:
    """A stored event as the API shows it."""
    return {
        "uuid": row["uuid"],
        "distinct_id": row["distinct_id"],
        "event": row["event"],
        "timestamp": row["timestamp"],
        "session_id": row["session_id"],
        "properties": _decode(row["properties"]),
        "operations": _decode(row["ops"]) if row["ops"] else {},
    }


def warnings_page(
    conn: Connection, project_id: int, limit: int, cursor: str | None, warning_type: str | None
) -> Page:
    """Recorded warnings, newest first, optionally of one type."""
    if warning_type and not free_of_nul(warning_type):
        return Page([], None)
    sql = "SELECT * FROM warnings WHERE project_id = ?"
    params: list[Any] = [project_id]
    if warning_type:
        sql += " AND type = ?"
        params.append(warning_type)
    if cursor:
        (last_id,) = decode_cursor(cursor, 1, (int,))
        sql += " AND id < ?"
        params.append(last_id)
    rows = conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*params, limit + 1)).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    results = [_warning(r) for r in rows]
    _mark_lifted(conn, project_id, results)
    return Page(results, encode_cursor(rows[-1]["id"]) if more else None)


def _mark_lifted(conn: Connection, project_id: int, warnings: list[dict[str, Any]]) -> None:
    """A warning about a refused link that an undo re-decided says so (`lifted_by`): the refusal
    it reports no longer holds."""
    uuids = sorted({w["event_uuid"] for w in warnings if w["event_uuid"] and w["type"] in _LINK_WARNINGS})
    if not uuids:
        return
    lifted = dict(
        conn.execute(
            "SELECT l.event_uuid, x.decided_by FROM links l JOIN link_effects x ON x.link_id = l.id"
            f" WHERE l.project_id = ? AND l.event_uuid IN ({','.join('?' * len(uuids))}) AND x.outcome != 'refused'",
            (project_id, *uuids),
        ).fetchall()
    )
    for warning in warnings:
        if warning["type"] in _LINK_WARNINGS:
            warning["lifted_by"] = lifted.get(warning["event_uuid"])


# The warnings that report a refused link (and nothing about attributes).
_LINK_WARNINGS = frozenset({"cannot_merge_already_identified", "identity_rule_limit"})


def _warning(r: Row) -> dict[str, Any]:
    return {
        "id": r["id"],
        "type": r["type"],
        "event_uuid": r["event_uuid"],
        "distinct_ids": _decode(r["distinct_ids"]),
        "details": _decode(r["details"]),
        "created_at": r["created_at"],
    }


def dead_letters_page(conn: Connection, project_id: int, limit: int, cursor: str | None) -> Page:
    """Rejected events as they were received, newest first."""
    sql = "SELECT * FROM dead_letters WHERE project_id = ?"
    params: list[Any] = [project_id]
    if cursor:
        (last_id,) = decode_cursor(cursor, 1, (int,))
        sql += " AND id < ?"
        params.append(last_id)
    rows = conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*params, limit + 1)).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    return Page([dead_letter(r) for r in rows], encode_cursor(rows[-1]["id"]) if more else None)


def dead_letter(row: Row) -> dict[str, Any]:
    """A dead letter with its payload as it was received."""
    try:
        payload = _decode(row["payload"])
    except msgspec.DecodeError:  # earlier versions stored a bare-string payload as that text
        payload = row["payload"]
    return {"id": row["id"], "reason": row["reason"], "payload": payload, "received_at": row["received_at"]}


def export_persons(conn: Connection, project_id: int, batch: int = 500) -> Iterator[dict[str, Any]]:
    """Every person of the project, oldest first, in the import format (for JSON lines export)."""
    last: tuple[str, str] = ("", "")
    while True:
        rows = conn.execute(
            "SELECT id, created_at, is_identified FROM persons WHERE project_id = ? AND (created_at, id) > (?, ?)"
            " ORDER BY created_at, id LIMIT ?",
            (project_id, *last, batch),
        ).fetchall()
        if not rows:
            return
        for found in _persons_from_rows(conn, rows):
            yield {
                "distinct_ids": found["distinct_ids"],
                "user_ids": found["user_ids"],
                "properties": found["properties"],
                "is_identified": found["is_identified"],
                "created_at": found["created_at"],
            }
        last = (rows[-1][1], rows[-1][0])
