"""Readable holders and warnings for the decision-table tests (identity-rules.md §3)."""

from __future__ import annotations

from idstitch.identity import Holder
from idstitch.outcomes import WarningRecord, WarningType


def anonymous(person_id: str) -> Holder:
    """A person nobody has identified: no user id."""
    return Holder(person_id, is_identified=False, user_id_count=0)


def identified(person_id: str, user_ids: int = 1, *, id_is_user_id: bool = True) -> Holder:
    """An identified person holding `user_ids` user ids; by default the id looked up is one of them."""
    return Holder(person_id, is_identified=True, user_id_count=user_ids, id_is_user_id=id_is_user_id and user_ids > 0)


def cannot_merge(source: str, target: str, event_uuid: str | None = None) -> WarningRecord:
    return WarningRecord(
        WarningType.CANNOT_MERGE_ALREADY_IDENTIFIED,
        (source, target),
        {"source_distinct_id": source, "target_distinct_id": target},
        event_uuid,
    )


def illegal_id(bad: str, other: str, event_uuid: str | None = None) -> WarningRecord:
    return WarningRecord(
        WarningType.ILLEGAL_DISTINCT_ID,
        (bad, other),
        {"illegal_distinct_id": bad, "other_distinct_id": other},
        event_uuid,
    )
