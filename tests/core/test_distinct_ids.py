"""Distinct ids at the door and the illegal-for-identity list (identity-rules.md §2)."""

from __future__ import annotations

import uuid

import pytest

from idstitch.ids import (
    MAX_DISTINCT_ID_LENGTH,
    NO_ADDITIONS,
    PERSON_ID_NAMESPACE,
    IllegalIds,
    is_illegal_for_identity,
    normalize_distinct_id,
    person_id_for,
)
from idstitch.outcomes import Rejection

# -- normalize_distinct_id -------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("anon-1", id="plain"),
        pytest.param(" user-1 ", id="spaces-kept"),
        pytest.param("User-1", id="case-kept"),
        pytest.param("0", id="zero-string"),
        pytest.param("null", id="illegal-for-identity-but-accepted"),
        pytest.param("0191f3a4-7f1c-7e4b-9c1a-2b6f0c3d4e5f", id="uuid"),
        pytest.param("ünïcødé-🙂", id="unicode"),
        pytest.param("x" * MAX_DISTINCT_ID_LENGTH, id="exactly-200-chars"),
    ],
)
def test_normalize_keeps_strings_exactly(raw: str) -> None:
    assert normalize_distinct_id(raw) == raw


@pytest.mark.parametrize(
    "raw, text",
    [
        pytest.param(42, "42", id="int"),
        pytest.param(0, "0", id="zero"),
        pytest.param(-7, "-7", id="negative"),
        pytest.param(12345678901234567890, "12345678901234567890", id="big-int"),
        pytest.param(1.5, "1.5", id="float"),
        pytest.param(1000.0, "1000", id="whole-float"),
        pytest.param(1e16, "10000000000000000", id="whole-float-beyond-exponent-form"),
    ],
)
def test_normalize_turns_numbers_into_decimal_text(raw: float, text: str) -> None:
    assert normalize_distinct_id(raw) == text


@pytest.mark.parametrize(
    "raw, reason",
    [
        pytest.param(True, "distinct id must be a string or a number, got boolean", id="true"),
        pytest.param(False, "distinct id must be a string or a number, got boolean", id="false"),
        pytest.param(None, "distinct id must be a string or a number, got null", id="null"),
        pytest.param({"id": 1}, "distinct id must be a string or a number, got object", id="object"),
        pytest.param(["user-1"], "distinct id must be a string or a number, got array", id="array"),
        pytest.param("", "distinct id is empty", id="empty"),
        pytest.param(
            "x" * 201, "distinct id is 201 characters long; at most 200 are allowed", id="over-200-chars"
        ),
        pytest.param("user\x001", "distinct id contains a NUL character", id="nul"),
        pytest.param(float("nan"), "distinct id must be a finite number", id="nan"),
        pytest.param(float("inf"), "distinct id must be a finite number", id="infinity"),
    ],
)
def test_normalize_rejects_other_types_empty_long_and_nul_ids(raw: object, reason: str) -> None:
    assert normalize_distinct_id(raw) == Rejection(reason)


def test_normalize_refuses_rather_than_truncates_two_ids_sharing_a_prefix() -> None:
    prefix = "p" * 200
    assert [normalize_distinct_id(prefix + "a"), normalize_distinct_id(prefix + "b")] == [
        Rejection("distinct id is 201 characters long; at most 200 are allowed"),
        Rejection("distinct id is 201 characters long; at most 200 are allowed"),
    ]


def test_a_rejection_is_a_value_that_reads_as_its_reason() -> None:
    rejection = normalize_distinct_id(None)
    assert isinstance(rejection, Rejection)
    assert str(rejection) == "distinct id must be a string or a number, got null"


# -- is_illegal_for_identity -----------------------------------------------------------------

GENERIC_IDS = (
    "anonymous", "guest", "distinctid", "distinct_id", "id", "not_authenticated", "email",
    "undefined", "true", "false", "null", "none", "nan", "[object object]",
)


@pytest.mark.parametrize("generic", GENERIC_IDS)
@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param(str, id="as-listed"),
        pytest.param(str.upper, id="upper"),
        pytest.param(str.title, id="title"),
        pytest.param(lambda s: f"'{s}'", id="single-quoted"),
        pytest.param(lambda s: f'"{s.upper()}"', id="double-quoted-upper"),
    ],
)
def test_every_generic_id_is_illegal_in_any_case_and_quoted(generic: str, spelling) -> None:
    assert is_illegal_for_identity(spelling(generic)) is True


@pytest.mark.parametrize(
    "distinct_id",
    [
        pytest.param("0", id="zero"),
        pytest.param("'0'", id="single-quoted-zero"),
        pytest.param('"0"', id="double-quoted-zero"),
        pytest.param("", id="empty"),
        pytest.param(" ", id="space"),
        pytest.param("\t\n ", id="whitespace"),
        pytest.param("''", id="quoted-empty"),
        pytest.param('" "', id="quoted-blank"),
        pytest.param("NaN", id="posthog-NaN"),
        pytest.param("[object Object]", id="javascript-object"),
    ],
)
def test_zero_blank_and_quoted_forms_are_illegal(distinct_id: str) -> None:
    assert is_illegal_for_identity(distinct_id) is True


@pytest.mark.parametrize(
    "distinct_id",
    [
        pytest.param("user-1", id="user-id"),
        pytest.param("00", id="double-zero"),
        pytest.param("0.0", id="zero-float-text"),
        pytest.param(" 0", id="spaced-zero"),
        pytest.param(" guest", id="leading-space-guest"),
        pytest.param("guest ", id="trailing-space-guest"),
        pytest.param("guest-42", id="guest-prefix"),
        pytest.param("ids", id="plural"),
        pytest.param("'guest\"", id="mismatched-quotes"),
        pytest.param("''guest''", id="doubly-quoted"),
        pytest.param("anonymous@example.com", id="email-address"),
        pytest.param("'", id="lone-quote"),
    ],
)
def test_ids_that_only_resemble_a_generic_id_are_legal(distinct_id: str) -> None:
    assert is_illegal_for_identity(distinct_id) is False


PROJECT_ADDITIONS = IllegalIds.from_settings(["test-user", "demo"], [r"^tmp-\d+$", r"(?i)bot:", r"^qa_"])


@pytest.mark.parametrize(
    "distinct_id, illegal",
    [
        pytest.param("test-user", True, id="exact"),
        pytest.param("demo", True, id="exact-second"),
        pytest.param("Test-User", False, id="exact-is-case-sensitive"),
        pytest.param("test-user-2", False, id="exact-not-prefix"),
        pytest.param("tmp-42", True, id="pattern"),
        pytest.param("tmp-42x", False, id="anchored-pattern-must-match-whole-id"),
        pytest.param("my-tmp-42", False, id="anchored-pattern-at-start"),
        pytest.param("qa_abc", True, id="prefix-pattern-is-searched"),
        pytest.param("my-qa_abc", False, id="prefix-pattern-anchored"),
        pytest.param("BOT:crawler", True, id="pattern-with-its-own-flags"),
        pytest.param("web-bot:crawler", True, id="unanchored-pattern-found-anywhere"),
        pytest.param("null", True, id="generic-still-illegal"),
        pytest.param("user-1", False, id="ordinary"),
    ],
)
def test_project_additions_are_exact_values_and_patterns_searched_in_the_id(distinct_id: str, illegal: bool) -> None:
    assert is_illegal_for_identity(distinct_id, PROJECT_ADDITIONS) is illegal


def test_project_additions_apply_only_to_their_project() -> None:
    assert [is_illegal_for_identity("test-user", NO_ADDITIONS), is_illegal_for_identity("tmp-1")] == [False, False]


# -- person ids ------------------------------------------------------------------------------


def test_person_id_is_uuid5_over_project_and_first_distinct_id() -> None:
    assert person_id_for(1, "anon-1") == str(uuid.uuid5(PERSON_ID_NAMESPACE, "1:anon-1"))


def test_person_id_agrees_across_writers_and_differs_by_project_and_id() -> None:
    assert person_id_for(1, "anon-1") == person_id_for(1, "anon-1")
    assert len({person_id_for(1, "anon-1"), person_id_for(2, "anon-1"), person_id_for(1, "anon-2")}) == 3
