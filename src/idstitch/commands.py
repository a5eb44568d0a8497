"""What the engine accepts. Wire formats turn bytes into these; the engine applies them in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from idstitch.attributes import NO_OPS, AttributeOps


@dataclass(frozen=True, slots=True)
class Event:
    """An event as stored: it keeps its distinct id; its person is resolved through the mapping."""

    uuid: str
    distinct_id: str
    name: str
    timestamp: datetime
    properties: dict[str, Any] = field(default_factory=dict)
    ops: AttributeOps = NO_OPS
    # False when the sender asked for no person processing ($process_person_profile: false).
    process_person: bool = True
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asked: the public ingest path, or an admin holding a secret key (by its key id)."""

    kind: str  # "ingest" | "admin"
    key_id: int | None = None

    def __str__(self) -> str:
        return self.kind if self.key_id is None else f"{self.kind}:{self.key_id}"


INGEST = Actor("ingest")


@dataclass(frozen=True, slots=True)
class Track:
    """An ordinary event, possibly carrying attribute operations."""

    event: Event


@dataclass(frozen=True, slots=True)
class Identify:
    """`identify(user_id, attributes)`: the event's distinct id is the user id.

    `user_id` None is Hotjar's `hj('identify', null, attrs)`: attributes for the visitor only.
    """

    event: Event
    user_id: str | None
    anonymous_id: str | None = None


@dataclass(frozen=True, slots=True)
class Alias:
    """Join `source` to `target` (PostHog `$create_alias`, Segment `alias`)."""

    event: Event
    target: str
    source: str


@dataclass(frozen=True, slots=True)
class Merge:
    """Merge the person of `source` into the person of `target`, identified or not (admin only).

    Over the ingest path (`$merge_dangerously`) it carries its event and is refused unless the
    project allows it.
    """

    target: str
    source: str
    actor: Actor
    event: Event | None = None


@dataclass(frozen=True, slots=True)
class Split:
    """Give ids persons of their own again: each chosen id alone (all when None), or, with
    `groups`, each group one person. The person's ids in no group stay together, as one more.

    `person_id` None is a split replayed from the link log: each person then holding grouped
    ids splits along the groups.
    """

    person_id: str | None
    distinct_ids: tuple[str, ...] | None
    actor: Actor
    groups: tuple[tuple[str, ...], ...] | None = None


@dataclass(frozen=True, slots=True)
class ImportPerson:
    """A person brought over from another tool: its ids, properties and flags."""

    distinct_ids: tuple[str, ...]
    user_ids: tuple[str, ...]
    properties: dict[str, Any]
    is_identified: bool
    created_at: datetime
    actor: Actor


Command = Track | Identify | Alias | Merge | Split | ImportPerson
EventCommand = Track | Identify | Alias | Merge
