"""Retention (the project setting `events_retention_days`): events whose time is past their
project's cutoff leave the store, one bounded batch per writer transaction (idstitch/retention.py
runs the batches); persons, their ids and their attributes stay.

An undo or a split replays the events of the ids it touches (history.py; engine.py `_rederive`),
and must make exactly what it made before the events expired. An expired event is therefore
deleted whole only when no replay could tell it is gone; otherwise what a replay reads of it
moves to `retired_events` (no properties but the few that set automatic attributes, no session,
no arrival time), which replays read beside `events` (store/persons.py `replay_events`) and
nothing else does: counts, lists, sessions and the analytics copy never see it. An event is
retired when it

- carries attribute operations (`ops`), or is processed by the person and has properties that
  set automatic attributes (first_touch.py `lifted_properties`): a replay applies them again;
- is named by a link-log entry: its identify, alias, merge or import is re-decided from it;
- is not *covered*.

Any other event only ever makes its id's person (`person_profiles: always`), lowers the
person's `created_at` to its time, or counts for the first-seen time a split gives a person. It
is covered by a kept event Q of the same id that came before it (smaller seq) and no later (Q's
time ≤ its time), processed by the person whenever it is, not an import (a rewritten history may
refuse an import, and its event with it), with no link-log entry naming the id in between
(seqs strictly between the two). Then in every replay the id has a person when the event comes
if and only if it had one after Q (only an entry naming the id gives it one, and ids never lose
theirs), and that person's `created_at` is at most Q's time, hence at most the event's; and a
split after the event counts Q's time too. The event changes nothing: it goes. So a long run of
one id's plain events (no operations, no page, device or campaign properties) leaves one row,
where the first one was; a browser's page views, which carry such properties, are all kept. Entries logged later take greater
seqs, and retired rows stay until an erasure takes their persons: what covers a deleted event
remains.

A batch walks the expired events name by name, each in (time, seq) order, through the
`events_by_name` index (project, event, time): retention needs no index of its own on the hot
path. Once no expired event is left, the summaries of sessions whose last event is past the
cutoff go too (a session reaching across the cutoff keeps its summary).

The analytics copy expires its own rows by the same cutoff (analytics/feeder.py `_expired`), so
nothing is written to the feed's `event_changes`. The event with the greatest seq is retired
rather than deleted on SQLite, where the next seq is the greatest one held plus one (store/sqlite.py
`max_seq`): deleted, its seq would be taken again, by an event the copy would then skip.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec

from idstitch.clock import format_time
from idstitch.first_touch import lifted_properties
from idstitch.store.connection import Connection
from idstitch.store.persons import encode_json

BATCH_EVENTS = 1_000
# Event names looked at in one batch at most (each costs an index seek or two).
NAMES_PER_BATCH = 1_000
_CHUNK = 400
_IMPORT = "$import"

_decode = msgspec.json.Decoder().decode


def cutoff(now: datetime, days: int) -> str:
    """The time before which events go, as stored times compare (the copy uses the same)."""
    return format_time(now - timedelta(days=days))


def _days(settings: Any) -> int | None:
    data = _decode(settings) if isinstance(settings, (str, bytes)) else settings
    days = data.get("events_retention_days") if isinstance(data, dict) else None
    return days if isinstance(days, int) and not isinstance(days, bool) and days >= 1 else None


def retention_days(conn: Connection) -> dict[int, int]:
    """Each project with `events_retention_days` set, and its days."""
    found: dict[int, int] = {}
    for project_id, settings in conn.execute("SELECT id, settings FROM projects ORDER BY id"):
        days = _days(settings)
        if days is not None:
            found[int(project_id)] = days
    return found


def project_retention_days(conn: Connection, project_id: int) -> int | None:
    row = conn.execute("SELECT settings FROM projects WHERE id = ?", (project_id,)).fetchone()
    return _days(row[0]) if row else None


@dataclass(slots=True)
class Expired:
    """What one batch (or a run of them, summed) did."""

    deleted: int = 0  # events gone whole
    retired: int = 0  # events moved to `retired_events`
    sessions: int = 0  # session summaries gone
    # The event name the next batch starts at; None when no expired event was left.
    resume: str | None = None
    more: bool = False

    def add(self, other: Expired) -> None:
        self.deleted += other.deleted
        self.retired += other.retired
        self.sessions += other.sessions


@dataclass(frozen=True, slots=True)
class _Event:
    seq: int
    uuid: str
    distinct_id: str
    name: str
    timestamp: str
    process_person: bool
    properties: str
    ops: str | None



def expire_batch(
    conn: Connection, project_id: int, before: str, *, resume: str | None = None, limit: int = BATCH_EVENTS
) -> Expired:
    """Expire up to `limit` of the project's events older than `before`, starting at the event
    name `resume` (None: the first); inside the writer's transaction, alone (no other writer)."""
    events, next_name = _expired_events(conn, project_id, before, "" if resume is None else resume, limit)
    result = Expired(resume=next_name, more=next_name is not None)
    if events:
        kept = _kept(conn, project_id, events)
        _retire(conn, project_id, [e for e in events if e.seq in kept], kept)
        gone = [e for e in events if e.seq not in kept]
        _delete(conn, project_id, before, events, gone)
        result.retired, result.deleted = len(kept), len(gone)
    if next_name is None:
        result.sessions = _delete_sessions(conn, project_id, before, limit)
        result.more = result.sessions == limit
    return result


def _expired_events(conn: Connection, project_id: int, before: str, start: str, limit: int) -> tuple[list[_Event], str | None]:
    """Up to `limit` expired events, name by name from `start` on; and the name to go on at."""
    events: list[_Event] = []
    name, inclusive = start, True
    for _ in range(NAMES_PER_BATCH):
        found = conn.execute(
            f"SELECT event FROM events WHERE project_id = ? AND event {'>=' if inclusive else '>'} ? ORDER BY event LIMIT 1",
            (project_id, name),
        ).fetchone()
        if found is None:
            return events, None
        name, inclusive = found[0], False
        wanted = limit - len(events)
        rows = conn.execute(
            "SELECT seq, uuid, distinct_id, event, timestamp, process_person, properties, ops FROM events"
            " WHERE project_id = ? AND event = ? AND timestamp < ? ORDER BY timestamp, seq LIMIT ?",
            (project_id, name, before, wanted),
        ).fetchall()
        events += [_Event(int(r[0]), r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7]) for r in rows]
        if len(rows) == wanted:
            return events, name  # full: this name may hold more
    next_name = conn.execute(
        "SELECT event FROM events WHERE project_id = ? AND event > ? ORDER BY event LIMIT 1", (project_id, name)
    ).fetchone()
    return events, None if next_name is None else next_name[0]


def _lifted(event: _Event) -> dict[str, Any]:
    if not event.process_person:
        return {}
    properties = _decode(event.properties)
    return lifted_properties(properties, event.name) if isinstance(properties, dict) else {}


def _kept(conn: Connection, project_id: int, events: list[_Event]) -> dict[int, dict[str, Any]]:
    """The seqs of the events to retire, each with its lifted properties (see the docstring)."""
    by_seq = {e.seq: e for e in events}
    # An entry shares the seq of its event (engine.py): the entries at these seqs that name them.
    named = {
        int(seq)
        for chunk in _chunks(list(by_seq))
        for seq, event_uuid in conn.execute(f"SELECT seq, event_uuid FROM links WHERE seq IN ({_marks(chunk)})", chunk)
        if event_uuid is not None and event_uuid == by_seq[int(seq)].uuid
    }
    kept: dict[int, dict[str, Any]] = {}
    plain: list[_Event] = []
    # Per distinct id, the kept events that may cover its others: (seq, time, processed by the person).
    covers: dict[str, list[tuple[int, str, bool]]] = {}
    for event in events:
        lifted = _lifted(event)
        if event.ops is not None or lifted or event.seq in named:
            kept[event.seq] = lifted
            if event.name != _IMPORT:
                covers.setdefault(event.distinct_id, []).append((event.seq, event.timestamp, event.process_person))
        else:
            plain.append(event)
    if conn.dialect.name == "sqlite" and plain:
        last = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
        kept.update((e.seq, {}) for e in plain if e.seq == last)
    links = _link_seqs(conn, project_id, sorted({e.distinct_id for e in plain}))
    # In time order, so that an event kept here covers the later ones of its id.
    for event in sorted(plain, key=lambda e: (e.timestamp, e.seq)):
        if event.seq in kept:
            continue
        known = covers.setdefault(event.distinct_id, [])
        cover = _cover(known, event)
        if cover is None:
            stored = _stored_cover(conn, project_id, event)
            if stored is not None:
                known.append(stored)
                cover = stored[0]
        if cover is not None and not (event.process_person and _entry_between(links.get(event.distinct_id, []), cover, event.seq)):
            continue  # covered: it goes
        kept[event.seq] = {}
        known.append((event.seq, event.timestamp, event.process_person))
    return kept


def _cover(known: list[tuple[int, str, bool]], event: _Event) -> int | None:
    """The greatest seq among the kept events that cover `event` (before it, no later, processed
    by the person if it is), or None."""
    best: int | None = None
    for seq, timestamp, process_person in known:
        if seq < event.seq and timestamp <= event.timestamp and (process_person or not event.process_person):
            if best is None or seq > best:
                best = seq
    return best


def _stored_cover(conn: Connection, project_id: int, event: _Event) -> tuple[int, str, bool] | None:
    """The retired event of the same id, retired earlier, that covers `event` and came last."""
    row = conn.execute(
        "SELECT seq, timestamp, process_person FROM retired_events WHERE project_id = ? AND distinct_id = ? AND seq < ?"
        " AND timestamp <= ? AND event <> ? AND process_person >= ? ORDER BY seq DESC LIMIT 1",
        (project_id, event.distinct_id, event.seq, event.timestamp, _IMPORT, int(event.process_person)),
    ).fetchone()
    return (int(row[0]), row[1], bool(row[2])) if row else None


def _link_seqs(conn: Connection, project_id: int, distinct_ids: list[str]) -> dict[str, list[int]]:
    """The seqs of the link-log entries naming each id, in order."""
    found: dict[str, set[int]] = {}
    for chunk in _chunks(distinct_ids):
        marks = _marks(chunk)
        for distinct_id, seq in conn.execute(
            f"SELECT target_distinct_id, seq FROM links WHERE project_id = ? AND target_distinct_id IN ({marks})"
            f" UNION ALL SELECT source_distinct_id, seq FROM links WHERE project_id = ? AND source_distinct_id IN ({marks})",
            (project_id, *chunk, project_id, *chunk),
        ):
            found.setdefault(distinct_id, set()).add(int(seq or 0))
    return {distinct_id: sorted(seqs) for distinct_id, seqs in found.items()}


def _entry_between(seqs: list[int], low: int, high: int) -> bool:
    """Whether an entry's seq lies strictly between `low` and `high` (`seqs` sorted)."""
    at = bisect.bisect_right(seqs, low)
    return at < len(seqs) and seqs[at] < high


def _retire(conn: Connection, project_id: int, events: list[_Event], lifted: dict[int, dict[str, Any]]) -> None:
    conn.executemany(
        "INSERT INTO retired_events (seq, project_id, uuid, distinct_id, event, timestamp, process_person, ops, lifted)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (e.seq, project_id, e.uuid, e.distinct_id, e.name, e.timestamp, int(e.process_person), e.ops,
             encode_json(lifted[e.seq]) if lifted[e.seq] else None)
            for e in events
        ],
    )


def _delete(conn: Connection, project_id: int, before: str, events: list[_Event], gone: list[_Event]) -> None:
    # By seq, the key, alone on SQLite (whose planner would otherwise walk an index of the whole
    # project); PostgreSQL also gets the time bound, to look only in the partitions of expired months.
    bound = " AND project_id = ? AND timestamp < ?" if conn.dialect.name == "postgresql" else ""
    for chunk in _chunks([e.seq for e in events]):
        conn.execute(
            f"DELETE FROM events WHERE seq IN ({_marks(chunk)}){bound}", (*chunk, *((project_id, before) if bound else ()))
        )
    if conn.dialect.name == "postgresql":
        # A retired event's uuid stays taken (sent again, it is a duplicate); a deleted one's is free.
        for chunk in _chunks([e.uuid for e in gone]):
            conn.execute(f"DELETE FROM event_uuids WHERE project_id = ? AND uuid IN ({_marks(chunk)})", (project_id, *chunk))


def _delete_sessions(conn: Connection, project_id: int, before: str, limit: int) -> int:
    """Up to `limit` summaries of sessions whose last event is older than `before`."""
    ids = [
        r[0]
        for r in conn.execute(
            "SELECT session_id FROM sessions WHERE project_id = ? AND first_at < ? AND last_at < ? LIMIT ?",
            (project_id, before, before, limit),
        )
    ]
    for chunk in _chunks(ids):
        conn.execute(f"DELETE FROM sessions WHERE project_id = ? AND session_id IN ({_marks(chunk)})", (project_id, *chunk))
    return len(ids)


def _chunks(values: Sequence[Any], size: int = _CHUNK) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


def _marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))
