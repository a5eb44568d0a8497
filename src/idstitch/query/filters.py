"""The filter document: which persons, sessions or events a query keeps.

A filter is JSON. Each node is an object with exactly one of these keys:

    {"attribute": "plan", "op": "equals", "value": "pro"}         a person attribute
    {"property": "$browser", "op": "in", "value": ["Chrome"]}     an event property
    {"did": "Purchase", "min_count": 2, "after": "-30d",          the person did an event at least
     "before": "2026-12-01", "where": <property filter>}          min_count times (in a time range)
    {"segment": 3}                                                a saved segment, by id
    {"and": [filter, ...]}   {"or": [filter, ...]}   {"not": filter}

Operators (`op`) and their `value`:

    equals, not_equals          a string, number, boolean or null; types must match ("1" is not 1)
    contains, not_contains      a string: case-insensitive substring of a string value; or a scalar:
                                an element of a list value
    regex, not_regex            a regular expression in Python's syntax, searched in string values
                                (idstitch/regexes.py: the same language as illegal-id patterns)
    gt, gte, lt, lte            a number, or an ISO-8601 / relative time compared as a time
    before, after               an ISO-8601 or relative time ("-7d", "last 7 days", "2026-11-01")
    in, not_in                  a non-empty list of scalars
    is_set, is_not_set          no value; null counts as not set

The negative operators are the negation of the positive ones, so `not_equals` also keeps persons
without the attribute (as PostHog's "is not" does). Where a condition applies:

* `attribute` is about the person of the row: the person itself, the person of an event (resolved
  through the distinct-id mapping now, not at event time), or the person a session ended as.
* `property` is about an event: the event itself; for sessions, any event of the session. Persons
  have no properties of their own: ask `{"did": ..., "where": {"property": ...}}` instead.
* `did` is about the person of the row, across all its distinct ids.

These models only check the document; `compiler.py` turns it into SQL.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from idstitch.query.moments import parse_moment
from idstitch.regexes import check_pattern

Op = Literal[
    "equals", "not_equals", "contains", "not_contains", "regex", "not_regex",
    "gt", "gte", "lt", "lte", "before", "after", "in", "not_in", "is_set", "is_not_set",
]
NEGATIVE_OPS = {"not_equals": "equals", "not_contains": "contains", "not_regex": "regex", "not_in": "in", "is_not_set": "is_set"}
MAX_KEY_LENGTH = 200
MAX_LIST = 1000
MAX_NODES = 200
MAX_DEPTH = 16

_STRICT = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# SQLite integers are 64-bit: a bigger one cannot be bound as a parameter (OverflowError).
SQLITE_MAX_INT = 2**63 - 1


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, bool)) or _is_number(value)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -SQLITE_MAX_INT - 1 <= value <= SQLITE_MAX_INT
    return isinstance(value, float) and math.isfinite(value)


def check_value(op: str, value: Any) -> str | None:
    """Why `value` does not suit `op`, or None."""
    positive = NEGATIVE_OPS.get(op, op)
    if positive == "is_set":
        return None if value is None else f"op {op!r} takes no value, got {value!r}"
    if positive == "equals":
        return None if _is_scalar(value) else f"op {op!r} needs a string, number, boolean or null, got {value!r}"
    if positive == "contains":
        if value is None or not _is_scalar(value):
            return f"op {op!r} needs a string (substring) or a scalar (list element), got {value!r}"
        return None
    if positive == "regex":
        if not isinstance(value, str):
            return f"op {op!r} needs a pattern string, got {value!r}"
        return check_pattern(value)
    if positive == "in":
        if not isinstance(value, list) or not value:
            return f"op {op!r} needs a non-empty list, got {value!r}"
        if len(value) > MAX_LIST:
            return f"op {op!r} takes at most {MAX_LIST} values, got {len(value)}"
        wrong = [v for v in value if not _is_scalar(v)]
        return f"op {op!r} needs a list of scalars; {wrong[0]!r} is not one" if wrong else None
    if op in ("gt", "gte", "lt", "lte"):
        if _is_number(value):
            return None
        try:
            parse_moment(value, _NOW_FOR_CHECKS)
        except ValueError:
            return f"op {op!r} needs a number or a time (ISO-8601 or relative like -7d), got {value!r}"
        return None
    if op in ("before", "after"):
        try:
            parse_moment(value, _NOW_FOR_CHECKS)
        except ValueError as error:
            return f"op {op!r}: {error}"
        return None
    return f"unknown op {op!r}"  # pragma: no cover - Op is a closed Literal


# Checking a relative time's syntax needs some "now"; the compiler resolves it against the real one.
_NOW_FOR_CHECKS = datetime(2000, 1, 1, tzinfo=timezone.utc)


class _Comparison(BaseModel):
    model_config = _STRICT
    op: Op = Field(description="How to compare; see the list in the filter description.")
    value: Any = Field(None, validate_default=True, description="What to compare with; absent for is_set / is_not_set.")

    @field_validator("value")
    @classmethod
    def _value_suits_op(cls, value: Any, info: ValidationInfo) -> Any:
        op = info.data.get("op")
        problem = check_value(op, value) if op is not None else None
        if problem:
            raise ValueError(problem)
        return value


def check_key(kind: str, key: str) -> str:
    if '"' in key or "\\" in key or any(ord(ch) < 32 for ch in key):
        raise ValueError(f"{kind} names with a double quote, a backslash or a control character are not supported: {key!r}")
    return key


class AttributeCondition(_Comparison):
    """A person attribute compared with a value."""

    attribute: str = Field(min_length=1, max_length=MAX_KEY_LENGTH, description="The attribute key, e.g. `plan`.")


class PropertyCondition(_Comparison):
    """An event property compared with a value."""

    property: str = Field(min_length=1, max_length=MAX_KEY_LENGTH, description="The property key, e.g. `$browser`.")

    @field_validator("property")
    @classmethod
    def _addressable(cls, key: str) -> str:
        return check_key("property", key)


class DidCondition(BaseModel):
    """The person did an event at least `min_count` times, optionally in a time range and with
    event properties matching `where` (property conditions only)."""

    model_config = _STRICT
    did: str = Field(min_length=1, max_length=200, description="The event name, e.g. `Purchase`.")
    min_count: int = Field(1, ge=1, le=1_000_000)
    after: str | None = Field(None, description="Only events at or after this time (ISO-8601 or relative).")
    before: str | None = Field(None, description="Only events before this time (ISO-8601 or relative).")
    where: Filter | None = Field(None, description="A filter of property conditions on those events.")

    @field_validator("after", "before")
    @classmethod
    def _moment(cls, value: str | None) -> str | None:
        if value is not None:
            parse_moment(value, _NOW_FOR_CHECKS)
        return value

    @field_validator("where")
    @classmethod
    def _properties_only(cls, where: Filter | None) -> Filter | None:
        offending = _first_non_property(where) if where is not None else None
        if offending:
            raise ValueError(f"only property conditions (and and/or/not of them) apply to events, found {offending!r}")
        return where


class SegmentCondition(BaseModel):
    """The rows a saved segment keeps."""

    model_config = _STRICT
    segment: int = Field(ge=1, le=SQLITE_MAX_INT, description="A saved segment's id (GET /api/segments).")


class AllOf(BaseModel):
    model_config = _STRICT
    all_of: list[Filter] = Field(alias="and", min_length=1, max_length=MAX_NODES)


class AnyOf(BaseModel):
    model_config = _STRICT
    any_of: list[Filter] = Field(alias="or", min_length=1, max_length=MAX_NODES)


class NoneOf(BaseModel):
    model_config = _STRICT
    negated: Filter = Field(alias="not")


# The tags contain a space so that error paths can drop them: no field is named like that.
_TAGS = {
    "attribute": "attribute condition", "property": "property condition", "did": "did condition",
    "segment": "segment condition", "and": "and group", "or": "or group", "not": "not group",
}
_CLASS_TAGS: dict[type, str] = {
    AttributeCondition: "attribute condition", PropertyCondition: "property condition", DidCondition: "did condition",
    SegmentCondition: "segment condition", AllOf: "and group", AnyOf: "or group", NoneOf: "not group",
}
FILTER_KEYS = tuple(_TAGS)


def _kind(value: Any) -> str | None:
    if isinstance(value, dict):
        found = [_TAGS[key] for key in _TAGS if key in value]
        return found[0] if len(found) == 1 else None
    return _CLASS_TAGS.get(type(value))


Filter = Annotated[
    Union[
        Annotated[AttributeCondition, Tag("attribute condition")],
        Annotated[PropertyCondition, Tag("property condition")],
        Annotated[DidCondition, Tag("did condition")],
        Annotated[SegmentCondition, Tag("segment condition")],
        Annotated[AllOf, Tag("and group")],
        Annotated[AnyOf, Tag("or group")],
        Annotated[NoneOf, Tag("not group")],
    ],
    Discriminator(
        _kind,
        custom_error_type="invalid_filter",
        custom_error_message="a filter is an object with exactly one of the keys " + ", ".join(FILTER_KEYS),
    ),
]

for _model in (DidCondition, AllOf, AnyOf, NoneOf):
    _model.model_rebuild()

FilterNode = AttributeCondition | PropertyCondition | DidCondition | SegmentCondition | AllOf | AnyOf | NoneOf
filter_adapter: TypeAdapter[Any] = TypeAdapter(Filter)


def _first_non_property(node: FilterNode) -> str | None:
    if isinstance(node, PropertyCondition):
        return None
    if isinstance(node, (AllOf, AnyOf)):
        for child in node.all_of if isinstance(node, AllOf) else node.any_of:
            found = _first_non_property(child)
            if found:
                return found
        return None
    if isinstance(node, NoneOf):
        return _first_non_property(node.negated)
    return next(key for key in FILTER_KEYS if _TAGS[key] == _CLASS_TAGS[type(node)])


class FilterError(ValueError):
    """A filter document is invalid; `problems` are (path, reason) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {reason}" for path, reason in problems))


def error_path(loc: tuple[Any, ...] | list[Any], root: str = "") -> str:
    """`("filter", "and", 1, "attribute condition", "op")` -> `filter.and[1].op`."""
    path = root
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(part, str) and part in _CLASS_TAGS.values():
            continue
        elif isinstance(part, str) and (part.startswith("function-") or part.startswith("tagged-union")):
            continue
        else:
            path += f".{part}" if path else str(part)
    return path or "$"


def error_reason(error: Mapping[str, Any]) -> str:
    message = str(error.get("msg", "invalid"))
    return message.removeprefix("Value error, ")


def problems_of(error: ValidationError, root: str = "") -> list[tuple[str, str]]:
    return [(error_path(e["loc"], root), error_reason(e)) for e in error.errors()]


def parse_filter(document: Any, root: str = "filter") -> FilterNode:
    """Validate a filter document (as decoded JSON); FilterError with paths and reasons if wrong."""
    try:
        return filter_adapter.validate_python(document)
    except ValidationError as error:
        raise FilterError(problems_of(error, root)) from None


def dump_filter(node: FilterNode) -> dict[str, Any]:
    """The document form of a validated filter (what a saved segment stores)."""
    return filter_adapter.dump_python(node, mode="json", by_alias=True, exclude_none=True)


def count_nodes(node: FilterNode) -> int:
    if isinstance(node, AllOf):
        return 1 + sum(count_nodes(child) for child in node.all_of)
    if isinstance(node, AnyOf):
        return 1 + sum(count_nodes(child) for child in node.any_of)
    if isinstance(node, NoneOf):
        return 1 + count_nodes(node.negated)
    if isinstance(node, DidCondition) and node.where is not None:
        return 1 + count_nodes(node.where)
    return 1
