"""Privacy (identity-rules.md §7): find everything held about a person, export it, erase it, and
keep erased ids out; plus the audit log and secret-key administration that guard those actions.

Every function is `fn(conn, project_id, ...)`: reads take a read-only connection, writes the
writer's connection inside its transaction (ingest/pipeline.py), so an erasure is ordered with
ingestion and a suppressed id cannot slip in between.

What is held about a person, and where:

    persons, distinct_ids, person_attributes      the person itself            deleted
    events (by distinct id)                       its events                   deleted, or anonymised
    retired_events (by distinct id)               what retention kept of its   deleted
                                                  expired events, for replays
    links (by distinct or person id)              why its ids are one person   deleted
    warnings, dead_letters (JSON mentioning it)   refusals and rejects         deleted
    sessions (by id, or listing its ids)          its sessions' summaries      deleted, rebuilt from others' events
    segments (definition mentioning it)           saved filters naming it      deleted
    audit_log (JSON mentioning it)                admin actions on it          redacted in place
    suppressions                                  keyed hashes of its ids      added on request

A suppression keeps only HMAC-SHA256(project key, distinct id): it answers "was this id
erased?" for an id you already hold, and nothing else. The key is per project
(`privacy_keys`, created with the project), so the hashes of two projects never match.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import msgspec

from idstitch.clock import format_time
from idstitch.errors import Conflict, InvalidRequest, NotFound
from idstitch.ids import person_id_for
from idstitch.outcomes import Rejection
from idstitch.store import reads
from idstitch.store.connection import Connection, Row
from idstitch.store.feed import events_changed, persons_erased
from idstitch.store.keyed_hashes import HASH_PREFIX, keyed_hash, privacy_key
from idstitch.store.persons import encode_json
from idstitch.store.projects import add_secret_key, hash_key

_decode = msgspec.json.Decoder().decode

SELECTOR_KINDS = ("distinct_id", "user_id", "email", "person_id")
# Ids at least this long are also searched for inside longer strings (URLs, messages); shorter
# ones only as whole JSON strings, so erasing "u-1" does not touch what mentions "u-10".
CONTAINED_ID_LENGTH = 8
CONTAINED_EMAIL_LENGTH = 6
# Bound the number of SQL variables per statement (SQLite's default limit is 32,766).
_CHUNK = 400

SUPPRESSED = Rejection("dropped: this distinct id belongs to a person erased with suppression")


# -- selectors -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Selector:
    """Who is asked about: exactly one of a distinct id, a user id, an email or a person id."""

    kind: str
    value: str

    @classmethod
    def one_of(cls, **given: str | None) -> Selector:
        chosen = [(k, v) for k, v in given.items() if v is not None]
        unknown = [k for k, _ in chosen if k not in SELECTOR_KINDS]
        if unknown:
            raise InvalidRequest(f"Unknown selector {unknown[0]!r}; use one of {', '.join(SELECTOR_KINDS)}")
        if len(chosen) != 1:
            raise InvalidRequest(f"Give exactly one of {', '.join(SELECTOR_KINDS)}; got {len(chosen)}")
        kind, value = chosen[0]
        if not isinstance(value, str) or not value or len(value) > 1000 or "\x00" in value:
            raise InvalidRequest(f"`{kind}` must be a non-empty string of at most 1000 characters without NUL")
        return cls(kind, value)

    def as_json(self) -> dict[str, str]:
        return {self.kind: self.value}


# -- finding a person ------------------------------------------------------------------------


def find_person_ids(conn: Connection, project_id: int, selector: Selector) -> list[str]:
    """The persons the selector names: by any distinct id, by user id, by email, or by id."""
    kind, value = selector.kind, selector.value
    if kind == "person_id":
        rows = conn.execute("SELECT id FROM persons WHERE id = ? AND project_id = ?", (value, project_id))
    elif kind == "distinct_id":
        rows = conn.execute(
            "SELECT person_id FROM distinct_ids WHERE project_id = ? AND distinct_id = ?", (project_id, value)
        )
    elif kind == "user_id":
        rows = conn.execute(
            "SELECT person_id FROM distinct_ids WHERE project_id = ? AND distinct_id = ? AND is_user_id = 1",
            (project_id, value),
        )
    else:
        # The `email` attribute, ignoring ASCII case (an index on lower(value) serves it), and a
        # distinct id equal to the email: many sites identify by email.
        equals, needle = _email_equals(conn, "a.value", reads.ascii_lower(encode_json(value)))
        rows = conn.execute(
            "SELECT a.person_id FROM person_attributes a JOIN persons p ON p.id = a.person_id"
            f" WHERE a.key = 'email' AND {equals} AND p.project_id = ?"
            " UNION SELECT person_id FROM distinct_ids WHERE project_id = ? AND distinct_id IN (?, ?)",
            (*needle, project_id, project_id, value, value.lower()),
        )
    return sorted({r[0] for r in rows})


def _email_equals(conn: Connection, column: str, needle: str) -> tuple[str, tuple[str, ...]]:
    """`column` equals `needle` (ASCII-lowered) ignoring ASCII case, and the parameters.

    SQLite's lower() folds ASCII only. PostgreSQL's folds other letters too under most
    collations: there the index on lower(value) finds the candidates, and lower() under the
    "C" collation (ASCII only, as SQLite's) decides.
    """
    if conn.dialect.name == "postgresql":
        return f'lower({column}) = lower(CAST(? AS text)) AND lower({column} COLLATE "C") = ?', (needle, needle)
    return f"lower({column}) = ?", (needle,)


def _distinct_ids_of(conn: Connection, person_ids: Sequence[str]) -> list[str]:
    found: list[str] = []
    for chunk in _chunks(person_ids):
        marks = ",".join("?" * len(chunk))
        found += [
            r[0]
            for r in conn.execute(
                f"SELECT distinct_id FROM distinct_ids WHERE person_id IN ({marks}) ORDER BY created_at, distinct_id",
                chunk,
            )
        ]
    return found


def _emails_of(conn: Connection, person_ids: Sequence[str]) -> list[str]:
    emails: list[str] = []
    for chunk in _chunks(person_ids):
        marks = ",".join("?" * len(chunk))
        for (value,) in conn.execute(
            f"SELECT value FROM person_attributes WHERE key = 'email' AND person_id IN ({marks})", chunk
        ):
            decoded = _decode(value) if value is not None else None
            if isinstance(decoded, str) and decoded:
                emails.append(decoded)
    return emails


@dataclass(slots=True)
class _Subject:
    """Everything that identifies the persons a selector names, for searching and erasing."""

    person_ids: list[str]
    owned_ids: dict[str, list[str]]  # person id -> its distinct ids
    loose_ids: list[str]  # ids named by the selector that no person owns (personless events)
    emails: list[str]

    @property
    def distinct_ids(self) -> list[str]:
        return [d for ids in self.owned_ids.values() for d in ids] + self.loose_ids

    def needles(self) -> _Needles:
        return _Needles.build(self.distinct_ids + self.person_ids, self.emails)


def _subject(conn: Connection, project_id: int, selector: Selector) -> _Subject:
    person_ids = find_person_ids(conn, project_id, selector)
    owned = {p: _distinct_ids_of(conn, [p]) for p in person_ids}
    all_owned = {d for ids in owned.values() for d in ids}
    loose: list[str] = []
    if selector.kind in ("distinct_id", "user_id") and selector.value not in all_owned:
        loose.append(selector.value)
    emails = _emails_of(conn, person_ids)
    if selector.kind == "email":
        emails.append(selector.value)
    return _Subject(person_ids, owned, loose, sorted(set(emails), key=str.lower))


# -- searching JSON columns for a person's ids -----------------------------------------------


# The SQL folds ASCII case only (`_contains`); fold the needles the same way so both sides agree.
_ascii_lower = reads.ascii_lower


@dataclass(frozen=True, slots=True)
class _Needles:
    """What to look for: ids as whole JSON strings, emails and long ids anywhere in a string."""

    exact: frozenset[str]
    contained: tuple[str, ...]  # ASCII-lowered
    pattern: re.Pattern[str] | None  # finds any of `contained`, ASCII case folded

    @classmethod
    def build(cls, ids: Iterable[str], emails: Iterable[str]) -> _Needles:
        ids = [i for i in ids if i]
        emails = [e for e in emails if e]
        # Only distinctive text is looked for inside longer strings: an email, or a long id. A
        # short one ("0", "u-1") would match unrelated rows, so it only counts as a whole string.
        contained = {_ascii_lower(e) for e in emails if "@" in e and len(e) >= CONTAINED_EMAIL_LENGTH}
        contained |= {_ascii_lower(i) for i in ids if len(i) >= CONTAINED_ID_LENGTH}
        ordered = tuple(sorted(contained, key=lambda c: (-len(c), c)))
        pattern = re.compile("|".join(map(re.escape, ordered)), re.IGNORECASE | re.ASCII) if ordered else None
        return cls(frozenset(ids) | frozenset(emails), ordered, pattern)

    def __bool__(self) -> bool:
        return bool(self.exact or self.contained)

    def sql_patterns(self, json_column: bool) -> list[tuple[bool, str]]:
        """(fold case?, substring) pairs for `_contains` over a JSON (or plain text) column."""
        patterns: list[tuple[bool, str]] = []
        if json_column:
            patterns += [(False, encode_json(i)) for i in sorted(self.exact)]
            patterns += [(True, encode_json(c)[1:-1]) for c in self.contained]
        else:
            patterns += [(True, c) for c in self.contained]
        return patterns

    def matches(self, text: str) -> bool:
        return text in self.exact or (self.pattern is not None and self.pattern.search(text) is not None)

    def redact(self, value: Any, key: bytes) -> Any:
        """`value` with every mention replaced by its keyed hash (for the audit log)."""
        if isinstance(value, str):
            if value in self.exact:
                return HASH_PREFIX + keyed_hash(key, value)
            if self.pattern is None:
                return value
            # One pass: a replacement is never searched again (a hash may contain a short needle).
            return self.pattern.sub(lambda m: HASH_PREFIX + keyed_hash(key, _ascii_lower(m.group(0))), value)
        if isinstance(value, list):
            return [self.redact(v, key) for v in value]
        if isinstance(value, dict):
            return {self.redact(k, key): self.redact(v, key) for k, v in value.items()}
        return value


_SEARCHED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # table: (JSON columns, plain text columns)
    "warnings": (("distinct_ids", "details"), ()),
    "dead_letters": (("payload",), ("reason",)),
    "audit_log": (("details",), ()),
    "segments": (("filter",), ("name", "description")),
}


def _contains(conn: Connection, column: str, fold: bool) -> str:
    """`column` holds the bound text (`fold`: ignoring ASCII case). A JSON column is searched in
    its text: as written on SQLite; on PostgreSQL as jsonb prints it, which differs only in the
    spaces between tokens (its strings are escaped as msgspec escapes them). "C": lower() then
    folds ASCII only, as SQLite's does."""
    if conn.dialect.name == "postgresql":
        text = f'CAST({column} AS text) COLLATE "C"'
        return f"strpos({f'lower({text})' if fold else text}, ?) > 0"
    return f"instr({f'lower({column})' if fold else column}, ?) > 0"


def _ids_mentioning(conn: Connection, table: str, project_id: int, needles: _Needles) -> list[int]:
    """Row ids of `table` whose JSON (or text) columns mention one of the needles."""
    if not needles:
        return []
    json_columns, text_columns = _SEARCHED[table]
    tests: list[tuple[str, str]] = []
    for column in json_columns:
        tests += [(_contains(conn, column, fold), p) for fold, p in needles.sql_patterns(True)]
    for column in text_columns:
        tests += [(_contains(conn, column, fold), p) for fold, p in needles.sql_patterns(False)]
    found: set[int] = set()
    for chunk in _chunks(tests):
        where = " OR ".join(test for test, _ in chunk)
        found.update(
            r[0]
            for r in conn.execute(
                f"SELECT id FROM {table} WHERE project_id = ? AND ({where})", (project_id, *(p for _, p in chunk))
            )
        )
    return sorted(found)


def _rows(conn: Connection, table: str, ids: Sequence[int]) -> list[Row]:
    rows: list[Row] = []
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        rows += conn.execute(f"SELECT * FROM {table} WHERE id IN ({marks}) ORDER BY id", chunk).fetchall()
    return rows


# -- lookup and export -----------------------------------------------------------------------


def _events(conn: Connection, project_id: int, distinct_ids: Sequence[str]) -> list[dict[str, Any]]:
    rows: list[Row] = []
    for chunk in _chunks(distinct_ids):
        marks = ",".join("?" * len(chunk))
        rows += conn.execute(
            "SELECT seq, uuid, distinct_id, event, timestamp, received_at, session_id, properties, ops FROM events"
            f" WHERE project_id = ? AND distinct_id IN ({marks})",
            (project_id, *chunk),
        ).fetchall()
    rows.sort(key=lambda r: (r["timestamp"], r["seq"]))
    return [{**reads.event_from_row(r), "received_at": r["received_at"]} for r in rows]


def _retired_events(conn: Connection, project_id: int, distinct_ids: Sequence[str]) -> list[dict[str, Any]]:
    """What retention kept of the ids' expired events (store/retention.py), oldest first."""
    rows: list[Row] = []
    for chunk in _chunks(distinct_ids):
        marks = ",".join("?" * len(chunk))
        rows += conn.execute(
            "SELECT seq, uuid, distinct_id, event, timestamp, ops, lifted FROM retired_events"
            f" WHERE project_id = ? AND distinct_id IN ({marks})",
            (project_id, *chunk),
        ).fetchall()
    rows.sort(key=lambda r: (r["timestamp"], r["seq"]))
    return [
        {"uuid": r["uuid"], "distinct_id": r["distinct_id"], "event": r["event"], "timestamp": r["timestamp"],
         "properties": _decode(r["lifted"]) if r["lifted"] else {}, "operations": _decode(r["ops"]) if r["ops"] else {}}
        for r in rows
    ]


def sessions_of(events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events grouped by session id, oldest session first (identity-rules.md §6)."""
    sessions: dict[str, dict[str, Any]] = {}
    for event in events:
        session_id = event["session_id"]
        if session_id is None:
            continue
        session = sessions.get(session_id)
        if session is None:
            session = sessions[session_id] = {
                "session_id": session_id,
                "distinct_ids": [],
                "started_at": event["timestamp"],
                "ended_at": event["timestamp"],
                "event_count": 0,
                "identified": False,
                "event_uuids": [],
            }
        if event["distinct_id"] not in session["distinct_ids"]:
            session["distinct_ids"].append(event["distinct_id"])
        session["started_at"] = min(session["started_at"], event["timestamp"])
        session["ended_at"] = max(session["ended_at"], event["timestamp"])
        session["event_count"] += 1
        session["identified"] = session["identified"] or event["event"] == "$identify"
        session["event_uuids"].append(event["uuid"])
    return sorted(sessions.values(), key=lambda s: (s["started_at"], s["session_id"]))


def _warning(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "type": row["type"],
        "event_uuid": row["event_uuid"],
        "distinct_ids": _decode(row["distinct_ids"]),
        "details": _decode(row["details"]),
        "created_at": row["created_at"],
    }


def lookup(conn: Connection, project_id: int, selector: Selector) -> dict[str, Any]:
    """Every person the selector names, with all its ids, attributes, sessions, events, links,
    and the warnings and dead letters that mention it; events of named ids that no person owns
    (`$process_person_profile: false`, `identified_only`) under `unattributed_events`."""
    subject = _subject(conn, project_id, selector)
    persons = []
    for person_id in subject.person_ids:
        found = reads.person(conn, project_id, person_id)
        if found is None:  # pragma: no cover - read in the same snapshot
            continue
        needles = _Needles.build([*found["distinct_ids"], person_id], _emails_of(conn, [person_id]))
        events = _events(conn, project_id, found["distinct_ids"])
        persons.append(
            {
                **found,
                "attributes": reads.attributes(conn, person_id),
                "sessions": sessions_of(events),
                "events": events,
                "retired_events": _retired_events(conn, project_id, found["distinct_ids"]),
                "links": reads.links(conn, project_id, person_id),
                "warnings": [_warning(r) for r in _rows(conn, "warnings", _ids_mentioning(conn, "warnings", project_id, needles))],
                "dead_letters": [
                    reads.dead_letter(r)
                    for r in _rows(conn, "dead_letters", _ids_mentioning(conn, "dead_letters", project_id, needles))
                ],
            }
        )
    loose_events = _events(conn, project_id, subject.loose_ids)
    loose_needles = _Needles.build(subject.loose_ids, [selector.value] if selector.kind == "email" else [])
    return {
        "query": selector.as_json(),
        "persons": persons,
        "unattributed_events": loose_events,
        "unattributed_retired_events": _retired_events(conn, project_id, subject.loose_ids),
        "unattributed_sessions": sessions_of(loose_events),
        "unattributed_warnings": [
            _warning(r) for r in _rows(conn, "warnings", _ids_mentioning(conn, "warnings", project_id, loose_needles))
        ],
        "unattributed_dead_letters": [
            reads.dead_letter(r)
            for r in _rows(conn, "dead_letters", _ids_mentioning(conn, "dead_letters", project_id, loose_needles))
        ],
    }


def export_document(conn: Connection, project_id: int, selector: Selector, now: datetime) -> dict[str, Any]:
    """The lookup as one self-describing JSON document (a subject access request's answer)."""
    return {"format": "idstitch-person-export/1", "project_id": project_id, "exported_at": format_time(now),
            **lookup(conn, project_id, selector)}


def audit_selector(conn: Connection, project_id: int, selector: Selector) -> dict[str, str]:
    """How an audit entry names whom it was about: the kind and a keyed hash, never the value,
    so that erasing the person later leaves nothing to redact."""
    return {"selector": selector.kind, "selector_hash": HASH_PREFIX + keyed_hash(privacy_key(conn, project_id), selector.value)}


def write_audit(conn: Connection, project_id: int, actor: str, action: str, details: dict[str, Any], now: datetime) -> None:
    conn.execute(
        "INSERT INTO audit_log (project_id, actor, action, details, created_at) VALUES (?, ?, ?, ?, ?)",
        (project_id, actor, action, encode_json(details), format_time(now)),
    )


# -- erasure ---------------------------------------------------------------------------------


@dataclass(slots=True)
class ErasureReport:
    persons: int = 0
    distinct_ids: int = 0
    attributes: int = 0
    events_deleted: int = 0
    events_anonymised: int = 0
    retired_events: int = 0
    links: int = 0
    warnings: int = 0
    dead_letters: int = 0
    audit_entries_redacted: int = 0
    others_events_redacted: int = 0
    sessions: int = 0
    segments: int = 0
    suppressed_ids: int = 0
    found: bool = field(default=False)

    def to_json(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "found"}


def erase(
    conn: Connection,
    project_id: int,
    selector: Selector,
    *,
    actor: str,
    now: datetime,
    suppress: bool = False,
    keep_anonymised_counts: bool = False,
) -> ErasureReport:
    """Erase the persons the selector names: run inside the writer's transaction.

    Without `suppress` a returning visitor simply becomes a new person. With it, the keyed hash
    of each of their ids is kept and later events from those ids are dropped and counted
    (`drop_suppressed`). With `keep_anonymised_counts` their events stay, for totals, under a
    random token per person, with no properties, operations, session or original uuid.

    Raises NotFound when nothing is held and there is nothing to suppress.
    """
    key = privacy_key(conn, project_id)
    subject = _subject(conn, project_id, selector)
    needles = subject.needles()
    report = ErasureReport()
    # Overwrite freed pages with zeros, so erased rows do not linger in the file's free space.
    # PostgreSQL has no equivalent: the dead rows stay in the table's pages until (auto)vacuum
    # reuses them (store/backends.py `forget_erased`).
    secure_delete = conn.dialect.name == "sqlite"
    if secure_delete:
        conn.execute("PRAGMA secure_delete = ON")
    try:
        sessions = _session_ids(conn, project_id, subject)
        naming = _events_naming(conn, project_id, subject, needles)
        _erase_events(conn, project_id, subject, keep_anonymised_counts, report)
        report.others_events_redacted = _redact_events(conn, project_id, naming, needles, key)
        report.sessions = _rebuild_sessions(conn, project_id, sessions)
        # And the journal rows of persons gone before (merged into these): a person's id is made
        # from its first distinct id (identity-rules.md §3), so it names an erased id too.
        persons_erased(conn, project_id, [*subject.person_ids, *(person_id_for(project_id, d) for d in subject.distinct_ids)])
        report.attributes = _delete_in(conn, "DELETE FROM person_attributes WHERE person_id IN ({})", subject.person_ids)
        report.distinct_ids = _delete_in(
            conn, "DELETE FROM distinct_ids WHERE project_id = ? AND distinct_id IN ({})", subject.distinct_ids, project_id
        )
        report.persons = _delete_in(conn, "DELETE FROM persons WHERE project_id = ? AND id IN ({})", subject.person_ids, project_id)
        report.links = _delete_links(conn, project_id, subject)
        for table in ("warnings", "dead_letters", "segments"):
            row_ids = _ids_mentioning(conn, table, project_id, needles)
            setattr(report, table, getattr(report, table) + _delete_in(conn, f"DELETE FROM {table} WHERE id IN ({{}})", row_ids))
        report.audit_entries_redacted = _redact_audit(conn, project_id, needles, key)
    finally:
        if secure_delete:
            conn.execute("PRAGMA secure_delete = OFF")
    report.found = any(
        (report.persons, report.distinct_ids, report.events_deleted, report.events_anonymised, report.retired_events, report.links,
         report.warnings, report.dead_letters, report.audit_entries_redacted, report.others_events_redacted,
         report.sessions, report.segments)
    )
    if suppress:
        ids = set(subject.distinct_ids)
        if selector.kind == "email":
            ids |= {selector.value, selector.value.lower()}
        conn.executemany(
            "INSERT INTO suppressions (project_id, id_hash, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            [(project_id, keyed_hash(key, d), format_time(now)) for d in sorted(ids)],
        )
        report.suppressed_ids = len(ids)
    elif not report.found:
        raise NotFound(f"Nothing is held about {selector.kind} {selector.value!r}")
    write_audit(
        conn, project_id, actor, "delete",
        {**audit_selector(conn, project_id, selector), "suppress": suppress,
         "keep_anonymised_counts": keep_anonymised_counts, "erased": report.to_json()},
        now,
    )
    return report


def _erase_events(
    conn: Connection, project_id: int, subject: _Subject, keep: bool, report: ErasureReport
) -> None:
    # PostgreSQL keeps each event's uuid unique in `event_uuids` (a unique index on its
    # partitioned events table could not): that row goes with its event, and follows an
    # anonymised event to its new uuid, so an event sent again after an erasure is stored again
    # (or dropped, when suppressed) as on SQLite, where the uuid index goes with the row.
    uuids_apart = conn.dialect.name == "postgresql"
    groups = [*subject.owned_ids.values(), subject.loose_ids]
    for ids in groups:
        if not ids:
            continue
        rows = [
            (r[0], r[1], r[2])
            for chunk in _chunks(ids)
            for r in conn.execute(
                f"SELECT seq, uuid, event FROM events WHERE project_id = ? AND distinct_id IN ({','.join('?' * len(chunk))})",
                (project_id, *chunk),
            )
        ]
        retired = [
            r[0]
            for r in _select_in(
                conn, "SELECT uuid FROM retired_events WHERE project_id = ? AND distinct_id IN ({})", ids, project_id
            )
        ]
        uuids = [u for _, u, _ in rows]
        events_changed(conn, project_id, [seq for seq, _, _ in rows])
        # Warnings name the events they are about; those events are going.
        report.warnings += _delete_in(
            conn, "DELETE FROM warnings WHERE project_id = ? AND event_uuid IN ({})", uuids + retired, project_id
        )
        if uuids_apart:
            _delete_in(conn, "DELETE FROM event_uuids WHERE project_id = ? AND uuid IN ({})", uuids + retired, project_id)
        # Kept for undo and split (store/retention.py), of persons that are going: they go whole.
        report.retired_events += _delete_in(
            conn, "DELETE FROM retired_events WHERE project_id = ? AND distinct_id IN ({})", ids, project_id
        )
        if not keep:
            report.events_deleted += _delete_in(
                conn, "DELETE FROM events WHERE project_id = ? AND distinct_id IN ({})", ids, project_id
            )
            continue
        token = "$erased-" + secrets.token_hex(8)
        needles = _Needles.build(ids, subject.emails)
        changes = [(token, str(uuid.uuid4()), "$erased" if needles.matches(name) else name, seq) for seq, _, name in rows]
        conn.executemany(
            "UPDATE events SET distinct_id = ?, uuid = ?, event = ?, properties = '{}', ops = NULL,"
            " session_id = NULL, process_person = 0 WHERE seq = ?",
            changes,
        )
        if uuids_apart:
            conn.executemany(
                "INSERT INTO event_uuids (project_id, uuid) VALUES (?, ?)", [(project_id, new) for _, new, _, _ in changes]
            )
        report.events_anonymised += len(rows)


def _events_naming(conn: Connection, project_id: int, subject: _Subject, needles: _Needles) -> list[str]:
    """Uuids of the events that name the subject's ids in their properties: its identity events,
    and other ids' identifies, aliases and merges naming them (refused, or split apart since),
    which their link rows and warnings point to."""
    uuids: set[str] = {
        r[0]
        for r in _select_in(
            conn,
            "SELECT event_uuid FROM links WHERE project_id = ? AND event_uuid IS NOT NULL"
            " AND (target_distinct_id IN ({0}) OR source_distinct_id IN ({0}))",
            subject.distinct_ids, project_id, repeat=2,
        )
    }
    warnings = _rows(conn, "warnings", _ids_mentioning(conn, "warnings", project_id, needles))
    uuids.update(w["event_uuid"] for w in warnings if w["event_uuid"] is not None)
    return sorted(uuids)


def _redact_events(conn: Connection, project_id: int, uuids: Sequence[str], needles: _Needles, key: bytes) -> int:
    """In the events left with these uuids (other ids' events), replace mentions of the subject
    by keyed hashes, as in the audit log: the events stay theirs, the erased ids leave them."""
    changes: list[tuple[str, str | None, int]] = []
    for row in _select_in(
        conn, "SELECT seq, properties, ops FROM events WHERE project_id = ? AND uuid IN ({})", uuids, project_id
    ):
        before = (_decode(row["properties"]), _decode(row["ops"]) if row["ops"] is not None else None)
        after = needles.redact(before[0], key), needles.redact(before[1], key)
        if after != before:
            changes.append((encode_json(after[0]), encode_json(after[1]) if after[1] is not None else None, row["seq"]))
    if changes:
        conn.executemany("UPDATE events SET properties = ?, ops = ? WHERE seq = ?", changes)
        events_changed(conn, project_id, [seq for _, _, seq in changes])
    # The same in what retention kept of other ids' expired events (no event of the subject's is left).
    retired: list[tuple[str | None, str | None, int]] = []
    for row in _select_in(
        conn, "SELECT seq, lifted, ops FROM retired_events WHERE project_id = ? AND uuid IN ({})", uuids, project_id
    ):
        lifted, ops = (_decode(row[c]) if row[c] is not None else None for c in ("lifted", "ops"))
        redacted = needles.redact(lifted, key), needles.redact(ops, key)
        if redacted != (lifted, ops):
            retired.append((*(encode_json(v) if v is not None else None for v in redacted), row["seq"]))  # type: ignore[arg-type]
    if retired:
        conn.executemany("UPDATE retired_events SET lifted = ?, ops = ? WHERE seq = ?", retired)
    return len(changes) + len(retired)


def _session_ids(conn: Connection, project_id: int, subject: _Subject) -> list[str]:
    """Sessions holding the subject's events, or listing its ids (the `sessions` summaries)."""
    found: set[str] = set()
    for chunk in _chunks(subject.distinct_ids):
        marks = ",".join("?" * len(chunk))
        found.update(
            r[0]
            for r in conn.execute(
                f"SELECT DISTINCT session_id FROM events WHERE project_id = ? AND distinct_id IN ({marks})"
                " AND session_id IS NOT NULL",
                (project_id, *chunk),
            )
        )
        listed = " OR ".join(_contains(conn, "distinct_ids", fold=False) for _ in chunk)
        found.update(
            r[0]
            for r in conn.execute(
                f"SELECT session_id FROM sessions WHERE project_id = ? AND ({listed} OR last_distinct_id IN ({marks}))",
                (project_id, *(encode_json(d) for d in chunk), *chunk),
            )
        )
    return sorted(found)


def _rebuild_sessions(conn: Connection, project_id: int, session_ids: Sequence[str]) -> int:
    """Drop the summaries of the sessions the erased events were in, then sum up again what
    other ids' events remain in them (a session shared by two ids keeps the other's part)."""
    deleted = _delete_in(conn, "DELETE FROM sessions WHERE project_id = ? AND session_id IN ({})", session_ids, project_id)
    summaries: dict[str, list[Any]] = {}
    for chunk in _chunks(session_ids):
        for session_id, distinct_id, name, timestamp, properties in conn.execute(
            "SELECT session_id, distinct_id, event, timestamp, properties FROM events"
            f" WHERE project_id = ? AND session_id IN ({','.join('?' * len(chunk))}) ORDER BY seq",
            (project_id, *chunk),
        ):
            _add_to_summary(summaries, session_id, distinct_id, name, timestamp, _decode(properties))
    conn.executemany(
        "INSERT INTO sessions (project_id, session_id, first_at, last_at, event_count, identifies, entry_at,"
        " entry_url, distinct_ids, last_distinct_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(project_id, session_id, *s[:6], encode_json(s[6]), s[7]) for session_id, s in sorted(summaries.items())],
    )
    return deleted


def _add_to_summary(
    summaries: dict[str, list[Any]], session_id: str, distinct_id: str, name: str, timestamp: str, properties: Any
) -> None:
    """One event (in arrival order) into its session's summary, summed up as ingest does
    (store/persons.py `session_rows`): first and last time, the last time's id, count, identifies,
    entry time and URL (the earliest string `$current_url`), the ids in order of appearance."""
    url = properties.get("$current_url") if isinstance(properties, dict) else None
    url_at = timestamp if isinstance(url, str) else None
    s = summaries.get(session_id)
    if s is None:
        summaries[session_id] = [
            timestamp, timestamp, 1, int(name == "$identify"), url_at, url if url_at else None, [distinct_id], distinct_id
        ]
        return
    if timestamp < s[0]:
        s[0] = timestamp
    if timestamp >= s[1]:
        s[1], s[7] = timestamp, distinct_id
    s[2] += 1
    s[3] += name == "$identify"
    if url_at is not None and (s[4] is None or url_at < s[4]):
        s[4], s[5] = url_at, url
    if distinct_id not in s[6]:
        s[6].append(distinct_id)


def _delete_links(conn: Connection, project_id: int, subject: _Subject) -> int:
    count = _delete_in(
        conn,
        "DELETE FROM links WHERE project_id = ? AND (target_distinct_id IN ({0}) OR source_distinct_id IN ({0}))",
        subject.distinct_ids,
        project_id,
        repeat=2,
    )
    count += _delete_in(
        conn,
        "DELETE FROM links WHERE project_id = ? AND (target_person_id IN ({0}) OR source_person_id IN ({0}))",
        subject.person_ids,
        project_id,
        repeat=2,
    )
    # What an undo re-decided for entries that are gone means nothing any more.
    conn.execute(
        "DELETE FROM link_effects WHERE project_id = ? AND NOT EXISTS (SELECT 1 FROM links l WHERE l.id = link_effects.link_id)",
        (project_id,),
    )
    return count


def _redact_audit(conn: Connection, project_id: int, needles: _Needles, key: bytes) -> int:
    """Replace mentions in audit details by keyed hashes; the entries themselves stay (the
    trigger allows only this: the same row with `"redacted": true` details)."""
    rows = _rows(conn, "audit_log", _ids_mentioning(conn, "audit_log", project_id, needles))
    for row in rows:
        details = needles.redact(_decode(row["details"]), key)
        if not isinstance(details, dict):
            details = {"value": details}
        details["redacted"] = True
        conn.execute("UPDATE audit_log SET details = ? WHERE id = ?", (encode_json(details), row["id"]))
    return len(rows)


def _select_in(conn: Connection, sql: str, values: Sequence[Any], *leading: Any, repeat: int = 1) -> Iterator[Row]:
    """The rows of `sql` whose `{}` (or `{0}`, `repeat` times) is a list of `values`, in chunks."""
    for chunk in _chunks(values):
        marks = ",".join("?" * len(chunk))
        yield from conn.execute(sql.format(marks), (*leading, *(list(chunk) * repeat)))


def _delete_in(conn: Connection, sql: str, values: Sequence[Any], *leading: Any, repeat: int = 1) -> int:
    count = 0
    for chunk in _chunks(values):
        marks = ",".join("?" * len(chunk))
        count += conn.execute(sql.format(marks), (*leading, *(list(chunk) * repeat))).rowcount
    return count


def _chunks(values: Sequence[Any], size: int = _CHUNK) -> Iterator[list[Any]]:
    values = list(values)
    for start in range(0, len(values), size):
        yield values[start : start + size]


# -- suppression on the ingest path ----------------------------------------------------------


def command_distinct_ids(command: Any) -> list[str]:
    """The ids an ingest command carries: its event's, and its identity operation's."""
    ids: list[str] = []
    event = getattr(command, "event", None)
    if event is not None:
        ids.append(event.distinct_id)
    for name in ("user_id", "anonymous_id", "target", "source"):
        value = getattr(command, name, None)
        if isinstance(value, str):
            ids.append(value)
    ids += [d for d in getattr(command, "distinct_ids", None) or () if isinstance(d, str)]
    return ids


def _payload_ids(payload: Any) -> list[str]:
    """Strings that may be ids in a rejected event (its top level and its properties)."""
    if not isinstance(payload, dict):
        return []
    found: list[str] = []
    properties = payload.get("properties")
    for source in (payload, properties if isinstance(properties, dict) else {}):
        for value in source.values():
            if isinstance(value, str) and 0 < len(value) <= 200:
                found.append(value)
            elif isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**200:
                found.append(str(value))
    return found


def drop_suppressed(
    conn: Connection, project_id: int, commands: Sequence[Any], rejected_payloads: Sequence[Any], now: datetime
) -> tuple[frozenset[int], frozenset[int]]:
    """Positions of the commands (and rejected payloads) that carry a suppressed id; counts them.

    One indexed probe when the project has no suppressions (the usual case); otherwise one
    query per 400 distinct ids of the request, with their keyed hashes.
    """
    if not commands and not rejected_payloads:
        return frozenset(), frozenset()
    if conn.execute("SELECT 1 FROM suppressions WHERE project_id = ? LIMIT 1", (project_id,)).fetchone() is None:
        return frozenset(), frozenset()
    key = privacy_key(conn, project_id)
    command_ids = [command_distinct_ids(c) for c in commands]
    payload_ids = [_payload_ids(p) for p in rejected_payloads]
    hashes = {d: keyed_hash(key, d) for ids in (*command_ids, *payload_ids) for d in ids}
    suppressed: set[str] = set()
    unique = sorted(set(hashes.values()))
    for chunk in _chunks(unique):
        marks = ",".join("?" * len(chunk))
        suppressed.update(
            r[0]
            for r in conn.execute(
                f"SELECT id_hash FROM suppressions WHERE project_id = ? AND id_hash IN ({marks})", (project_id, *chunk)
            )
        )
    if not suppressed:
        return frozenset(), frozenset()
    dropped = frozenset(i for i, ids in enumerate(command_ids) if any(hashes[d] in suppressed for d in ids))
    dropped_rejects = frozenset(i for i, ids in enumerate(payload_ids) if any(hashes[d] in suppressed for d in ids))
    count_dropped(conn, project_id, len(dropped) + len(dropped_rejects), now)
    return dropped, dropped_rejects


def count_dropped(conn: Connection, project_id: int, count: int, now: datetime) -> None:
    if count:
        conn.execute(
            "INSERT INTO suppressed_events (project_id, dropped, last_dropped_at) VALUES (?, ?, ?)"
            " ON CONFLICT (project_id) DO UPDATE SET dropped = suppressed_events.dropped + excluded.dropped,"
            " last_dropped_at = excluded.last_dropped_at",
            (project_id, count, format_time(now)),
        )


def is_suppressed(conn: Connection, project_id: int, distinct_id: str) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM suppressions WHERE project_id = ? AND id_hash = ?",
            (project_id, keyed_hash(privacy_key(conn, project_id), distinct_id)),
        ).fetchone()
        is not None
    )


def suppression_stats(conn: Connection, project_id: int) -> dict[str, Any]:
    ids = conn.execute("SELECT count(*) FROM suppressions WHERE project_id = ?", (project_id,)).fetchone()[0]
    row = conn.execute(
        "SELECT dropped, last_dropped_at FROM suppressed_events WHERE project_id = ?", (project_id,)
    ).fetchone()
    return {
        "suppressed_ids": ids,
        "dropped_events": row[0] if row else 0,
        "last_dropped_at": row[1] if row else None,
    }


# -- the audit log ---------------------------------------------------------------------------


def audit_page(conn: Connection, project_id: int, limit: int, cursor: str | None) -> reads.Page:
    """Audit entries, newest first. There is no function to change one: the log is append-only."""
    sql = "SELECT * FROM audit_log WHERE project_id = ?"
    params: list[Any] = [project_id]
    if cursor:
        (last_id,) = reads.decode_cursor(cursor, 1)
        if isinstance(last_id, bool) or not isinstance(last_id, int):
            raise InvalidRequest(f"cursor {cursor!r} is not one this API gave out")
        sql += " AND id < ?"
        params.append(last_id)
    rows = conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*params, limit + 1)).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    results = [
        {"id": r["id"], "actor": r["actor"], "action": r["action"], "details": _decode(r["details"]),
         "created_at": r["created_at"]}
        for r in rows
    ]
    return reads.Page(results, reads.encode_cursor(rows[-1]["id"]) if more else None)


# -- secret keys -----------------------------------------------------------------------------


def _key_row(row: Row) -> dict[str, Any]:
    return {"id": row["id"], "label": row["label"], "created_at": row["created_at"], "revoked_at": row["revoked_at"]}


def list_secret_keys(conn: Connection, project_id: int) -> list[dict[str, Any]]:
    """The project's secret keys by id and label; the secrets themselves are not stored."""
    rows = conn.execute(
        "SELECT id, label, created_at, revoked_at FROM secret_keys WHERE project_id = ? ORDER BY id", (project_id,)
    )
    return [_key_row(r) for r in rows]


def create_secret_key(conn: Connection, project_id: int, label: str, actor: str, now: datetime) -> dict[str, Any]:
    """A new random secret key: returned once with its secret, stored as a hash."""
    secret = add_secret_key(conn, project_id, label, now)
    row = conn.execute(
        "SELECT id, label, created_at, revoked_at FROM secret_keys WHERE key_hash = ?", (hash_key(secret),)
    ).fetchone()
    created = _key_row(row)
    write_audit(conn, project_id, actor, "key_created", {"key_id": created["id"], "label": label}, now)
    return {**created, "secret": secret}


def revoke_secret_key(conn: Connection, project_id: int, key_id: int, actor: str, now: datetime) -> dict[str, Any]:
    """Revoke a key; it stops working with the next request. The last active key cannot be
    revoked (that would lock everyone out of the API): create another one first."""
    row = conn.execute(
        "SELECT id, label, created_at, revoked_at FROM secret_keys WHERE id = ? AND project_id = ?", (key_id, project_id)
    ).fetchone()
    if row is None:
        raise NotFound(f"No secret key with id {key_id}")
    if row["revoked_at"] is not None:
        return _key_row(row)
    active = conn.execute(
        "SELECT count(*) FROM secret_keys WHERE project_id = ? AND revoked_at IS NULL", (project_id,)
    ).fetchone()[0]
    if active <= 1:
        raise Conflict(f"Key {key_id} is the project's last active secret key; create another before revoking it")
    conn.execute("UPDATE secret_keys SET revoked_at = ? WHERE id = ?", (format_time(now), key_id))
    write_audit(conn, project_id, actor, "key_revoked", {"key_id": key_id, "label": row["label"]}, now)
    return _key_row(conn.execute("SELECT id, label, created_at, revoked_at FROM secret_keys WHERE id = ?", (key_id,)).fetchone())
