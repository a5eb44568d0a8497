"""What the rules decide and report: link outcomes, warnings and rejections.

These are values, never exceptions (style.md §2 "Errors"): a refused merge is a decision that
carries a `WarningRecord`; a rejected event is a `Rejection` that the ingest layer turns into a
per-event error and a dead-letter row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class LinkOutcome(StrEnum):
    """The outcome recorded on each entry of the append-only link log (identity-rules.md §1)."""

    CREATED = "created"
    ATTACHED = "attached"
    MERGED = "merged"
    # Row D: both ids already belong to the same person; recorded so the log explains every
    # identify that reached the table, not only the ones that moved something.
    ALREADY_LINKED = "already_linked"
    REFUSED = "refused"
    SPLIT = "split"
    DELETED = "deleted"
    IMPORTED = "imported"
    # An undo entry's own outcome, and the outcome an entry it undid has from then on.
    UNDONE = "undone"


class WarningType(StrEnum):
    """Every kind of ingestion warning; the values are the strings on the wire and in the API."""

    ILLEGAL_DISTINCT_ID = "illegal_distinct_id"
    CANNOT_MERGE_ALREADY_IDENTIFIED = "cannot_merge_already_identified"
    IDENTITY_RULE_LIMIT = "identity_rule_limit"
    MERGE_REQUIRES_SECRET_KEY = "merge_requires_secret_key"
    IDENTITY_ON_PERSONLESS_EVENT = "identity_on_personless_event"
    PROPERTY_TYPE_MISMATCH = "property_type_mismatch"
    PII_OUTSIDE_EMAIL = "pii_outside_email"
    PII_ON_ANONYMOUS = "pii_on_anonymous"
    ATTRIBUTES_DISABLED = "attributes_disabled"
    PROPERTY_LIMIT_EXCEEDED = "property_limit_exceeded"
    INVALID_OPERATION = "invalid_operation"


@dataclass(frozen=True, slots=True)
class WarningRecord:
    """A notice that idstitch refused or altered something (identity-rules.md §1)."""

    type: WarningType
    distinct_ids: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)
    event_uuid: str | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one event could not be accepted; it is dead-lettered, the rest of its batch commits."""

    reason: str

    def __str__(self) -> str:
        return self.reason
