"""The engine on a real store (a SQLite file, or a PostgreSQL database), and readable builders
for the commands it accepts.

Each `Engine.apply(...)` is one transaction, driven the way ingest/pipeline.py drives a request:
the store's write session begins with the commands' claims, then `Batch(session.persons(...))`,
`prefetch`, `apply` per command, `flush`, commit. The readers go straight to the tables, so the
tests see what is stored, not what the engine caches.
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

from idstitch.attributes import AttributeOps
from idstitch.commands import INGEST, Actor, Alias, Command, Event, Identify, ImportPerson, Merge, Split, Track
from idstitch.engine import Batch, CommandResult
from idstitch.settings import DEFAULT_PROJECT_SETTINGS, ProjectSettings
from idstitch.store.projects import create_project
from idstitch.store.transactions import WriteSession, claims_for
from idstitch.undo import Undone, undo_link

PROJECT_ID = 1
ADMIN = Actor("admin", 7)
# Event times are minutes after T0; the server receives everything a day later.
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
RECEIVED_AT = T0 + timedelta(days=1)

_event_numbers = itertools.count(1)


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


def event(
    distinct_id: str,
    name: str = "$pageview",
    *,
    minute: float = 0,
    uuid: str | None = None,
    properties: dict[str, Any] | None = None,
    process_person: bool = True,
    **ops: Any,
) -> Event:
    """An event; `ops` are attribute operations by name: set={...}, unset=("k",), add={...}."""
    if "unset" in ops:
        ops["unset"] = tuple(ops["unset"])
    return Event(
        uuid=uuid or f"event-{next(_event_numbers)}",
        distinct_id=distinct_id,
        name=name,
        timestamp=at(minute),
        properties=properties or {},
        ops=AttributeOps(**ops),
        process_person=process_person,
    )


def track(distinct_id: str, name: str = "$pageview", **kwargs: Any) -> Track:
    return Track(event(distinct_id, name, **kwargs))


def identify(user_id: str | None, anonymous_id: str | None = None, **kwargs: Any) -> Identify:
    """`identify(user_id)` sent from the visitor's browser: the event's distinct id is the user id
    (or the anonymous id, for Hotjar's identify without a user id)."""
    sender = user_id if user_id is not None else anonymous_id
    assert sender is not None
    return Identify(event(sender, "$identify", **kwargs), user_id=user_id, anonymous_id=anonymous_id)


def alias(target: str, source: str, **kwargs: Any) -> Alias:
    return Alias(event(target, "$create_alias", **kwargs), target=target, source=source)


def admin_merge(target: str, source: str) -> Merge:
    return Merge(target=target, source=source, actor=ADMIN)


def ingest_merge(target: str, source: str, **kwargs: Any) -> Merge:
    """`$merge_dangerously` arriving with the public ingest token."""
    return Merge(target=target, source=source, actor=INGEST, event=event(target, "$merge_dangerously", **kwargs))


def split(person_id: str, distinct_ids: tuple[str, ...] | None = None) -> Split:
    return Split(person_id=person_id, distinct_ids=distinct_ids, actor=ADMIN)


class Link(NamedTuple):
    kind: str
    actor: str
    target: str | None
    source: str | None
    row: str | None
    outcome: str
    reason: str | None


class Warned(NamedTuple):
    type: str
    distinct_ids: tuple[str, ...]


class Engine:
    """One project on one store, through the store's write session (store/transactions.py)."""

    def __init__(self, session: WriteSession, settings: ProjectSettings = DEFAULT_PROJECT_SETTINGS) -> None:
        self.session = session
        self.conn = session.conn
        self.settings = settings
        # The project row (and with it the privacy key that audit entries hash ids with).
        if self.conn.execute("SELECT 1 FROM projects WHERE id = ?", (PROJECT_ID,)).fetchone() is None:
            self.run(lambda _: create_project(self.conn, "core tests", RECEIVED_AT))

    def close(self) -> None:
        self.session.close()

    def now(self) -> datetime:
        return RECEIVED_AT

    def apply(self, *commands: Command) -> list[CommandResult]:
        """Apply the commands in one transaction, as one ingest request."""
        return self.run(lambda batch: [batch.apply(command) for command in commands], commands)

    def run(self, work: Any, commands: tuple[Command, ...] = ()) -> Any:
        # Admin commands (and work that names no commands) run alone, as the server runs them.
        alone = not commands or any(isinstance(c, (Split, ImportPerson)) or getattr(c, "event", 0) is None
                                    for c in commands)
        session = self.session
        session.begin([None] if alone else [claims_for(PROJECT_ID, commands)])
        try:
            batch = Batch(session.persons(PROJECT_ID), PROJECT_ID, self.settings, self.now)
            batch.prefetch(list(commands))
            result = work(batch)
            batch.flush()
        except BaseException:
            session.rollback()
            raise
        session.commit()
        return result

    def undo(self, link_id: int) -> Undone:
        """Undo (or redo) a link-log entry in a transaction of its own, as the API does."""
        session = self.session
        session.begin([None])
        try:
            undone = undo_link(session.persons(PROJECT_ID), PROJECT_ID, self.settings, link_id, ADMIN)  # type: ignore[arg-type]
        except BaseException:
            session.rollback()
            raise
        session.commit()
        return undone

    def link_ids(self) -> list[int]:
        return [row[0] for row in self.conn.execute("SELECT id FROM links WHERE project_id = ? ORDER BY id", (PROJECT_ID,))]

    def outcome_now(self, link_id: int) -> str:
        """A link's outcome as it stands: the one an undo re-decided, else the logged one."""
        row = self.conn.execute(
            "SELECT coalesce(x.outcome, l.outcome) FROM links l LEFT JOIN link_effects x ON x.link_id = l.id WHERE l.id = ?",
            (link_id,),
        ).fetchone()
        return str(row[0])

    # -- readers, straight from the tables ------------------------------------------------

    def person_id(self, distinct_id: str) -> str | None:
        row = self.conn.execute(
            "SELECT person_id FROM distinct_ids WHERE project_id = ? AND distinct_id = ?", (PROJECT_ID, distinct_id)
        ).fetchone()
        return row[0] if row else None

    def persons(self) -> list[dict[str, Any]]:
        """Every person as {distinct_ids, user_ids, is_identified}, sorted by distinct ids."""
        found = []
        for person_id, is_identified in self.conn.execute(
            "SELECT id, is_identified FROM persons WHERE project_id = ?", (PROJECT_ID,)
        ).fetchall():
            ids = self.conn.execute(
                "SELECT distinct_id, is_user_id FROM distinct_ids WHERE person_id = ? ORDER BY distinct_id",
                (person_id,),
            ).fetchall()
            found.append(
                {
                    "distinct_ids": [d for d, _ in ids],
                    "user_ids": [d for d, is_user_id in ids if is_user_id],
                    "is_identified": bool(is_identified),
                }
            )
        return sorted(found, key=lambda p: p["distinct_ids"])

    def person(self, distinct_id: str) -> dict[str, Any]:
        """The person owning `distinct_id`, with its id, created_at and properties."""
        person_id = self.person_id(distinct_id)
        assert person_id is not None, f"no person owns {distinct_id!r}"
        created_at, is_identified = self.conn.execute(
            "SELECT created_at, is_identified FROM persons WHERE id = ?", (person_id,)
        ).fetchone()
        ids = self.conn.execute(
            "SELECT distinct_id, is_user_id FROM distinct_ids WHERE person_id = ? ORDER BY distinct_id", (person_id,)
        ).fetchall()
        return {
            "person_id": person_id,
            "distinct_ids": [d for d, _ in ids],
            "user_ids": [d for d, is_user_id in ids if is_user_id],
            "is_identified": bool(is_identified),
            "created_at": datetime.fromisoformat(created_at.replace("Z", "+00:00")),
            "properties": self.properties_of(person_id),
        }

    def properties(self, distinct_id: str) -> dict[str, Any]:
        person_id = self.person_id(distinct_id)
        assert person_id is not None, f"no person owns {distinct_id!r}"
        return self.properties_of(person_id)

    def properties_of(self, person_id: str) -> dict[str, Any]:
        rows = self.conn.execute(
            "SELECT key, value FROM person_attributes WHERE person_id = ? AND value IS NOT NULL ORDER BY key",
            (person_id,),
        )
        return {key: json.loads(value) for key, value in rows}

    def links(self) -> list[Link]:
        rows = self.conn.execute(
            "SELECT kind, actor, target_distinct_id, source_distinct_id, decision_row, outcome, reason"
            " FROM links WHERE project_id = ? ORDER BY id",
            (PROJECT_ID,),
        )
        return [Link(*row) for row in rows]

    def warnings(self) -> list[Warned]:
        rows = self.conn.execute(
            "SELECT type, distinct_ids FROM warnings WHERE project_id = ? ORDER BY id", (PROJECT_ID,)
        )
        return [Warned(kind, tuple(json.loads(ids))) for kind, ids in rows]

    def dead_letters(self) -> list[str]:
        return [row[0] for row in self.conn.execute("SELECT reason FROM dead_letters ORDER BY id")]

    def event_ids(self) -> list[str]:
        """The distinct ids of the stored events, in arrival order."""
        return [row[0] for row in self.conn.execute("SELECT distinct_id FROM events ORDER BY seq")]

    def audit(self) -> list[tuple[str, str]]:
        return [(a, b) for a, b in self.conn.execute("SELECT actor, action FROM audit_log ORDER BY id")]
