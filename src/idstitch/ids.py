"""Distinct ids: normalisation at the door and the illegal-for-identity test (identity-rules.md §2)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from idstitch.outcomes import Rejection
from idstitch.regexes import searches

MAX_DISTINCT_ID_LENGTH = 200

# Union of Heap's and PostHog's generic ids. Matched case-insensitively: PostHog folds some of
# these and not others (`NaN` but not `nan`), and a generic id in any case is still generic.
_GENERIC_IDS = frozenset(
    {
        "anonymous",
        "guest",
        "distinctid",
        "distinct_id",
        "id",
        "not_authenticated",
        "email",
        "undefined",
        "true",
        "false",
        "null",
        "none",
        "nan",
        "[object object]",
    }
)

# PostHog's namespace for person UUIDs, so that ids agree with a PostHog export of the same data.
PERSON_ID_NAMESPACE = uuid.UUID("932979b4-65c3-4424-8467-0b66ec27bc22")


def normalize_distinct_id(raw: object) -> str | Rejection:
    """Turn a distinct id as received into its stored form, or say why the event is rejected.

    Strings are kept exactly (no trimming, no case folding); integers and finite floats become
    their decimal text. PostHog truncates long ids; truncation can join two users who share a
    prefix, so an id over 200 characters is refused instead.
    """
    if isinstance(raw, str):
        text = raw
    elif isinstance(raw, bool) or raw is None:
        return Rejection(f"distinct id must be a string or a number, got {_json_type(raw)}")
    elif isinstance(raw, int):
        text = str(raw)
    elif isinstance(raw, float):
        if raw != raw or raw in (float("inf"), float("-inf")):
            return Rejection("distinct id must be a finite number")
        text = str(int(raw)) if raw.is_integer() else repr(raw)
    else:
        return Rejection(f"distinct id must be a string or a number, got {_json_type(raw)}")
    if not text:
        return Rejection("distinct id is empty")
    if len(text) > MAX_DISTINCT_ID_LENGTH:
        return Rejection(
            f"distinct id is {len(text)} characters long; at most {MAX_DISTINCT_ID_LENGTH} are allowed"
        )
    if "\x00" in text:
        return Rejection("distinct id contains a NUL character")
    return text


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


@dataclass(frozen=True, slots=True)
class IllegalIds:
    """A project's own additions to the illegal-id list: exact values, and regular expressions
    (checked by regexes.check_pattern when saved) searched in the id."""

    exact: frozenset[str] = frozenset()
    patterns: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, exact: list[str], patterns: list[str]) -> IllegalIds:
        return cls(frozenset(exact), tuple(patterns))


NO_ADDITIONS = IllegalIds()


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def is_illegal_for_identity(distinct_id: str, additions: IllegalIds = NO_ADDITIONS) -> bool:
    """True when the id must never be linked nor become a user id (identity-rules.md §2).

    Only the blank test trims: `" guest"` is a legal id, as in PostHog.
    """
    if not distinct_id.strip():
        return True
    bare = _unquote(distinct_id)
    if not bare.strip() or bare == "0" or bare.lower() in _GENERIC_IDS:
        return True
    if distinct_id in additions.exact:
        return True
    # Searched on RE2, in time linear in the id: a pattern never holds the ingest path.
    return any(searches(p, distinct_id) for p in additions.patterns)


def person_id_for(project_id: int, first_distinct_id: str) -> str:
    """Deterministic person id, so two writers creating the same person agree (identity-rules.md §3)."""
    return str(uuid.uuid5(PERSON_ID_NAMESPACE, f"{project_id}:{first_distinct_id}"))


def is_person_id(text: str) -> bool:
    """Whether `text` is a person id as idstitch writes them: a UUID's canonical (lower-case) text."""
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False
