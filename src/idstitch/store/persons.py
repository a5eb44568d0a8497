"""The engine's `PersonStore` in SQL both backends speak; each backend subclasses it where its
SQL differs (bulk event writes, the sessions upsert, uuid de-duplication).

Every method runs inside the writer's open transaction; none commits.
"""

from __future__ import annotations

import heapq
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

import msgspec

from idstitch.attributes import NO_OPS, Attribute, AttributeOps, OpKind, PersonAttributes, type_of
from idstitch.clock import Now, format_time, stored_time
from idstitch.engine import LinkEntry, PersonRow, ReplayedEvent, StoredEvent
from idstitch.errors import Conflict
from idstitch.history import IdentityHistory, LoggedLink
from idstitch.id_rules import HeldId
from idstitch.identity import LinkKind
from idstitch.outcomes import WarningRecord
from idstitch.replay import Decided, MemoryPersons
from idstitch.store.connection import Connection, Row
from idstitch.store.feed import persons_changed
from idstitch.store.keyed_hashes import hashed_ids, privacy_key

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def encode_json(value: Any) -> str:
    return _encode(value).decode()


class SQLPersons(ABC):
    """The engine's `PersonStore` for one project, inside an open write transaction."""

    def __init__(self, conn: Connection, project_id: int, now: Now, take_seq: Callable[[], int]) -> None:
        self.conn = conn
        self.project_id = project_id
        self.now = now
        self.next_seq = take_seq

    # -- persons and ids -------------------------------------------------------------------

    def owners_of(self, distinct_ids: Iterable[str]) -> dict[str, str]:
        """The person owning each of the ids that has one."""
        found: dict[str, str] = {}
        for chunk in _chunks(list(distinct_ids)):
            found.update(
                self.conn.execute(
                    f"SELECT distinct_id, person_id FROM distinct_ids WHERE project_id = ?"
                    f" AND distinct_id IN ({_marks(chunk)})",
                    (self.project_id, *chunk),
                ).fetchall()
            )
        return found

    def person_of(self, distinct_id: str) -> str | None:
        return self.owners_of([distinct_id]).get(distinct_id)

    def load_persons(self, person_ids: Iterable[str]) -> dict[str, tuple[PersonRow, set[str]]]:
        """Each existing person's row and user ids."""
        found: dict[str, tuple[PersonRow, set[str]]] = {}
        for chunk in _chunks(list(person_ids)):
            marks = _marks(chunk)
            for person_id, created_at, is_identified in self.conn.execute(
                f"SELECT id, created_at, is_identified FROM persons WHERE id IN ({marks})", chunk
            ):
                found[person_id] = (PersonRow(person_id, stored_time(created_at), bool(is_identified)), set())
            for person_id, distinct_id in self.conn.execute(
                f"SELECT person_id, distinct_id FROM distinct_ids WHERE person_id IN ({marks}) AND is_user_id = 1",
                chunk,
            ):
                if person_id in found:
                    found[person_id][1].add(distinct_id)
        return found

    def distinct_ids_of(self, person_id: str) -> list[tuple[str, bool]]:
        rows = self.conn.execute(
            "SELECT distinct_id, is_user_id FROM distinct_ids WHERE person_id = ? ORDER BY created_at, distinct_id",
            (person_id,),
        )
        return [(r[0], bool(r[1])) for r in rows]

    def held_ids(self, person_id: str) -> list[HeldId]:
        rows = self.conn.execute(
            "SELECT distinct_id, is_user_id, created_at FROM distinct_ids WHERE person_id = ?"
            " ORDER BY created_at, distinct_id",
            (person_id,),
        )
        return [HeldId(r[0], bool(r[1]), stored_time(r[2])) for r in rows]

    def persons_changed(self, person_ids: Iterable[str]) -> None:
        persons_changed(self.conn, self.project_id, person_ids)

    def save_persons(self, rows: list[PersonRow], *, new: bool) -> None:
        self.persons_changed(r.person_id for r in rows)
        values = [(format_time(r.created_at), int(r.is_identified), r.person_id) for r in rows]
        if new:
            self.conn.executemany(
                "INSERT INTO persons (created_at, is_identified, id, project_id) VALUES (?, ?, ?, ?)",
                [(*v, self.project_id) for v in values],
            )
        else:
            self.conn.executemany(
                "UPDATE persons SET created_at = ?, is_identified = ?, version = version + 1 WHERE id = ?", values
            )

    def delete_person(self, person_id: str) -> None:
        self.persons_changed([person_id])
        self.conn.execute("DELETE FROM person_attributes WHERE person_id = ?", (person_id,))
        self.conn.execute("DELETE FROM persons WHERE id = ?", (person_id,))

    def map_distinct_ids(self, rows: list[tuple[str, str, bool, datetime]]) -> None:
        self.persons_changed(p for _, p, _, _ in rows)
        self.conn.executemany(
            "INSERT INTO distinct_ids (project_id, distinct_id, person_id, is_user_id, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (project_id, distinct_id)"
            " DO UPDATE SET person_id = excluded.person_id, is_user_id = excluded.is_user_id",
            [(self.project_id, d, p, int(u), format_time(at)) for d, p, u, at in rows],
        )

    def set_user_id(self, distinct_id: str, is_user_id: bool) -> None:
        self.conn.execute(
            "UPDATE distinct_ids SET is_user_id = ? WHERE project_id = ? AND distinct_id = ?",
            (int(is_user_id), self.project_id, distinct_id),
        )

    def move_distinct_ids(self, from_person_id: str, to_person_id: str) -> None:
        self.persons_changed([from_person_id, to_person_id])
        self.conn.execute("UPDATE distinct_ids SET person_id = ? WHERE person_id = ?", (to_person_id, from_person_id))

    # -- attributes ------------------------------------------------------------------------

    def load_attributes(self, person_ids: Iterable[str]) -> dict[str, PersonAttributes]:
        items: dict[str, dict[str, Attribute]] = {}
        for chunk in _chunks(list(person_ids)):
            for person_id, key, value, kind, time, seq, event_uuid in self.conn.execute(
                "SELECT person_id, key, value, kind, time, seq, event_uuid FROM person_attributes"
                f" WHERE person_id IN ({_marks(chunk)})",
                chunk,
            ):
                items.setdefault(person_id, {})[key] = Attribute(
                    _decode(value) if value is not None else None, OpKind(kind), stored_time(time), seq, event_uuid
                )
        return {person_id: PersonAttributes(found) for person_id, found in items.items()}

    def save_attributes(self, rows: list[tuple[str, str, Attribute]]) -> None:
        self.persons_changed(person_id for person_id, _, _ in rows)
        self.conn.executemany(
            "INSERT INTO person_attributes (person_id, key, value, type, kind, time, seq, event_uuid)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (person_id, key) DO UPDATE SET value = excluded.value,"
            " type = excluded.type, kind = excluded.kind, time = excluded.time, seq = excluded.seq,"
            " event_uuid = excluded.event_uuid",
            [_attribute_row(person_id, key, attribute) for person_id, key, attribute in rows],
        )

    def replace_attributes(self, person_id: str, attributes: PersonAttributes) -> None:
        self.persons_changed([person_id])
        self.conn.execute("DELETE FROM person_attributes WHERE person_id = ?", (person_id,))
        self.save_attributes([(person_id, key, attribute) for key, attribute in attributes.items.items()])

    # -- events ----------------------------------------------------------------------------

    def existing_event_uuids(self, uuids: list[str]) -> set[str]:
        """The uuids stored already: as events, or as expired events kept for replays (sent
        again, such an event would apply its operations a second time)."""
        found: set[str] = set()
        for chunk in _chunks(uuids):
            marks = _marks(chunk)
            found.update(
                r[0]
                for r in self.conn.execute(
                    f"SELECT uuid FROM events WHERE project_id = ? AND uuid IN ({marks})"
                    f" UNION ALL SELECT uuid FROM retired_events WHERE project_id = ? AND uuid IN ({marks})",
                    (self.project_id, *chunk, self.project_id, *chunk),
                )
            )
        return found

    def insert_events(self, events: list[StoredEvent]) -> None:
        rows = self.event_rows(events)
        self.write_events(rows)
        sessions = session_rows(self.project_id, events, rows)
        if sessions:
            self.upsert_sessions(sessions)

    def event_rows(self, events: list[StoredEvent]) -> list[tuple[Any, ...]]:
        """The events table's rows, in its column order (`EVENT_COLUMNS`)."""
        received_at = format_time(self.now())
        return [
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

    @abstractmethod
    def write_events(self, rows: list[tuple[Any, ...]]) -> None:
        """Insert the event rows: each backend has its bulk path."""

    @abstractmethod
    def upsert_sessions(self, rows: list[tuple[Any, ...]]) -> None:
        """Add the batch's sums to the sessions' rows: merging the id lists is per dialect."""

    def replay_events(self, distinct_ids: list[str]) -> Iterator[ReplayedEvent]:
        """The ids' events in seq order: those stored, and what retention kept of expired ones
        (store/retention.py), whose properties are only those that set automatic attributes."""
        marks = _marks(distinct_ids)
        stored = self.conn.execute(
            "SELECT seq, uuid, distinct_id, event, timestamp, properties, ops, process_person FROM events"
            f" WHERE project_id = ? AND distinct_id IN ({marks}) ORDER BY seq",
            (self.project_id, *distinct_ids),
        )
        retired = self.conn.execute(
            "SELECT seq, uuid, distinct_id, event, timestamp, coalesce(lifted, '{}'), ops, process_person"
            f" FROM retired_events WHERE project_id = ? AND distinct_id IN ({marks}) ORDER BY seq",
            (self.project_id, *distinct_ids),
        ).fetchall()
        rows = heapq.merge(stored, retired, key=lambda row: row[0]) if retired else stored
        for seq, uuid, distinct_id, name, timestamp, properties, ops, process_person in rows:
            yield ReplayedEvent(
                seq, uuid, distinct_id, name, stored_time(timestamp), _decode(properties),
                AttributeOps.from_json(_decode(ops)) if ops else NO_OPS, bool(process_person),
            )

    # -- logs ------------------------------------------------------------------------------

    def insert_link(self, entry: LinkEntry) -> int:
        return self.conn.execute(
            "INSERT INTO links (project_id, kind, actor, target_distinct_id, source_distinct_id,"
            " target_person_id, source_person_id, event_uuid, decision_row, outcome, reason, created_at, seq, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                self.project_id, entry.kind, entry.actor, entry.target_distinct_id, entry.source_distinct_id,
                entry.target_person_id, entry.source_person_id, entry.event_uuid, entry.decision_row,
                entry.outcome.value, entry.reason, format_time(self.now()), entry.seq,
                encode_json(entry.detail) if entry.detail is not None else None,
            ),
        ).fetchone()[0]

    # -- identity history (history.py `IdentityLog`, undo.py) ---------------------------------

    def logged_link(self, link_id: int) -> LoggedLink | None:
        row = self.conn.execute(f"{_LOGGED_LINKS} WHERE l.project_id = ? AND l.id = ?", (self.project_id, link_id)).fetchone()
        return _logged_link(row) if row else None

    def identity_history(self, distinct_ids: Iterable[str]) -> IdentityHistory:
        """Every id joined to these through a person or any link entry (refused ones too: an
        undo can let them through), with all their entries and events."""
        known: set[str] = set()
        frontier = set(distinct_ids)
        links: dict[int, LoggedLink] = {}
        while frontier:
            known |= frontier
            if len(known) > MAX_HISTORY_IDS:
                raise Conflict(f"These ids are joined to more than {MAX_HISTORY_IDS} others: too many to replay at once")
            found: set[str] = set()
            chunks = list(_chunks(sorted(frontier)))
            for chunk in chunks:
                marks = _marks(chunk)
                found.update(
                    r[0] for r in self.conn.execute(
                        "SELECT o.distinct_id FROM distinct_ids d JOIN distinct_ids o ON o.person_id = d.person_id"
                        f" WHERE d.project_id = ? AND d.distinct_id IN ({marks})",
                        (self.project_id, *chunk),
                    )
                )
                for row in self.conn.execute(
                    f"{_LOGGED_LINKS} WHERE l.project_id = ? AND (l.target_distinct_id IN ({marks}) OR l.source_distinct_id IN ({marks}))",
                    (self.project_id, *chunk, *chunk),
                ):
                    links.setdefault(row["id"], _logged_link(row))
            # A split or an import logs one entry per id: the others of the same action belong too.
            for kind, seq in {(e.kind, e.seq) for e in links.values() if e.kind in (LinkKind.SPLIT, LinkKind.IMPORT)}:
                for row in self.conn.execute(
                    f"{_LOGGED_LINKS} WHERE l.project_id = ? AND l.seq = ? AND l.kind = ?", (self.project_id, seq, kind)
                ):
                    links.setdefault(row["id"], _logged_link(row))
            for link in links.values():
                found.update(d for d in (link.target, link.source) if d is not None)
            frontier = found - known
        ordered = sorted(links.values(), key=lambda link: (link.seq, link.id))
        return IdentityHistory(frozenset(known), ordered, list(self.replay_events(sorted(known))))

    def ids_linked_since(self, since: datetime) -> list[str]:
        """The ids named by link-log entries logged at or after `since` (a rule preview's seeds)."""
        rows = self.conn.execute(
            "SELECT target_distinct_id, source_distinct_id FROM links WHERE project_id = ? AND created_at >= ? ORDER BY id",
            (self.project_id, format_time(since)),
        )
        seen: dict[str, None] = {}
        for row in rows:
            seen.update((d, None) for d in row if d is not None)
        return list(seen)

    def rewrite_identity(
        self, history: IdentityHistory, replayed: MemoryPersons, outcomes: Mapping[int, Decided], decided_by: int
    ) -> None:
        """Make the persons of the history's ids what the replay made, and record each entry's
        outcome where the replay decided it differently from the log."""
        ids = sorted(history.distinct_ids)
        before = self.owners_of(ids)
        old = set(before.values())
        for person_id in old - replayed.persons.keys():
            self.delete_person(person_id)
        self.save_persons([row for p, row in replayed.persons.items() if p not in old], new=True)
        self.save_persons([row for p, row in replayed.persons.items() if p in old], new=False)
        mapped = [(d, replayed.owner[d], d in replayed.user_ids, replayed.first_mapped[d]) for d in ids if d in replayed.owner]
        self.map_distinct_ids(mapped)
        # When each id joined, as the rewritten history has it (windowed identity rules count it).
        self.conn.executemany(
            "UPDATE distinct_ids SET created_at = ? WHERE project_id = ? AND distinct_id = ?",
            [(format_time(at), self.project_id, d) for d, _, _, at in mapped],
        )
        for chunk in _chunks([d for d in ids if d in before and d not in replayed.owner]):
            self.conn.execute(
                f"DELETE FROM distinct_ids WHERE project_id = ? AND distinct_id IN ({_marks(chunk)})",
                (self.project_id, *chunk),
            )
        for person_id in replayed.persons:
            self.replace_attributes(person_id, replayed.attributes.get(person_id) or PersonAttributes())
        logged = {link.id: link for link in history.links}
        for link_id, decided in outcomes.items():
            link = logged[link_id]
            self.conn.execute("DELETE FROM link_effects WHERE link_id = ?", (link_id,))
            if (decided.outcome, decided.reason) != (link.logged_outcome, link.logged_reason):
                self.conn.execute(
                    "INSERT INTO link_effects (link_id, project_id, outcome, reason, decided_by) VALUES (?, ?, ?, ?, ?)",
                    (link_id, self.project_id, decided.outcome, decided.reason, decided_by),
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

    def audit(self, actor: str, action: str, details: dict[str, Any], ids: Mapping[str, Any] | None = None) -> None:
        """An audit entry; `ids` (ids, or lists of them) are written as keyed hashes only."""
        if ids:
            key = privacy_key(self.conn, self.project_id)
            details = {**details, **{name: hashed_ids(key, value) for name, value in ids.items()}}
        self.conn.execute(
            "INSERT INTO audit_log (project_id, actor, action, details, created_at) VALUES (?, ?, ?, ?, ?)",
            (self.project_id, actor, action, encode_json(details), format_time(self.now())),
        )


EVENT_COLUMNS = (
    "seq, project_id, uuid, distinct_id, event, timestamp, received_at, session_id, process_person, properties, ops"
)


# An undo replays every id joined to the entry's; past this many, it is refused, not slow.
MAX_HISTORY_IDS = 20_000

# Each entry with the outcome it has now: the one an undo re-decided, else the logged one.
_LOGGED_LINKS = (
    "SELECT l.*, coalesce(x.outcome, l.outcome) AS outcome_now,"
    " CASE WHEN x.link_id IS NULL THEN l.reason ELSE x.reason END AS reason_now"
    " FROM links l LEFT JOIN link_effects x ON x.link_id = l.id"
)


def _logged_link(row: Row) -> LoggedLink:
    detail = row["detail"]
    if isinstance(detail, str):
        detail = _decode(detail)
    return LoggedLink(
        id=row["id"], seq=row["seq"] or 0, kind=row["kind"], actor=row["actor"],
        target=row["target_distinct_id"], source=row["source_distinct_id"],
        target_person_id=row["target_person_id"], source_person_id=row["source_person_id"],
        event_uuid=row["event_uuid"], logged_outcome=row["outcome"], logged_reason=row["reason"],
        outcome=row["outcome_now"], reason=row["reason_now"], detail=detail, created_at=stored_time(row["created_at"]),
    )


def _chunks(values: list[str], size: int = 500) -> Iterator[list[str]]:
    """Slices small enough for SQLite's limit on bound parameters."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _marks(values: list[Any]) -> str:
    return ",".join("?" * len(values))


def insert_dead_letter(
    conn: Connection, project_id: int | None, reason: str, payload: Any, received_at: datetime
) -> None:
    conn.execute(
        "INSERT INTO dead_letters (project_id, reason, payload, received_at) VALUES (?, ?, ?, ?)",
        (project_id, reason, encode_json(payload), format_time(received_at)),
    )


def session_rows(project_id: int, events: list[StoredEvent], rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
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
