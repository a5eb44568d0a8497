"""One request's warnings as the rows to keep: repeats counted once, their number capped.

A warning is recorded for each refusal, so one request that repeats a refused write thousands of
times would otherwise store thousands of rows (one 1.4 MB body stored 90,000). The operator needs
what was refused, how often, and examples to look at; this keeps exactly that:

- warnings of one type with the same details (say, `pii_outside_email` for key `email2`) become
  one, with `count`, the first `EXAMPLE_IDS` distinct ids and the first `EXAMPLE_EVENTS` event
  uuids (a warning that occurred once stays as it was);
- past `MAX_ROWS` such warnings, the rest of each type become one warning with `count`,
  `kinds` (how many different details it folds) and the first `EXAMPLE_DETAILS` of them.

No I/O: the engine calls it before it writes the warnings (engine.py `Batch.flush`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from idstitch.outcomes import WarningRecord, WarningType

MAX_ROWS = 50
EXAMPLE_IDS = 20
EXAMPLE_EVENTS = 5
EXAMPLE_DETAILS = 5


@dataclass(slots=True)
class _Group:
    """Warnings of one type with the same details, or (folded) the groups of a type past MAX_ROWS."""

    type: WarningType
    details: dict[str, Any]
    first: WarningRecord | None = None
    count: int = 0
    distinct_ids: list[str] = field(default_factory=list)
    event_uuids: list[str] = field(default_factory=list)
    kinds: int = 1
    examples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, warning: WarningRecord) -> None:
        self.count += 1
        self._example(warning.distinct_ids, [warning.event_uuid] if warning.event_uuid else [])

    def fold(self, other: _Group) -> None:
        """Take in another group of the same type (past MAX_ROWS)."""
        self.kinds += 1
        self.count += other.count
        if len(self.examples) < EXAMPLE_DETAILS:
            self.examples.append(other.details)
        self._example(other.distinct_ids, other.event_uuids)

    def _example(self, distinct_ids: Iterable[str], event_uuids: Iterable[str]) -> None:
        for kept, given, limit in ((self.distinct_ids, distinct_ids, EXAMPLE_IDS), (self.event_uuids, event_uuids, EXAMPLE_EVENTS)):
            for value in given:
                if len(kept) < limit and value not in kept:
                    kept.append(value)

    def record(self, folded: bool) -> WarningRecord:
        if self.count == 1 and self.first is not None:
            return self.first
        first_uuid = self.event_uuids[0] if self.event_uuids else None
        if folded:
            details = {"count": self.count, "kinds": self.kinds, "examples": self.examples, "event_uuids": self.event_uuids}
        else:
            details = {**self.details, "count": self.count, "event_uuids": self.event_uuids}
        return WarningRecord(self.type, tuple(self.distinct_ids), details, first_uuid)


def digest_warnings(warnings: list[WarningRecord]) -> list[WarningRecord]:
    """The warnings to store for one request, in the order they first occurred."""
    groups: dict[tuple[WarningType, str], _Group] = {}
    for warning in warnings:
        key = (warning.type, json.dumps(warning.details, sort_keys=True, default=str))
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group(warning.type, warning.details, warning)
        group.add(warning)
    kept = list(groups.values())
    rest: dict[WarningType, _Group] = {}
    for group in kept[MAX_ROWS:]:
        folded = rest.get(group.type)
        if folded is None:
            folded = rest[group.type] = _Group(group.type, {}, kinds=0)
        folded.fold(group)
    return [group.record(folded=False) for group in kept[:MAX_ROWS]] + [group.record(folded=True) for group in rest.values()]
