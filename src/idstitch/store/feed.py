"""The store's side of the analytics feed (analytics/feeder.py): what changed, in commit order.

Three streams, each numbered so that a reader can ask for "everything after N":

    events          appended with their `seq`
    person_changes  one row per person whose row, ids or attributes changed, holding the number
                    of its last change (written by store/persons.py and privacy.py)
    event_changes   the seqs of stored events an erasure deleted or rewrote, and a mark (no
                    seq) for each erasure of persons: the journal never names an erased person,
                    so the copy drops every person of the project the store no longer has (the
                    mark keeps the greatest person change number the erasure dropped)

A reader must never pass a number whose transaction has not committed yet, or it would skip
that transaction's rows for good. On SQLite one writer takes the numbers in commit order, so
the greatest committed number is a safe horizon. On PostgreSQL concurrent writers draw them out
of order; every write holds the writes lock (shared, or exclusive when it runs alone), so taking
it exclusively for a moment waits out every write in flight: all numbers drawn by then are
committed or gone, and the sequences' last values are the horizon.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from idstitch.store.connection import Connection
from idstitch.store.dialects import FEED_LOCK, LAST_PERSON_CHANGE, WRITES_LOCK

_CHUNK = 500

EVENT_FEED_COLUMNS = "seq, project_id, distinct_id, event, timestamp, session_id, properties"


@dataclass(frozen=True, slots=True)
class FeedPosition:
    """How far a copy has read each stream (0: nothing yet)."""

    seq: int = 0
    person_change: int = 0
    event_change: int = 0

    def behind(self, horizon: FeedPosition) -> FeedPosition:
        return FeedPosition(
            max(0, horizon.seq - self.seq),
            max(0, horizon.person_change - self.person_change),
            max(0, horizon.event_change - self.event_change),
        )

    def reached(self, horizon: FeedPosition) -> bool:
        """Every stream read as far as `horizon`."""
        return self.seq >= horizon.seq and self.person_change >= horizon.person_change and self.event_change >= horizon.event_change

    @property
    def caught_up(self) -> bool:
        """For a lag (`behind`): nothing left to read."""
        return not (self.seq or self.person_change or self.event_change)


# -- writing (inside the writer's transaction) -----------------------------------------------


def persons_changed(conn: Connection, project_id: int, person_ids: Iterable[str]) -> None:
    """These persons' rows, ids or attributes changed (or they were deleted)."""
    rows = [(project_id, person_id) for person_id in dict.fromkeys(person_ids)]
    if rows:
        conn.executemany(
            f"INSERT INTO person_changes (project_id, person_id, change) VALUES (?, ?, {conn.dialect.next_person_change})"
            " ON CONFLICT (project_id, person_id) DO UPDATE SET change = excluded.change",
            rows,
        )


def events_changed(conn: Connection, project_id: int, seqs: Iterable[int]) -> None:
    """These stored events were deleted or rewritten."""
    conn.executemany("INSERT INTO event_changes (project_id, seq) VALUES (?, ?)", [(project_id, s) for s in seqs])


def persons_erased(conn: Connection, project_id: int, person_ids: Sequence[str]) -> None:
    """These persons were erased: their journal rows go, and a mark without their ids stays. The
    mark keeps the greatest number of the rows gone, so that it stays taken (dialects.py
    `LAST_PERSON_CHANGE`): the copy may have read past it."""
    taken = 0
    for start in range(0, len(person_ids), _CHUNK):
        chunk = list(person_ids[start : start + _CHUNK])
        where = f"project_id = ? AND person_id IN ({','.join('?' * len(chunk))})"
        row = conn.execute(f"SELECT max(change) FROM person_changes WHERE {where}", (project_id, *chunk)).fetchone()
        taken = max(taken, int(row[0] or 0))
        conn.execute(f"DELETE FROM person_changes WHERE {where}", (project_id, *chunk))
    conn.execute(
        "INSERT INTO event_changes (project_id, seq, person_change) VALUES (?, NULL, ?)", (project_id, taken or None)
    )


# -- reading (a read connection of the feeder's) ---------------------------------------------

_HORIZON = {
    "sqlite": (
        f"SELECT coalesce((SELECT max(seq) FROM events), 0), {LAST_PERSON_CHANGE},"
        " coalesce((SELECT max(change) FROM event_changes), 0)"
    ),
    "postgresql": (
        "SELECT (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM events_seq),"
        " (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM person_changes_seq),"
        " (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM event_changes_change_seq)"
    ),
}


def horizon(conn: Connection) -> FeedPosition:
    """The position up to which every stream is committed (see the module's docstring)."""
    if conn.dialect.name == "postgresql":
        conn.execute("BEGIN")
        try:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (WRITES_LOCK,))
            row = conn.execute(_HORIZON["postgresql"]).fetchone()
        finally:
            conn.execute("COMMIT")
    else:
        row = conn.execute(_HORIZON["sqlite"]).fetchone()
    return FeedPosition(int(row[0]), int(row[1]), int(row[2]))


class Lease(Enum):
    """Whether a feeder may ship to the analytics copy: one server at a time does, when several
    share a store (and so the copy), or each would write every event again."""

    ALONE = "alone"  # no other server can feed it: the SQLite file is one server's
    HELD = "held"  # this connection's session held the lease already
    TAKEN = "taken"  # taken just now: a feeder that held it before may still be applying a step
    ELSEWHERE = "elsewhere"  # another session holds it

    @property
    def ships(self) -> bool:
        return self is not Lease.ELSEWHERE


_LEASE = {
    # A session advisory lock: it lasts until the session ends (a server that stops, crashes or
    # loses its connection frees it for the next), and a session that holds it just says so.
    "postgresql": (
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        " AND granted AND classid = ?::bigint::oid AND objid = ?::bigint::oid AND objsubid = 1) THEN 'held'"
        " WHEN pg_try_advisory_lock(?) THEN 'taken' ELSE 'elsewhere' END"
    ),
}


def take_lease(conn: Connection) -> Lease:
    """The analytics feed's lease, on this connection's session: held, taken, or held elsewhere."""
    sql = _LEASE.get(conn.dialect.name)
    if sql is None:
        return Lease.ALONE
    row = conn.execute(sql, (FEED_LOCK >> 32, FEED_LOCK & 0xFFFF_FFFF, FEED_LOCK)).fetchone()
    return Lease(row[0])


def store_identity(conn: Connection) -> str:
    """The store's own random id, made when its schema was."""
    return str(conn.execute("SELECT id FROM store_identity").fetchone()[0])


def events_after(conn: Connection, after: int, upto: int, limit: int) -> list[tuple[Any, ...]]:
    """Events with `after < seq <= upto`, in seq order, at most `limit` (EVENT_FEED_COLUMNS)."""
    return [
        tuple(row)
        for row in conn.execute(
            f"SELECT {EVENT_FEED_COLUMNS} FROM events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
            (after, upto, limit),
        )
    ]


def events_by_seq(conn: Connection, seqs: Sequence[int]) -> list[tuple[Any, ...]]:
    """The events still stored with these seqs (EVENT_FEED_COLUMNS)."""
    found: list[tuple[Any, ...]] = []
    for start in range(0, len(seqs), _CHUNK):
        chunk = list(seqs[start : start + _CHUNK])
        found += [
            tuple(row)
            for row in conn.execute(
                f"SELECT {EVENT_FEED_COLUMNS} FROM events WHERE seq IN ({','.join('?' * len(chunk))})", chunk
            )
        ]
    return found


def person_changes_after(conn: Connection, after: int, upto: int, limit: int) -> list[tuple[int, int, str]]:
    """`(change, project_id, person_id)` with `after < change <= upto`, in change order."""
    return [
        (int(change), int(project_id), person_id)
        for change, project_id, person_id in conn.execute(
            "SELECT change, project_id, person_id FROM person_changes WHERE change > ? AND change <= ?"
            " ORDER BY change LIMIT ?",
            (after, upto, limit),
        )
    ]


def event_changes_after(conn: Connection, after: int, upto: int, limit: int) -> list[tuple[int, int, int | None]]:
    """`(change, project_id, seq)` with `after < change <= upto`, in change order (seq None: an
    erasure of persons)."""
    return [
        (int(change), int(project_id), None if seq is None else int(seq))
        for change, project_id, seq in conn.execute(
            "SELECT change, project_id, seq FROM event_changes WHERE change > ? AND change <= ? ORDER BY change LIMIT ?",
            (after, upto, limit),
        )
    ]


@dataclass(frozen=True, slots=True)
class PersonRows:
    """What the analytics copy holds of some persons, as the store has them now."""

    persons: list[tuple[str, int, str, int]]  # id, project_id, created_at, is_identified
    distinct_ids: list[tuple[int, str, str]]  # project_id, distinct_id, person_id
    attributes: list[tuple[str, str, str | None, str]]  # person_id, key, value (JSON text), kind


def person_rows(conn: Connection, person_ids: Sequence[str]) -> PersonRows:
    """The rows of these persons; a person deleted since has none."""
    rows = PersonRows([], [], [])
    for start in range(0, len(person_ids), _CHUNK):
        chunk = list(person_ids[start : start + _CHUNK])
        marks = ",".join("?" * len(chunk))
        rows.persons.extend(
            tuple(r) for r in conn.execute(  # type: ignore[misc]
                f"SELECT id, project_id, created_at, is_identified FROM persons WHERE id IN ({marks})", chunk
            )
        )
        rows.distinct_ids.extend(
            tuple(r) for r in conn.execute(  # type: ignore[misc]
                f"SELECT project_id, distinct_id, person_id FROM distinct_ids WHERE person_id IN ({marks})", chunk
            )
        )
        rows.attributes.extend(
            tuple(r) for r in conn.execute(  # type: ignore[misc]
                f"SELECT person_id, key, value, kind FROM person_attributes WHERE person_id IN ({marks})", chunk
            )
        )
    return rows


def all_person_ids(conn: Connection, after: str, limit: int) -> list[str]:
    """Every person's id greater than `after`, in order (a full copy walks them in pages)."""
    return [r[0] for r in conn.execute("SELECT id FROM persons WHERE id > ? ORDER BY id LIMIT ?", (after, limit))]


def person_ids_of(conn: Connection, project_id: int) -> list[str]:
    """Every person id of the project (what an erasure leaves)."""
    return [r[0] for r in conn.execute("SELECT id FROM persons WHERE project_id = ?", (project_id,))]
