"""An identity history: what the link log and the stored events say happened to a set of ids,
turned back into the commands that made it happen, in the order they happened.

replay.py runs these steps through the engine with chosen entries left out, which is what an
undo is: the persons the history would have made had that identify, alias, merge or split never
happened (identity-rules.md §3, undo). Everything here is pure: the store reads the entries and
events (`IdentityLog.identity_history`), this module only orders and rebuilds.

The order is the event sequence. An ingest entry shares the seq of its event (the link is
decided just before its event is stored); an admin entry (merge, split, undo) takes a seq of its
own, which no event is given after it. Entries logged before they had a seq were given the seq
of their event or of the nearest earlier entry that had one; sharing that seq, an entry without
an event goes after the event (it was logged after it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from idstitch.commands import Actor, Alias, Command, Event, Identify, ImportPerson, Merge, Split, Track
from idstitch.engine import LinkEntry, ReplayedEvent
from idstitch.errors import Conflict
from idstitch.identity import LinkKind

# The entries a replay re-decides (the others only record what an operator did).
DECIDED_KINDS = frozenset({LinkKind.IDENTIFY, LinkKind.ALIAS, LinkKind.MERGE})


@dataclass(frozen=True, slots=True)
class LoggedLink:
    """One entry of the link log as stored, with the outcome it has now (`outcome`) and the one
    it was logged with (`logged_outcome`): they differ once an undo re-decided it."""

    id: int
    seq: int
    kind: str
    actor: str
    target: str | None
    source: str | None
    target_person_id: str | None
    source_person_id: str | None
    event_uuid: str | None
    logged_outcome: str
    logged_reason: str | None
    outcome: str
    reason: str | None
    detail: Mapping[str, Any] | None
    created_at: datetime

    @property
    def undoes(self) -> int | None:
        return self.detail.get("undoes") if self.kind == LinkKind.UNDO and self.detail else None


@dataclass(frozen=True, slots=True)
class IdentityHistory:
    """Every id connected to some ids through persons and links, their entries by (seq, id) and
    their events by seq."""

    distinct_ids: frozenset[str]
    links: list[LoggedLink]
    events: list[ReplayedEvent]


class IdentityLog(Protocol):
    """What an undo needs from the store beyond the engine's `PersonStore` (store/persons.py)."""

    def logged_link(self, link_id: int) -> LoggedLink | None: ...
    def identity_history(self, distinct_ids: Iterable[str]) -> IdentityHistory: ...
    def insert_link(self, entry: LinkEntry) -> int: ...


@dataclass(frozen=True, slots=True)
class Step:
    """One command of a history: run at `at` (the engine's clock), with its events at `seq`;
    `link_ids` are the entries whose decision it re-makes."""

    seq: int
    at: datetime
    command: Command
    link_ids: tuple[int, ...] = ()


def undone_links(links: Iterable[LoggedLink]) -> dict[int, int]:
    """The entries undone, each with the undo entry in effect for it. An undo entry is in effect
    unless an undo entry in effect undoes it (a redo); undos only name earlier entries, so the
    newest decide first."""
    return undone_by((link.id, link.undoes) for link in links)


def undone_by(entries: Iterable[tuple[int, int | None]]) -> dict[int, int]:
    """`undone_links` over pairs of an entry's id and the entry it undoes (None for all but undos)."""
    undos = sorted(((undo_id, undoes) for undo_id, undoes in entries if undoes is not None), reverse=True)
    undone: dict[int, int] = {}
    for undo_id, undoes in undos:
        if undo_id not in undone:
            undone.setdefault(undoes, undo_id)
    return undone


def steps(history: IdentityHistory, undone: Mapping[int, int] | Iterable[int]) -> list[Step]:
    """The history's commands in order, leaving out the undone entries (an undone identify,
    alias or merge that came with an event still stores the event, as an ordinary one)."""
    skipped = set(undone)
    by_event: dict[str, list[LoggedLink]] = {}
    eventless: list[LoggedLink] = []
    for link in history.links:
        if link.kind == LinkKind.UNDO:
            continue
        if link.event_uuid is not None:
            by_event.setdefault(link.event_uuid, []).append(link)
        else:
            eventless.append(link)
    found: list[tuple[tuple[int, int, int], Step]] = []
    for position, replayed in enumerate(history.events):
        step = _event_step(replayed, by_event.get(replayed.uuid, []), skipped)
        if step is not None:
            found.append(((replayed.seq, 0, position), step))
    for entries in _operations(eventless):
        first = entries[0]
        if any(entry.id in skipped for entry in entries):
            continue
        step = _admin_step(entries)
        if step is not None:
            found.append(((first.seq, 1, first.id), step))
    found.sort(key=lambda item: item[0])
    return [step for _, step in found]


def _operations(links: list[LoggedLink]) -> Iterator[list[LoggedLink]]:
    """Eventless entries grouped by operator action: a split's entries share kind and seq."""
    group: list[LoggedLink] = []
    for link in links:
        if group and not (link.kind == LinkKind.SPLIT and group[0].kind == LinkKind.SPLIT and link.seq == group[0].seq):
            yield group
            group = []
        group.append(link)
    if group:
        yield group


def _event_step(replayed: ReplayedEvent, links: list[LoggedLink], skipped: set[int]) -> Step | None:
    event = Event(
        uuid=replayed.uuid,
        distinct_id=replayed.distinct_id,
        name=replayed.name,
        timestamp=replayed.timestamp,
        properties=replayed.properties,
        ops=replayed.ops,
        process_person=replayed.process_person,
    )
    imported = [link for link in links if link.kind == LinkKind.IMPORT]
    if imported:
        return _import_step(replayed, imported)
    decided = [link for link in links if link.kind in DECIDED_KINDS]
    if not decided or decided[0].id in skipped:
        return Step(replayed.seq, replayed.timestamp, Track(event))
    link = decided[0]
    assert link.target is not None
    command: Command
    if link.kind == LinkKind.IDENTIFY:
        command = Identify(event, user_id=link.target, anonymous_id=link.source)
    elif link.kind == LinkKind.ALIAS:
        assert link.source is not None
        command = Alias(event, target=link.target, source=link.source)
    else:
        assert link.source is not None
        command = Merge(link.target, link.source, parse_actor(link.actor), event)
    return Step(replayed.seq, replayed.timestamp, command, (link.id,))


def _import_step(replayed: ReplayedEvent, entries: list[LoggedLink]) -> Step:
    detail = entries[0].detail
    if detail is None:
        raise Conflict(
            "These ids were imported before imports were logged id by id, so their history cannot be"
            " replayed; split or merge them instead"
        )
    distinct_ids = tuple(entry.target for entry in entries if entry.target is not None)
    user_ids = tuple(entry.target for entry in entries if entry.target and (entry.detail or {}).get("user_id"))
    command = ImportPerson(
        distinct_ids=distinct_ids,
        user_ids=user_ids,
        properties=dict(replayed.ops.set),
        is_identified=bool(detail.get("identified")),
        created_at=datetime.fromisoformat(str(detail["created_at"]).replace("Z", "+00:00")),
        actor=parse_actor(entries[0].actor),
    )
    return Step(replayed.seq, replayed.timestamp, command, tuple(entry.id for entry in entries))


def _admin_step(entries: list[LoggedLink]) -> Step | None:
    first = entries[0]
    actor = parse_actor(first.actor)
    if first.kind == LinkKind.MERGE and first.target is not None and first.source is not None:
        return Step(first.seq, first.created_at, Merge(first.target, first.source, actor), (first.id,))
    if first.kind == LinkKind.SPLIT:
        groups: dict[str | None, list[str]] = {}
        for entry in entries:
            if entry.target is not None:
                groups.setdefault(entry.target_person_id, []).append(entry.target)
        split = Split(None, None, actor, groups=tuple(tuple(group) for group in groups.values()))
        return Step(first.seq, first.created_at, split, tuple(entry.id for entry in entries))
    return None


def parse_actor(text: str) -> Actor:
    kind, _, key_id = text.partition(":")
    return Actor(kind, int(key_id) if key_id.isdigit() else None)
