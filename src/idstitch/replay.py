"""Replaying an identity history through the engine, in memory: the persons it would make.

An undo (undo.py) and a preview of a rule change replay the steps of a history (history.py)
with the same `Batch`, the same rules and the same order as ingest, one step a transaction, on
`MemoryPersons` instead of a store. What ingest would have made of the same commands is
therefore what the replay makes; the store then only writes the difference.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from idstitch.attributes import Attribute, PersonAttributes
from idstitch.engine import Batch, LinkEntry, PersonRow, ReplayedEvent, StoredEvent
from idstitch.errors import RequestError
from idstitch.history import Step
from idstitch.id_rules import HeldId
from idstitch.outcomes import WarningRecord
from idstitch.settings import ProjectSettings


@dataclass(frozen=True, slots=True)
class Decided:
    """What the replay decided for a logged entry."""

    outcome: str
    reason: str | None


@dataclass(slots=True)
class MemoryPersons:
    """The engine's `PersonStore` (engine.py) held in dictionaries, for one project."""

    persons: dict[str, PersonRow] = field(default_factory=dict)
    owner: dict[str, str] = field(default_factory=dict)
    user_ids: set[str] = field(default_factory=set)
    # When each id was first mapped (the store keeps that time through later moves).
    first_mapped: dict[str, datetime] = field(default_factory=dict)
    attributes: dict[str, PersonAttributes] = field(default_factory=dict)
    events: list[ReplayedEvent] = field(default_factory=list)
    warnings: list[WarningRecord] = field(default_factory=list)
    decided: dict[int, Decided] = field(default_factory=dict)
    # The step being replayed: its seq (every seq the engine takes) and the entries it re-decides.
    seq: int = 0
    link_ids: tuple[int, ...] = ()

    # -- persons and ids -------------------------------------------------------------------

    def owners_of(self, distinct_ids: Iterable[str]) -> dict[str, str]:
        return {d: self.owner[d] for d in distinct_ids if d in self.owner}

    def load_persons(self, person_ids: Iterable[str]) -> dict[str, tuple[PersonRow, set[str]]]:
        found: dict[str, tuple[PersonRow, set[str]]] = {}
        for person_id in person_ids:
            row = self.persons.get(person_id)
            if row is not None:
                held = {d for d in self.user_ids if self.owner.get(d) == person_id}
                found[person_id] = (PersonRow(row.person_id, row.created_at, row.is_identified), held)
        return found

    def distinct_ids_of(self, person_id: str) -> list[tuple[str, bool]]:
        held = [d for d, p in self.owner.items() if p == person_id]
        held.sort(key=lambda d: (self.first_mapped[d], d))
        return [(d, d in self.user_ids) for d in held]

    def held_ids(self, person_id: str) -> list[HeldId]:
        return [HeldId(d, is_user_id, self.first_mapped[d]) for d, is_user_id in self.distinct_ids_of(person_id)]

    def load_attributes(self, person_ids: Iterable[str]) -> dict[str, PersonAttributes]:
        return {p: PersonAttributes(dict(self.attributes[p].items)) for p in person_ids if p in self.attributes}

    def save_persons(self, rows: list[PersonRow], *, new: bool) -> None:
        for row in rows:
            self.persons[row.person_id] = PersonRow(row.person_id, row.created_at, row.is_identified)

    def delete_person(self, person_id: str) -> None:
        self.persons.pop(person_id, None)
        self.attributes.pop(person_id, None)

    def map_distinct_ids(self, rows: list[tuple[str, str, bool, datetime]]) -> None:
        for distinct_id, person_id, is_user_id, at in rows:
            self.owner[distinct_id] = person_id
            self.first_mapped.setdefault(distinct_id, at)
            self.set_user_id(distinct_id, is_user_id)

    def set_user_id(self, distinct_id: str, is_user_id: bool) -> None:
        if is_user_id:
            self.user_ids.add(distinct_id)
        else:
            self.user_ids.discard(distinct_id)

    def move_distinct_ids(self, from_person_id: str, to_person_id: str) -> None:
        for distinct_id, person_id in self.owner.items():
            if person_id == from_person_id:
                self.owner[distinct_id] = to_person_id

    # -- attributes ------------------------------------------------------------------------

    def save_attributes(self, rows: list[tuple[str, str, Attribute]]) -> None:
        for person_id, key, attribute in rows:
            self.attributes.setdefault(person_id, PersonAttributes()).put(key, attribute)

    def replace_attributes(self, person_id: str, attributes: PersonAttributes) -> None:
        self.attributes[person_id] = PersonAttributes(dict(attributes.items))

    # -- events and logs -------------------------------------------------------------------

    def existing_event_uuids(self, uuids: list[str]) -> set[str]:
        return set()  # a history holds each stored event once

    def next_seq(self) -> int:
        return self.seq

    def insert_events(self, events: list[StoredEvent]) -> None:
        for stored in events:
            e = stored.event
            self.events.append(
                ReplayedEvent(stored.seq, e.uuid, e.distinct_id, e.name, e.timestamp, e.properties, e.ops, e.process_person)
            )

    def replay_events(self, distinct_ids: list[str]) -> Iterator[ReplayedEvent]:
        wanted = set(distinct_ids)
        return iter([e for e in self.events if e.distinct_id in wanted])

    def insert_link(self, entry: LinkEntry) -> int:
        for link_id in self.link_ids:
            if link_id not in self.decided:
                self.decided[link_id] = Decided(entry.outcome.value, entry.reason)
                break
        return 0

    def insert_warnings(self, warnings: list[WarningRecord]) -> None:
        self.warnings.extend(warnings)

    def insert_dead_letter(self, reason: str, payload: Any) -> None:
        """An identity event is dead-lettered before it is stored: a history holds none."""

    def audit(self, actor: str, action: str, details: dict[str, Any], ids: Mapping[str, Any] | None = None) -> None:
        """A replay changes nothing an operator did: the undo that asked for it is audited."""


@dataclass(frozen=True, slots=True)
class NotReplayed:
    """A step the rewritten history cannot take (a merge of an id no person holds yet there)."""

    link_ids: tuple[int, ...]
    reason: str


def replay(project_id: int, settings: ProjectSettings, history_steps: Iterable[Step]) -> tuple[MemoryPersons, list[NotReplayed]]:
    """The persons the steps make, one step a transaction as ingest applies them."""
    memory = MemoryPersons()
    not_replayed: list[NotReplayed] = []
    for step in history_steps:
        memory.seq, memory.link_ids = step.seq, step.link_ids

        def at(step: Step = step) -> datetime:
            return step.at

        batch = Batch(memory, project_id, settings, at)
        try:
            batch.prefetch([step.command])
            batch.apply(step.command)
        except RequestError as error:
            # Raised before the engine changed anything (an id without a person, an id taken).
            not_replayed.append(NotReplayed(step.link_ids, str(error)))
            continue
        batch.flush()
    return memory, not_replayed
