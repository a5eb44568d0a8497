"""How a person is shown (identity-rules.md §5)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from idstitch.display import avatar_url, display_name, short_number

PERSON_ID = "cfa956a0-5af4-51c6-9ef5-cb3c80e09b69"


@pytest.mark.parametrize(
    "properties, user_ids, name",
    [
        pytest.param(
            {"highlightDisplayName": "Ada L.", "name": "Ada", "email": "ada@example.com"}, ["user-1"], "Ada L.",
            id="highlight-display-name",
        ),
        pytest.param({"name": "Ada", "email": "ada@example.com"}, ["user-1"], "Ada", id="name"),
        pytest.param({"email": "ada@example.com"}, ["user-1"], "ada@example.com", id="email"),
        pytest.param({"name": "  ", "email": "ada@example.com"}, [], "ada@example.com", id="blank-name-skipped"),
        pytest.param({"name": 42}, ["user-1"], "user-1", id="non-string-name-skipped"),
        pytest.param({}, ["user-2", "user-1"], "user-1", id="user-id-stable-choice"),
        pytest.param({}, [], f"User {int(uuid.UUID(PERSON_ID).hex[:8], 16) % 1_000_000}", id="anonymous"),
    ],
)
def test_display_name_prefers_highlight_name_then_name_email_user_id(
    properties: dict[str, Any], user_ids: list[str], name: str
) -> None:
    assert display_name(PERSON_ID, properties, user_ids) == name


def test_anonymous_number_is_stable_and_short() -> None:
    assert short_number(PERSON_ID) == short_number(PERSON_ID.upper())
    assert 0 <= short_number(PERSON_ID) < 1_000_000


@pytest.mark.parametrize(
    "properties, url",
    [
        pytest.param({"avatar": "https://cdn.example/ada.png"}, "https://cdn.example/ada.png", id="as-is"),
        pytest.param({"avatar": ""}, None, id="empty"),
        pytest.param({"avatar": {"url": "x"}}, None, id="not-a-string"),
        pytest.param({}, None, id="absent"),
    ],
)
def test_avatar_is_the_attributes_url_as_is(properties: dict[str, Any], url: str | None) -> None:
    assert avatar_url(properties) == url
