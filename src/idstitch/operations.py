"""An operator's identity actions — merge, split, undo, and identify or alias tried out — as write
functions for the writer, each answering what it changed, or with `dry_run` what it would change.

A dry run is the action itself in the writer's transaction, rolled back: it raises `Previewed`
with the change, so what a preview shows is exactly what the action does. The API, the UI and
the CLI all act through here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from idstitch.attributes import AttributeOps
from idstitch.commands import Actor, Alias, Command, Event, Identify, Merge, Split
from idstitch.engine import Batch
from idstitch.errors import InvalidRequest, NotFound
from idstitch.ids import normalize_distinct_id
from idstitch.ingest.pipeline import WriteContext
from idstitch.outcomes import Rejection
from idstitch.previews import Changes, compare
from idstitch.settings import ProjectSettings
from idstitch.store import reads
from idstitch.undo import UndoStore, undo_link


@dataclass(frozen=True, slots=True)
class IdentityChange:
    """What an action changed: the persons compared, the entries it logged, the entries an undo
    re-decided (`{"id", "before", "after"}`) and the warnings it raised."""

    changes: Changes
    links: list[dict[str, Any]]
    warnings: list[dict[str, Any]]
    links_changed: list[dict[str, Any]] = field(default_factory=list)
    undo_id: int | None = None
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        c = self.changes
        return {
            "dry_run": self.dry_run,
            "undo_id": self.undo_id,
            "persons_before": list(c.persons_before),
            "persons_after": list(c.persons_after),
            "created": c.created,
            "deleted": c.deleted,
            "moved_ids": [
                {"distinct_id": m.distinct_id, "from_person_id": m.from_person_id, "to_person_id": m.to_person_id}
                for m in c.moved_ids
            ],
            "attribute_changes": [
                {"person_id": a.person_id, "key": a.key, "before": a.before, "after": a.after} for a in c.attribute_changes
            ],
            "identified_changes": [{"person_id": p, "is_identified": flag} for p, flag in c.identified_changes],
            "links": self.links,
            "links_changed": self.links_changed,
            "warnings": self.warnings,
        }


    def sentences(self) -> list[str]:
        """The change in plain words, a line each (the CLI's answer)."""
        c = self.changes
        names = {p["id"]: ", ".join(p["distinct_ids"]) for p in (*c.persons_before, *c.persons_after)}
        lines = [f"{'would create' if self.dry_run else 'created'} person {p} ({names[p]})" for p in c.created]
        lines += [f"{'would remove' if self.dry_run else 'removed'} person {p} (was {names[p]})" for p in c.deleted]
        lines += [f"id {m.distinct_id}: person {m.from_person_id} -> {m.to_person_id}" for m in c.moved_ids]
        lines += [f"person {a.person_id}: {a.key} {a.before!r} -> {a.after!r}" for a in c.attribute_changes]
        lines += [f"link-log entry {link['id']}: {link['before']} -> {link['after']}" for link in self.links_changed]
        lines += [f"warning {w['type']}: {w['details']}" for w in self.warnings]
        return lines or ["nothing changes"]


class Previewed(Exception):
    """Raised by a dry run so that the writer rolls its transaction back; carries the change."""

    def __init__(self, change: IdentityChange) -> None:
        super().__init__("a dry run changes nothing")
        self.change = change


@dataclass(frozen=True, slots=True)
class Action:
    """The ids whose persons an action may change (read before it runs), and the action."""

    distinct_ids: Callable[[WriteContext, UndoStore], set[str]]
    apply: Callable[[WriteContext, UndoStore], Mapping[str, Any]]


def identity_change(
    project_id: int, settings: ProjectSettings, action: Action, *, dry_run: bool
) -> Callable[[WriteContext], IdentityChange]:
    def run(context: WriteContext) -> IdentityChange:
        conn = context.conn
        store: UndoStore = context.persons(project_id)  # type: ignore[assignment]
        ids = action.distinct_ids(context, store)
        before = reads.persons_holding(conn, project_id, ids)
        last_link, last_warning = reads.last_log_ids(conn, project_id)
        done = action.apply(context, store)
        after = reads.persons_holding(conn, project_id, ids)
        change = IdentityChange(
            compare(before, after),
            reads.links_since(conn, project_id, last_link),
            reads.warnings_since(conn, project_id, last_warning),
            list(done.get("links_changed", ())),
            done.get("undo_id"),
            dry_run,
        )
        if dry_run:
            raise Previewed(change)
        return change

    return run


def _ids_of_persons(context: WriteContext, project_id: int, distinct_ids: Iterable[str]) -> set[str]:
    return {d for p in reads.persons_holding(context.conn, project_id, distinct_ids) for d in p["distinct_ids"]}


def _run(
    context: WriteContext, store: UndoStore, project_id: int, settings: ProjectSettings, command: Command
) -> Mapping[str, Any]:
    batch = Batch(store, project_id, settings, context.now)
    batch.prefetch([command])
    batch.apply(command)
    batch.flush()
    return {}


def merge(project_id: int, settings: ProjectSettings, target: str, source: str, actor: Actor) -> Action:
    return Action(
        lambda context, store: _ids_of_persons(context, project_id, (target, source)),
        lambda context, store: _run(context, store, project_id, settings, Merge(target, source, actor)),
    )


def split(
    project_id: int,
    settings: ProjectSettings,
    person_id: str,
    distinct_ids: tuple[str, ...] | None,
    groups: tuple[tuple[str, ...], ...] | None,
    actor: Actor,
) -> Action:
    def ids(context: WriteContext, store: UndoStore) -> set[str]:
        held = {d for d, _ in store.distinct_ids_of(person_id)}
        if not held:
            raise NotFound(f"No person with id {person_id!r}")
        return held

    command = Split(person_id, distinct_ids, actor, groups)
    return Action(ids, lambda context, store: _run(context, store, project_id, settings, command))


def undo(project_id: int, settings: ProjectSettings, link_id: int, actor: Actor) -> Action:
    def ids(context: WriteContext, store: UndoStore) -> set[str]:
        link = store.logged_link(link_id)
        if link is None:
            raise NotFound(f"No link-log entry {link_id}")
        return set(store.identity_history(d for d in (link.target, link.source) if d is not None).distinct_ids)

    def apply(context: WriteContext, store: UndoStore) -> Mapping[str, Any]:
        undone = undo_link(store, project_id, settings, link_id, actor)
        changed = [{"id": i, "before": before, "after": after} for i, (before, after) in sorted(undone.changed_outcomes.items())]
        return {"undo_id": undone.undo_id, "links_changed": changed}

    return Action(ids, apply)


def tried_identify(
    project_id: int, settings: ProjectSettings, user_id: str, anonymous_id: str | None, attributes: AttributeOps, at: datetime
) -> Action:
    """An identify as the ingest path would apply it now (for a dry run only)."""
    user_id = _checked(user_id)
    anonymous_id = _checked(anonymous_id) if anonymous_id is not None else None
    event = _tried_event(user_id, "$identify", at, attributes)
    return _tried(project_id, settings, (user_id, anonymous_id), Identify(event, user_id=user_id, anonymous_id=anonymous_id))


def tried_alias(project_id: int, settings: ProjectSettings, target: str, source: str, at: datetime) -> Action:
    target, source = _checked(target), _checked(source)
    event = _tried_event(target, "$create_alias", at, AttributeOps())
    return _tried(project_id, settings, (target, source), Alias(event, target=target, source=source))


def _tried_event(distinct_id: str, name: str, at: datetime, ops: AttributeOps) -> Event:
    return Event(uuid=str(uuid.uuid4()), distinct_id=distinct_id, name=name, timestamp=at, ops=ops)


def _checked(distinct_id: str) -> str:
    """An id as ingest would take it (identity-rules.md §2), or the reason it would not."""
    checked = normalize_distinct_id(distinct_id)
    if isinstance(checked, Rejection):
        raise InvalidRequest(f"Distinct id {distinct_id[:50]!r}: {checked.reason}")
    return checked


def _tried(project_id: int, settings: ProjectSettings, named: tuple[str | None, ...], command: Command) -> Action:
    wanted = {d for d in named if d is not None}
    return Action(
        lambda context, store: _ids_of_persons(context, project_id, wanted) | wanted,
        lambda context, store: _run(context, store, project_id, settings, command),
    )

