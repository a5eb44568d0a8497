"""What a change of the project's identity rules would have done to stored history.

Each group of joined ids that an entry of the link log named in the last days is replayed twice
(replay.py): under the settings of now and under the proposed ones. Where the persons differ —
other ids together, other attributes, entries decided otherwise — the group is affected; the
answer counts them and shows a few. Nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from idstitch.history import IdentityLog, steps, undone_links
from idstitch.replay import MemoryPersons, replay
from idstitch.settings import ProjectSettings

# Groups replayed at most, and examples shown, per preview (the writer is held meanwhile).
MAX_GROUPS = 500
MAX_EXAMPLES = 10


class RuleHistory(IdentityLog, Protocol):
    def ids_linked_since(self, since: datetime) -> list[str]: ...


@dataclass(slots=True)
class RulePreview:
    since: datetime
    groups: int = 0
    truncated: bool = False
    persons_affected: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "groups_replayed": self.groups,
            "truncated": self.truncated,
            "persons_affected": self.persons_affected,
            "examples": self.examples,
        }


def preview_rules(
    store: RuleHistory, project_id: int, now: ProjectSettings, proposed: ProjectSettings, since: datetime
) -> RulePreview:
    preview = RulePreview(since)
    seen: set[str] = set()
    for seed in store.ids_linked_since(since):
        if seed in seen:
            continue
        if preview.groups >= MAX_GROUPS:
            preview.truncated = True
            break
        history = store.identity_history([seed])
        seen |= history.distinct_ids
        preview.groups += 1
        undone = undone_links(history.links)
        before, _ = replay(project_id, now, steps(history, undone))
        after, _ = replay(project_id, proposed, steps(history, undone))
        changed = _persons(before) - _persons(after)
        if not changed and before.decided == after.decided:
            continue
        preview.persons_affected += len(changed)
        if len(preview.examples) < MAX_EXAMPLES:
            preview.examples.append(
                {
                    "before": _groups(before),
                    "after": _groups(after),
                    "links_changed": [
                        {"id": i, "before": _words(before, i), "after": _words(after, i)}
                        for i in sorted(before.decided.keys() | after.decided.keys())
                        if before.decided.get(i) != after.decided.get(i)
                    ],
                    "warnings": sorted({w.type.value for w in after.warnings} - {w.type.value for w in before.warnings}),
                }
            )
    return preview


def _persons(state: MemoryPersons) -> set[tuple[frozenset[str], str]]:
    """Each person as its ids and its attributes (order-free), for comparing two replays."""
    ids: dict[str, set[str]] = {}
    for distinct_id, person_id in state.owner.items():
        ids.setdefault(person_id, set()).add(distinct_id)
    return {
        (frozenset(held), repr(sorted(state.attributes[p].values().items()) if p in state.attributes else []))
        for p, held in ids.items()
    }


def _groups(state: MemoryPersons) -> list[list[str]]:
    ids: dict[str, list[str]] = {}
    for distinct_id, person_id in state.owner.items():
        ids.setdefault(person_id, []).append(distinct_id)
    return sorted(sorted(group) for group in ids.values())


def _words(state: MemoryPersons, link_id: int) -> str | None:
    decided = state.decided.get(link_id)
    if decided is None:
        return None
    return decided.outcome if decided.reason is None else f"{decided.outcome}:{decided.reason}"

