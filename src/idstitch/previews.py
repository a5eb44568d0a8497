"""What an identity change did, or would do: the persons before and after, compared.

Every operator action (identify, alias, merge, split, undo, a rule change) can be previewed: it
runs in a transaction that is then rolled back, and this module describes the difference
between the persons that held the ids before and after (server/previews.py captures them).
Pure: persons are the API's person dicts (`id`, `distinct_ids`, `user_ids`, `properties`, ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Person = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class IdMoved:
    distinct_id: str
    from_person_id: str | None
    to_person_id: str | None


@dataclass(frozen=True, slots=True)
class AttributeChanged:
    """A key of a person after the change that differs from the key on the person that held the
    same ids before (the one it keeps the id of, else the one its first id came from)."""

    person_id: str
    key: str
    before: Any
    after: Any


@dataclass(frozen=True, slots=True)
class Changes:
    persons_before: Sequence[Person]
    persons_after: Sequence[Person]
    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    moved_ids: list[IdMoved] = field(default_factory=list)
    attribute_changes: list[AttributeChanged] = field(default_factory=list)
    identified_changes: list[tuple[str, bool]] = field(default_factory=list)


_MISSING = object()


def compare(before: Sequence[Person], after: Sequence[Person]) -> Changes:
    old = {p["id"]: p for p in before}
    new = {p["id"]: p for p in after}
    old_owner = {d: p["id"] for p in before for d in p["distinct_ids"]}
    new_owner = {d: p["id"] for p in after for d in p["distinct_ids"]}
    moved = [
        IdMoved(d, old_owner.get(d), new_owner.get(d))
        for d in sorted(old_owner.keys() | new_owner.keys())
        if old_owner.get(d) != new_owner.get(d)
    ]
    attributes: list[AttributeChanged] = []
    identified: list[tuple[str, bool]] = []
    for person_id, person in new.items():
        earlier = old.get(person_id) or _first_owner(person, old, old_owner)
        was = earlier["properties"] if earlier else {}
        now = person["properties"]
        for key in sorted(was.keys() | now.keys()):
            if was.get(key, _MISSING) != now.get(key, _MISSING):
                attributes.append(AttributeChanged(person_id, key, was.get(key), now.get(key)))
        if earlier is None or bool(earlier["is_identified"]) != bool(person["is_identified"]):
            identified.append((person_id, bool(person["is_identified"])))
    return Changes(
        persons_before=before,
        persons_after=after,
        created=sorted(new.keys() - old.keys()),
        deleted=sorted(old.keys() - new.keys()),
        moved_ids=moved,
        attribute_changes=attributes,
        identified_changes=identified,
    )


def _first_owner(person: Person, old: Mapping[str, Person], old_owner: Mapping[str, str]) -> Person | None:
    for distinct_id in person["distinct_ids"]:
        if distinct_id in old_owner:
            return old[old_owner[distinct_id]]
    return None
