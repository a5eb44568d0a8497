"""How a person is shown (identity-rules.md §5)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

_NAME_KEYS = ("highlightDisplayName", "name", "email")


def display_name(person_id: str, properties: Mapping[str, Any], user_ids: Iterable[str]) -> str:
    """Highlight's display name, else `name`, else `email`, else a user id, else Heap's `User <n>`."""
    for key in _NAME_KEYS:
        value = properties.get(key)
        if isinstance(value, str) and value.strip():
            return value
    for user_id in sorted(user_ids):
        return user_id
    return f"User {short_number(person_id)}"


def short_number(person_id: str) -> int:
    """A stable number from 0 to 999,999 for an anonymous person's name."""
    return int(uuid.UUID(person_id).hex[:8], 16) % 1_000_000


def avatar_url(properties: Mapping[str, Any]) -> str | None:
    """The `avatar` attribute's URL, used as it is (never fetched or copied)."""
    value = properties.get("avatar")
    return value if isinstance(value, str) and value else None
