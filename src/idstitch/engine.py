"""The engine: applies commands in order against one store transaction, using the pure rules.

A `Batch` is one unit of work (one group commit). It caches the persons and attributes it
touches, so that a hundred events of one visitor cost one lookup, and writes what changed when
the batch is flushed. The store it is given implements `PersonStore`; the engine never sees SQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from idstitch.attributes import (
    NO_OPS,
    Attribute,
    AttributeOps,
    OperationContext,
    PersonAttributes,
)
from idstitch.clock import Now, format_time
from idstitch.commands import (
    INGEST,
    Actor,
    Alias,
    Command,
    Event,
    Identify,
    ImportPerson,
    Merge,
    Split,
    Track,
)
from idstitch.errors import Conflict, InvalidRequest, NotFound
from idstitch.first_touch import apply_event_operations, lifted_properties
from idstitch.id_rules import HeldId
from idstitch.identity import (
    Action,
    Decision,
    Holder,
    LinkKind,
    decide_identify_alone,
    decide_link,
)
from idstitch.ids import normalize_distinct_id, person_id_for
from idstitch.outcomes import LinkOutcome, Rejection, WarningRecord, WarningType
from idstitch.settings import ProjectSettings
from idstitch.warning_digest import digest_warnings


@dataclass(slots=True)
class PersonRow:
    person_id: str
    created_at: datetime
    is_identified: bool


@dataclass(frozen=True, slots=True)
class LinkEntry:
    kind: str
    actor: str
    target_distinct_id: str | None
    source_distinct_id: str | None
    target_person_id: str | None
    source_person_id: str | None
    event_uuid: str | None
    decision_row: str | None
    outcome: LinkOutcome
    reason: str | None
    # Its place in the project's history, on the event sequence: the seq of its event, or one
    # taken for it (history.py replays the log in this order).
    seq: int | None = None
    # What a replay needs beyond the two ids (an import's flags); never an id.
    detail: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    seq: int
    event: Event


@dataclass(frozen=True, slots=True)
class ReplayedEvent:
    """A stored event read back, in arrival order, for re-deriving a person after a split."""

    seq: int
    uuid: str
    distinct_id: str
    name: str
    timestamp: datetime
    properties: dict[str, Any]
    ops: AttributeOps
    process_person: bool


class PersonStore(Protocol):
    """What the engine needs from a store transaction (store/persons.py implements it per backend)."""

    def owners_of(self, distinct_ids: Iterable[str]) -> dict[str, str]: ...
    def load_persons(self, person_ids: Iterable[str]) -> dict[str, tuple[PersonRow, set[str]]]: ...
    def distinct_ids_of(self, person_id: str) -> list[tuple[str, bool]]: ...
    def held_ids(self, person_id: str) -> list[HeldId]:
        """The person's ids with whether each is a user id and when it joined (distinct_ids.created_at)."""
    def load_attributes(self, person_ids: Iterable[str]) -> dict[str, PersonAttributes]: ...
    def save_persons(self, rows: list[PersonRow], *, new: bool) -> None: ...
    def delete_person(self, person_id: str) -> None: ...
    def map_distinct_ids(self, rows: list[tuple[str, str, bool, datetime]]) -> None: ...
    def set_user_id(self, distinct_id: str, is_user_id: bool) -> None: ...
    def move_distinct_ids(self, from_person_id: str, to_person_id: str) -> None: ...
    def save_attributes(self, rows: list[tuple[str, str, Attribute]]) -> None: ...
    def replace_attributes(self, person_id: str, attributes: PersonAttributes) -> None: ...
    def existing_event_uuids(self, uuids: list[str]) -> set[str]: ...
    def next_seq(self) -> int: ...
    def insert_events(self, events: list[StoredEvent]) -> None: ...
    def replay_events(self, distinct_ids: list[str]) -> Iterator[ReplayedEvent]: ...
    def insert_link(self, entry: LinkEntry) -> int: ...  # the entry's id
    def insert_warnings(self, warnings: list[WarningRecord]) -> None: ...
    def insert_dead_letter(self, reason: str, payload: Any) -> None: ...
    def audit(self, actor: str, action: str, details: dict[str, Any], ids: Mapping[str, Any] | None = None) -> None:
        """An audit entry; `ids` name persons and are stored as keyed hashes only."""


@dataclass(slots=True)
class _Person:
    row: PersonRow
    user_ids: set[str]
    attributes: PersonAttributes | None = None
    new: bool = False
    dirty: bool = False
    dirty_keys: set[str] = field(default_factory=set)
    deleted: bool = False


class PersonCache:
    """Persons and id owners kept across transactions by the one writer of a store.

    Most events come from visitors seen moments ago; keeping them in memory makes such an event a
    dictionary lookup instead of four queries. Only the writer changes the store, so the cache
    stays true as long as the writer drops it whenever a write it did not see through a `Batch`
    happened (a rolled-back savepoint, an admin write, another process): see ingest/pipeline.py.
    """

    def __init__(self, max_persons: int = 20_000) -> None:
        self.max_persons = max_persons
        self.persons: dict[str, _Person] = {}
        # distinct id -> person id, or None when the store had no person for it.
        self.owner: dict[str, str | None] = {}

    def clear(self) -> None:
        self.persons.clear()
        self.owner.clear()

    def trim(self) -> None:
        """Forget the oldest half when over capacity (after a commit, when nothing is dirty)."""
        if len(self.persons) > self.max_persons:
            for person_id in list(self.persons)[: len(self.persons) // 2]:
                del self.persons[person_id]
        if len(self.owner) > 4 * self.max_persons:
            for distinct_id in list(self.owner)[: len(self.owner) // 2]:
                del self.owner[distinct_id]


@dataclass(slots=True)
class CommandResult:
    warnings: list[WarningRecord] = field(default_factory=list)
    rejection: Rejection | None = None
    duplicate: bool = False
    person_id: str | None = None


class Batch:
    """One transaction's worth of commands for one project."""

    def __init__(
        self,
        store: PersonStore,
        project_id: int,
        settings: ProjectSettings,
        now: Now,
        cache: PersonCache | None = None,
    ) -> None:
        self.store = store
        self.project_id = project_id
        self.settings = settings
        self.now = now
        cache = cache if cache is not None else PersonCache()
        self._persons = cache.persons
        self._owner = cache.owner
        self._pending_ids: list[tuple[str, str, bool, datetime]] = []
        self._events: list[StoredEvent] = []
        self._warnings: list[WarningRecord] = []
        self._seen_uuids: set[str] = set()
        self._known_uuids: set[str] = set()
        # Persons this batch may have changed, in the order it first touched them.
        self._touched: dict[str, _Person] = {}

    # -- entry points -------------------------------------------------------------------

    def prefetch(self, commands: list[Command]) -> None:
        """Load, in a few queries, what the commands will need: stored uuids, owners, persons."""
        uuids: list[str] = []
        distinct_ids: set[str] = set()
        for command in commands:
            event = getattr(command, "event", None)
            if event is not None:
                uuids.append(event.uuid)
                distinct_ids.add(event.distinct_id)
            if isinstance(command, (Alias, Merge)):
                distinct_ids.update((command.target, command.source))
            elif isinstance(command, Identify) and command.anonymous_id is not None:
                distinct_ids.add(command.anonymous_id)
        self._known_uuids |= self.store.existing_event_uuids(uuids)
        unknown = [d for d in distinct_ids if d not in self._owner]
        if unknown:
            found = self.store.owners_of(unknown)
            for distinct_id in unknown:
                self._owner[distinct_id] = found.get(distinct_id)
        missing = {self._owner[d] for d in distinct_ids} - self._persons.keys() - {None}
        if missing:
            self._load_many(missing)  # type: ignore[arg-type]

    def apply(self, command: Command) -> CommandResult:
        result = CommandResult()
        event = getattr(command, "event", None)
        if event is not None:
            if event.uuid in self._known_uuids or event.uuid in self._seen_uuids:
                result.duplicate = True
                return result
        if isinstance(command, Track):
            self._track(command.event, result)
        elif isinstance(command, Identify):
            self._identify(command, result)
        elif isinstance(command, Alias):
            self._link_event(LinkKind.ALIAS, command.event, command.target, command.source, INGEST, result)
        elif isinstance(command, Merge):
            self._merge(command, result)
        elif isinstance(command, Split):
            self._split(command, result)
        elif isinstance(command, ImportPerson):
            self._import(command, result)
        else:  # pragma: no cover - the Command union is closed
            raise TypeError(f"not a command: {command!r}")
        self._warnings.extend(result.warnings)
        return result

    def flush(self) -> None:
        """Write everything the batch changed; the caller commits."""
        self._write_ids()
        new: list[PersonRow] = []
        changed: list[PersonRow] = []
        attributes: list[tuple[str, str, Attribute]] = []
        for person in self._touched.values():
            if person.deleted:
                continue
            if person.new:
                new.append(person.row)
            elif person.dirty:
                changed.append(person.row)
            person.new = person.dirty = False
            if person.dirty_keys and person.attributes is not None:
                items = person.attributes.items
                attributes.extend((person.row.person_id, key, items[key]) for key in person.dirty_keys)
                person.dirty_keys = set()
        self._touched = {}
        if new:
            self.store.save_persons(new, new=True)
        if changed:
            self.store.save_persons(changed, new=False)
        if attributes:
            self.store.save_attributes(attributes)
        if self._events:
            self.store.insert_events(self._events)
            self._events = []
        if self._warnings:
            self.store.insert_warnings(digest_warnings(self._warnings))
            self._warnings = []

    # -- events ----------------------------------------------------------------------------

    def _track(self, event: Event, result: CommandResult, seq: int | None = None) -> None:
        seq = self._store_event(event, seq)
        person = self._person_for_event(event) if event.process_person else None
        if person is None:
            self._keep_ops(seq, NO_OPS)  # they change no person
            return
        result.person_id = person.row.person_id
        self._apply_ops(person, event, seq, result)

    def _identify(self, command: Identify, result: CommandResult) -> None:
        event = command.event
        if command.user_id is None:
            self._track(event, result)
            return
        if not self._accepts_identity(event, result):
            return
        if command.anonymous_id is None and self.settings.identify_without_anonymous_id == "plain_event":
            # PostHog: `$identify` without `$anon_distinct_id` is an ordinary event carrying `$set`.
            self._track(event, result)
            return
        if command.anonymous_id is None:
            holder = self._holder(command.user_id)
            decision = decide_identify_alone(
                command.user_id,
                holder,
                max_user_ids=self.settings.max_user_ids,
                illegal=self.settings.illegal,
                rules=self.settings.identity_rules,
                at=event.timestamp,
                event_uuid=event.uuid,
            )
            seq = self.store.next_seq()
            self._perform(LinkKind.IDENTIFY, decision, command.user_id, None, INGEST, event, result, seq)
            self._track(event, result, seq)
            return
        self._link_event(LinkKind.IDENTIFY, event, command.user_id, command.anonymous_id, INGEST, result)

    def _merge(self, command: Merge, result: CommandResult) -> None:
        event = command.event
        if event is not None and not self._accepts_identity(event, result):
            return  # §6 comes first: a personless identity event is dead-lettered, allowed or not
        if command.actor.kind == "ingest" and not self.settings.allow_merge_over_ingest:
            # A public token is in every web page: it must not let a stranger join two customers.
            warning = WarningRecord(
                WarningType.MERGE_REQUIRES_SECRET_KEY,
                (command.target, command.source),
                {"target_distinct_id": command.target, "source_distinct_id": command.source},
                event.uuid if event else None,
            )
            result.warnings.append(warning)
            seq = self.store.next_seq()
            self._log(
                LinkKind.MERGE, command.actor, command.target, command.source, event,
                LinkOutcome.REFUSED, None, WarningType.MERGE_REQUIRES_SECRET_KEY.value, seq=seq,
            )
            if event is not None:
                self._track(event, result, seq)
            return
        if event is None:
            if self._person_of(command.source) is None:
                raise NotFound(f"No person owns distinct id {command.source!r}")
            if self._person_of(command.target) is None:
                raise NotFound(f"No person owns distinct id {command.target!r}")
            self._link(LinkKind.MERGE, command.target, command.source, command.actor, None, result, self.store.next_seq())
            self.store.audit(str(command.actor), "merge", {}, ids={"target": command.target, "source": command.source})
            return
        self._link_event(LinkKind.MERGE, event, command.target, command.source, command.actor, result)

    def _link_event(
        self, kind: LinkKind, event: Event, target: str, source: str, actor: Actor, result: CommandResult
    ) -> None:
        if not self._accepts_identity(event, result):
            return
        seq = self.store.next_seq()  # the link and its event share a place in history
        self._link(kind, target, source, actor, event, result, seq)
        self._track(event, result, seq)

    def _accepts_identity(self, event: Event, result: CommandResult) -> bool:
        if event.process_person:
            return True
        warning = WarningRecord(
            WarningType.IDENTITY_ON_PERSONLESS_EVENT,
            (event.distinct_id,),
            {"event": event.name},
            event.uuid,
        )
        result.warnings.append(warning)
        result.rejection = Rejection("an identity operation cannot be marked $process_person_profile: false")
        self.store.insert_dead_letter(result.rejection.reason, _event_payload(event))
        self._seen_uuids.add(event.uuid)
        return False

    def _link(
        self,
        kind: LinkKind,
        target: str,
        source: str,
        actor: Actor,
        event: Event | None,
        result: CommandResult,
        seq: int,
    ) -> None:
        decision = decide_link(
            kind,
            target,
            source,
            self._holder(target),
            self._holder(source),
            max_user_ids=self.settings.max_user_ids,
            illegal=self.settings.illegal,
            rules=self.settings.identity_rules,
            at=event.timestamp if event else self.now(),
            event_uuid=event.uuid if event else None,
        )
        self._perform(kind, decision, target, source, actor, event, result, seq)

    def _perform(
        self,
        kind: LinkKind,
        decision: Decision,
        target: str,
        source: str | None,
        actor: Actor,
        event: Event | None,
        result: CommandResult,
        seq: int,
    ) -> None:
        result.warnings.extend(decision.warnings)
        if decision.outcome is None:
            return
        when = event.timestamp if event else self.now()
        target_person = self._person_of(target)
        source_person = self._person_of(source) if source is not None else None
        source_person_id = source_person.row.person_id if source_person else None
        action = decision.action
        person: _Person | None
        if action is Action.CREATE_BOTH:
            assert source is not None
            person = self._new_person(target, when, identified=True, is_user_id=decision.target_becomes_user_id)
            self._map(source, person, when, is_user_id=False)
        elif action is Action.ATTACH_SOURCE:
            assert target_person is not None and source is not None
            person = target_person
            self._map(source, person, when, is_user_id=False)
        elif action is Action.ATTACH_TARGET:
            assert source_person is not None
            person = source_person
            self._map(target, person, when, is_user_id=decision.target_becomes_user_id)
        elif action is Action.MERGE:
            assert target_person is not None and source_person is not None
            person = target_person
            self._merge_persons(source_person, target_person)
        elif action is Action.CREATE_TARGET_ALONE:
            person = self._new_person(target, when, identified=True, is_user_id=decision.target_becomes_user_id)
        else:  # MARK, REFUSE
            person = target_person
        if person is not None:
            if decision.mark_identified and not person.row.is_identified:
                person.row.is_identified = True
                person.dirty = True
            if decision.target_becomes_user_id and target not in person.user_ids and self._owner.get(target) == person.row.person_id:
                person.user_ids.add(target)
                self._write_ids()
                self.store.set_user_id(target, True)
        self._log(
            kind, actor, target, source, event, decision.outcome, decision.row, decision.reason,
            target_person_id=person.row.person_id if person else None, source_person_id=source_person_id, seq=seq,
        )

    def _log(
        self,
        kind: LinkKind,
        actor: Actor,
        target: str | None,
        source: str | None,
        event: Event | None,
        outcome: LinkOutcome,
        row: str | None,
        reason: str | None,
        *,
        target_person_id: str | None = None,
        source_person_id: str | None = None,
        seq: int,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        self.store.insert_link(
            LinkEntry(
                kind.value, str(actor), target, source, target_person_id, source_person_id,
                event.uuid if event else None, row, outcome, reason, seq, detail,
            )
        )

    # -- persons -----------------------------------------------------------------------------

    def _holder(self, distinct_id: str) -> Holder | None:
        person = self._person_of(distinct_id)
        if person is None:
            return None
        held: tuple[HeldId, ...] = ()
        if self.settings.identity_rules.limits:
            # Only limits count a person's ids, so only a project with limits pays this query
            # (and only for the ids of a link, never for a plain event).
            self._write_ids()
            held = tuple(self.store.held_ids(person.row.person_id))
        return Holder(
            person.row.person_id,
            person.row.is_identified,
            len(person.user_ids),
            distinct_id in person.user_ids,
            held,
        )

    def _person_of(self, distinct_id: str) -> _Person | None:
        if distinct_id in self._owner:
            person_id = self._owner[distinct_id]
        else:
            person_id = self.store.owners_of([distinct_id]).get(distinct_id)
            self._owner[distinct_id] = person_id
        if person_id is None:
            return None
        return self._load(person_id)

    def _load(self, person_id: str) -> _Person:
        person = self._persons.get(person_id)
        if person is None:
            self._load_many({person_id})
            person = self._persons.get(person_id)
            if person is None:
                raise NotFound(f"No person with id {person_id!r}")
        self._touched[person_id] = person
        return person

    def _load_many(self, person_ids: set[str]) -> None:
        found = self.store.load_persons(person_ids)
        attributes = self.store.load_attributes(found)
        for person_id, (row, user_ids) in found.items():
            self._persons[person_id] = _Person(row, user_ids, attributes.get(person_id) or PersonAttributes())

    def _write_ids(self) -> None:
        """Write the distinct ids mapped so far: SQL that reads the mapping must see them."""
        if self._pending_ids:
            self.store.map_distinct_ids(self._pending_ids)
            self._pending_ids = []

    def _person_for_event(self, event: Event) -> _Person | None:
        person = self._person_of(event.distinct_id)
        if person is None:
            if self.settings.person_profiles == "identified_only":
                return None
            return self._new_person(event.distinct_id, event.timestamp, identified=False, is_user_id=False)
        if event.timestamp < person.row.created_at:
            person.row.created_at = event.timestamp
            person.dirty = True
        return person

    def _new_person(self, distinct_id: str, when: datetime, *, identified: bool, is_user_id: bool) -> _Person:
        person_id = person_id_for(self.project_id, distinct_id)
        person = _Person(PersonRow(person_id, when, identified), set(), PersonAttributes(), new=True)
        self._persons[person_id] = person
        self._touched[person_id] = person
        self._map(distinct_id, person, when, is_user_id=is_user_id)
        return person

    def _map(self, distinct_id: str, person: _Person, when: datetime, *, is_user_id: bool) -> None:
        self._pending_ids.append((distinct_id, person.row.person_id, is_user_id, when))
        self._owner[distinct_id] = person.row.person_id
        if is_user_id:
            person.user_ids.add(distinct_id)

    def _attributes(self, person: _Person) -> PersonAttributes:
        if person.attributes is None:
            loaded = self.store.load_attributes([person.row.person_id])
            person.attributes = loaded.get(person.row.person_id) or PersonAttributes()
        return person.attributes

    def _merge_persons(self, source: _Person, target: _Person) -> None:
        """Row E: the target survives; keys on both sides keep the target's value (§4)."""
        merged = self._attributes(source).merged_under(self._attributes(target))
        target.attributes = merged
        target.dirty_keys |= set(merged.items)
        target.user_ids |= source.user_ids
        target.row.created_at = min(target.row.created_at, source.row.created_at)
        target.dirty = True
        self._write_ids()
        for distinct_id, _ in self.store.distinct_ids_of(source.row.person_id):
            self._owner[distinct_id] = target.row.person_id
        self.store.move_distinct_ids(source.row.person_id, target.row.person_id)
        self._drop(source)

    def _drop(self, person: _Person) -> None:
        if not person.new:
            self.store.delete_person(person.row.person_id)
        person.deleted = True
        self._persons.pop(person.row.person_id, None)

    def _apply_ops(self, person: _Person, event: Event, seq: int, result: CommandResult) -> None:
        lifted = lifted_properties(event.properties, event.name) if event.ops.automatic else {}
        if not event.ops.has_operations and not lifted:
            return
        identified = person.row.is_identified or bool(person.user_ids)
        context = OperationContext(event.timestamp, seq, event.uuid, event.distinct_id, identified)
        attributes = self._attributes(person)
        policy = self.settings.attribute_policy
        changes = apply_event_operations(attributes, event.name, lifted, event.ops, context, policy)
        person.dirty_keys |= changes.changed
        kept = event.ops
        if changes.explicit is not None:
            result.warnings.extend(changes.explicit.warnings)
            kept = changes.explicit.kept
        if lifted and not policy.enabled:
            kept = replace(kept, automatic=False)  # refused now, so refused on every re-derivation
        self._keep_ops(seq, kept)

    def _store_event(self, event: Event, seq: int | None = None) -> int:
        seq = self.store.next_seq() if seq is None else seq
        self._events.append(StoredEvent(seq, event))
        self._seen_uuids.add(event.uuid)
        return seq

    def _keep_ops(self, seq: int, kept: AttributeOps) -> None:
        """Store the event just added with only these of its operations: a value refused, or
        not applied to any person, is not kept (the warning names its key)."""
        stored = self._events[-1]
        assert stored.seq == seq, "operations are decided right after their event is added"
        if stored.event.ops is not kept:
            self._events[-1] = StoredEvent(seq, replace(stored.event, ops=kept))

    # -- admin -----------------------------------------------------------------------------

    def _split(self, command: Split, result: CommandResult) -> None:
        """Give groups of ids persons of their own, re-deriving each person's attributes from its
        ids' events. Asked for a person, every id named must be that person's; replayed from the
        log (history.py, no person named), each person holding grouped ids splits along them."""
        self._write_ids()
        if command.person_id is not None:
            person = self._load(command.person_id)
            groups = _chosen_groups(command, [d for d, _ in self.store.distinct_ids_of(person.row.person_id)])
            holders = [person]
        else:
            groups = [list(group) for group in command.groups or ()]
            found = {p.row.person_id: p for group in groups for d in group if (p := self._person_of(d)) is not None}
            holders = list(found.values())
        grouped = {d for group in groups for d in group}
        seq = self.store.next_seq()
        for holder in holders:
            owned = [d for d, _ in self.store.distinct_ids_of(holder.row.person_id)]
            parts = [[d for d in group if d in owned] for group in groups] + [[d for d in owned if d not in grouped]]
            parts = [part for part in parts if part]
            if len(parts) > 1:
                self._split_person(holder, parts, command.actor, seq)
        if command.person_id is not None:
            self.store.audit(str(command.actor), "split", {}, ids={"person_id": command.person_id, "groups": groups})

    def _split_person(self, person: _Person, parts: list[list[str]], actor: Actor, seq: int) -> None:
        """The part holding the id the person is named after keeps the person (§3: person ids)."""
        user_ids = set(person.user_ids)
        old_person_id = person.row.person_id
        for part in parts:
            keeps_person = any(person_id_for(self.project_id, d) == old_person_id for d in part)
            person_id = old_person_id if keeps_person else person_id_for(self.project_id, part[0])
            has_user_id = any(d in user_ids for d in part)
            attributes, first_seen = self._rederive(part, has_user_id)
            created_at = first_seen or person.row.created_at
            if keeps_person:
                person.row.created_at = created_at
                person.row.is_identified = has_user_id
                person.dirty = True
                held = person
            else:
                held = _Person(PersonRow(person_id, created_at, has_user_id), set(), new=True)
                self._persons[person_id] = held
                self._touched[person_id] = held
            held.user_ids = {d for d in part if d in user_ids}
            held.attributes = attributes
            held.dirty_keys = set()
            self.store.replace_attributes(person_id, attributes)
            for distinct_id in part:
                self._pending_ids.append((distinct_id, person_id, distinct_id in user_ids, created_at))
                self._owner[distinct_id] = person_id
                self._log(
                    LinkKind.SPLIT, actor, distinct_id, None, None, LinkOutcome.SPLIT, None, None,
                    target_person_id=person_id, source_person_id=old_person_id, seq=seq,
                )

    def _rederive(self, distinct_ids: list[str], has_user_id: bool) -> tuple[PersonAttributes, datetime | None]:
        if self._events:
            # Re-derivation reads events back from the store: this batch's events must be there too.
            self.store.insert_events(self._events)
            self._events = []
        attributes = PersonAttributes()
        first_seen: datetime | None = None
        policy = self.settings.attribute_policy
        for replay in self.store.replay_events(distinct_ids):
            first_seen = replay.timestamp if first_seen is None else min(first_seen, replay.timestamp)
            if not replay.process_person:
                continue
            context = OperationContext(replay.timestamp, replay.seq, replay.uuid, replay.distinct_id, has_user_id)
            lifted = lifted_properties(replay.properties, replay.name)
            apply_event_operations(attributes, replay.name, lifted, replay.ops, context, policy)
        return attributes, first_seen

    def _import(self, command: ImportPerson, result: CommandResult) -> None:
        if not command.distinct_ids:
            raise InvalidRequest("An imported person needs at least one distinct id")
        # The §2 rules apply to imported ids as to ingested ones (an empty id was imported as is).
        for distinct_id in command.distinct_ids:
            checked = normalize_distinct_id(distinct_id)
            if isinstance(checked, Rejection):
                raise InvalidRequest(f"Distinct id {distinct_id[:50]!r}: {checked.reason}")
        taken = [d for d in command.distinct_ids if self._person_of(d) is not None]
        if taken:
            raise Conflict(f"Distinct ids {taken!r} already belong to a person")
        strangers = [u for u in command.user_ids if u not in command.distinct_ids]
        if strangers:
            raise InvalidRequest(f"User ids {strangers!r} are not among the person's distinct ids")
        first = command.distinct_ids[0]
        identified = command.is_identified or bool(command.user_ids)
        person = self._new_person(first, command.created_at, identified=identified, is_user_id=first in command.user_ids)
        for distinct_id in command.distinct_ids[1:]:
            self._map(distinct_id, person, command.created_at, is_user_id=distinct_id in command.user_ids)
        result.person_id = person.row.person_id
        # The properties travel as the ops of an `$import` event, so a later split re-derives them.
        event = Event(
            uuid=_import_uuid(self.project_id, first),
            distinct_id=first,
            name="$import",
            timestamp=self.now(),
            properties={},
            ops=AttributeOps(set=command.properties) if command.properties else NO_OPS,
        )
        seq = self._store_event(event)
        self._apply_ops(person, event, seq, result)
        # One entry per id, so that the log alone can replay the import (history.py).
        for distinct_id in command.distinct_ids:
            detail = {"user_id": distinct_id in command.user_ids, "identified": identified, "created_at": format_time(command.created_at)}
            self._log(
                LinkKind.IMPORT, command.actor, distinct_id, None, event, LinkOutcome.IMPORTED, None, None,
                target_person_id=person.row.person_id, seq=seq, detail=detail,
            )


def _chosen_groups(command: Split, owned: list[str]) -> list[list[str]]:
    """The operator's groups, checked against the person's ids (its other ids stay together)."""
    if command.groups is not None:
        groups = [list(group) for group in command.groups]
        if any(not group for group in groups):
            raise InvalidRequest("Each group needs at least one distinct id")
    else:
        groups = [[d] for d in (owned if command.distinct_ids is None else command.distinct_ids)]
        if not groups:
            raise InvalidRequest("Choose at least one distinct id to split off")
    named = [d for group in groups for d in group]
    strangers = [d for d in named if d not in owned]
    if strangers:
        raise InvalidRequest(f"Distinct ids {strangers!r} do not belong to person {command.person_id!r}")
    twice = sorted({d for d in named if named.count(d) > 1})
    if twice:
        raise InvalidRequest(f"Distinct ids {twice!r} are in more than one group")
    if len(groups) + (len(named) < len(owned)) < 2:
        raise InvalidRequest(f"Person {command.person_id!r} has nothing to split: it would stay as it is")
    return groups


def _import_uuid(project_id: int, distinct_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"idstitch-import:{project_id}:{distinct_id}"))


def _event_payload(event: Event) -> dict[str, Any]:
    return {
        "uuid": event.uuid,
        "distinct_id": event.distinct_id,
        "event": event.name,
        "timestamp": event.timestamp.isoformat(),
        "properties": event.properties,
        "ops": event.ops.to_json(),
    }
