"""What the UI's plain HTML forms mean: condition rows into a filter document (and back), the
settings and rules forms into the changes `PATCH /api/project/settings` takes, and the split
form into groups of ids. No I/O here.

A condition row is four fields: `kind` (attribute, property, did, not_did), `key`, `op`, `value`.
Values are typed as text, so the text is read as JSON when it is a JSON scalar (`42`, `true`,
`null`, `"42"` in quotes for the text) and as a plain string otherwise; `in` / `not_in` take a
comma-separated list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from idstitch.errors import InvalidSetting
from idstitch.query.filters import FilterError, FilterNode, parse_filter
from idstitch.server.json_input import JsonInputError, decode_json
from idstitch.settings import ProjectSettings

MAX_FORM_BYTES = 256 * 1024
MAX_ROWS = 20
KINDS = {
    "attribute": "Attribute",
    "property": "Event property",
    "did": "Did event",
    "not_did": "Never did event",
}
OPS = {
    "equals": "equals", "not_equals": "does not equal", "contains": "contains", "not_contains": "does not contain",
    "in": "is one of", "not_in": "is not one of", "is_set": "is set", "is_not_set": "is not set",
    "gt": ">", "gte": "≥", "lt": "<", "lte": "≤", "after": "is after", "before": "is before",
    "regex": "matches regex", "not_regex": "does not match regex",
}
_NO_VALUE = {"is_set", "is_not_set"}
_LISTS = {"in", "not_in"}


class FormError(ValueError):
    """A form field cannot be read; the message names the field and the value."""


class Form:
    """A urlencoded body (or query string) read once: the last value of each name, or all of them."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs
        self._last = dict(pairs)

    @classmethod
    def parse(cls, body: bytes) -> Form:
        if len(body) > MAX_FORM_BYTES:
            raise FormError(f"the form is larger than {MAX_FORM_BYTES} bytes")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise FormError("the form is not UTF-8") from None
        return cls(parse_qsl(text, keep_blank_values=True, max_num_fields=2000))

    def get(self, name: str, default: str = "") -> str:
        return self._last.get(name, default)

    def has(self, name: str) -> bool:
        return name in self._last

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.pairs if k == name]


@dataclass(frozen=True, slots=True)
class Row:
    kind: str = "attribute"
    key: str = ""
    op: str = "equals"
    value: str = ""


def read_value(text: str) -> Any:
    """`42` → 42, `true` → True, `null` → None, `"42"` → "42", anything else as the text itself."""
    stripped = text.strip()
    if not stripped:
        return ""
    try:
        value = decode_json(stripped)
    except JsonInputError:
        return text
    return value if value is None or isinstance(value, (str, int, float, bool)) else text


def show_value(value: Any) -> str:
    """The inverse of read_value, for putting a filter back into the form."""
    if isinstance(value, list):
        return ", ".join(show_value(v) for v in value)
    if isinstance(value, str):
        return msgspec.json.encode(value).decode() if read_value(value) != value else value
    return msgspec.json.encode(value).decode()


def rows_from(form: Mapping[str, str] | Form, count: int | None = None) -> list[Row]:
    """The condition rows `kind_<i>`, `key_<i>`, `op_<i>`, `value_<i>` of a form (blank ones too)."""
    get = form.get
    rows = []
    for i in range(count if count is not None else MAX_ROWS):
        if count is None and not any(get(f"{field}_{i}", "") for field in ("key", "kind")):
            continue
        rows.append(Row(get(f"kind_{i}", "attribute") or "attribute", get(f"key_{i}", "").strip(),
                        get(f"op_{i}", "equals") or "equals", get(f"value_{i}", "")))
    return rows


def condition(row: Row, index: int) -> dict[str, Any]:
    """One row as a filter node document; FormError naming the row if it cannot be one."""
    where = f"condition {index + 1}"
    if row.kind in ("did", "not_did"):
        node: dict[str, Any] = {"did": row.key}
        if row.kind == "did" and row.value.strip():
            try:
                node["min_count"] = int(row.value.strip())
            except ValueError:
                raise FormError(f"{where}: the number of times must be a whole number, got {row.value!r}") from None
        return {"not": node} if row.kind == "not_did" else node
    if row.kind not in ("attribute", "property"):
        raise FormError(f"{where}: unknown kind {row.kind!r}")
    if row.op not in OPS:
        raise FormError(f"{where}: unknown operator {row.op!r}")
    node = {row.kind: row.key, "op": row.op}
    if row.op in _LISTS:
        node["value"] = [read_value(part.strip()) for part in row.value.split(",") if part.strip()]
    elif row.op not in _NO_VALUE:
        node["value"] = read_value(row.value)
    return node


def filter_document(rows: list[Row], match: str) -> dict[str, Any] | None:
    """The rows (blank keys skipped) joined by `and` (match=all) or `or` (match=any)."""
    nodes = [condition(row, i) for i, row in enumerate(rows) if row.key]
    if not nodes:
        return None
    if len(nodes) == 1:
        return nodes[0]
    return {"or" if match == "any" else "and": nodes}


def rows_of(document: Any) -> tuple[list[Row], str] | None:
    """Rows and match mode that build `document` again, or None when the form cannot show it
    (nested groups, time ranges on `did`, saved segments inside)."""
    if document is None:
        return [], "all"
    match = "all"
    nodes = [document]
    if isinstance(document, dict) and len(document) == 1 and ("and" in document or "or" in document):
        match = "all" if "and" in document else "any"
        nodes = document.get("and") or document.get("or") or []
    rows = []
    for node in nodes:
        row = _row_of(node)
        if row is None:
            return None
        rows.append(row)
    return rows, match


def _row_of(node: Any) -> Row | None:
    if not isinstance(node, dict):
        return None
    if set(node) == {"not"} and isinstance(node["not"], dict) and set(node["not"]) == {"did"}:
        return Row("not_did", node["not"]["did"], "equals", "")
    if "did" in node and set(node) <= {"did", "min_count"}:
        count = node.get("min_count", 1)
        return Row("did", node["did"], "equals", "" if count == 1 else str(count))
    for kind in ("attribute", "property"):
        if kind in node and set(node) <= {kind, "op", "value"}:
            op = node.get("op", "equals")
            return Row(kind, node[kind], op, "" if op in _NO_VALUE else show_value(node.get("value")))
    return None


def parse_filter_text(text: str) -> tuple[dict[str, Any] | None, FilterNode | None]:
    """A filter typed as JSON: (document, validated node); FilterError with paths if invalid."""
    if not text.strip():
        return None, None
    try:
        document = decode_json(text)
    except JsonInputError as error:
        raise FilterError([("filter", str(error))]) from None
    return document, parse_filter(document)


def encode(document: Any) -> str:
    return msgspec.json.encode(document).decode()


def pretty(document: Any) -> str:
    return msgspec.json.format(msgspec.json.encode(document), indent=2).decode()


# -- settings --------------------------------------------------------------------------------

_LIMITS = ("max_keys_per_person", "max_key_length", "max_string_length", "max_properties_bytes")
PRIVACY_ACKNOWLEDGEMENT = (
    "I confirm that collecting these attributes complies with my privacy policy, and that I will not"
    " send sensitive data (such as health, financial or government-issued identifiers) as attributes."
)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _whole(name: str, text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise FormError(f"{name}: expected a whole number, got {text!r}") from None


def _optional_whole(name: str, text: str) -> int | None:
    return None if not text.strip() else _whole(name, text)


def _text(value: int | None) -> str:
    return "" if value is None else str(value)


def settings_changes(form: Form, current: ProjectSettings) -> dict[str, Any]:
    """The settings the form changes (only those that differ from `current`), as PATCH takes them.

    Turning attributes on needs the privacy acknowledgement (Hotjar asks the same before user
    attributes are collected); FormError says so when it is missing.
    """
    wanted: dict[str, Any] = {
        "person_profiles": form.get("person_profiles", current.person_profiles),
        "identify_without_anonymous_id": form.get("identify_without_anonymous_id", current.identify_without_anonymous_id),
        "attributes_enabled": form.has("attributes_enabled"),
        "pii_guard": form.has("pii_guard"),
        "allow_merge_over_ingest": form.has("allow_merge_over_ingest"),
        "max_user_ids": _optional_whole("max_user_ids", form.get("max_user_ids")),
        "illegal_ids": _lines(form.get("illegal_ids")),
        "illegal_id_patterns": _lines(form.get("illegal_id_patterns")),
        "property_types": _property_types(form.get("property_types")),
        # Kept as it is when the form has no such field: emptied, it would keep every event from now on.
        "events_retention_days": _optional_whole(
            "events_retention_days", form.get("events_retention_days", _text(current.events_retention_days))
        ),
    }
    for name in _LIMITS:
        wanted[name] = _whole(name, form.get(name, str(getattr(current, name))))
    if wanted["attributes_enabled"] and not current.attributes_enabled and not form.has("privacy_acknowledged"):
        raise FormError("To turn attributes on, tick the privacy confirmation below the switch.")
    before = current.to_json()
    return {name: value for name, value in wanted.items() if before.get(name) != value}


def _property_types(text: str) -> dict[str, str]:
    declared: dict[str, str] = {}
    for line in _lines(text):
        key, sep, kind = line.rpartition(":")
        if not sep or not key.strip():
            raise FormError(f"property_types: write one `key: type` per line, got {line!r}")
        declared[key.strip()] = kind.strip()
    return declared


def property_types_text(types: Mapping[str, str]) -> str:
    return "\n".join(f"{key}: {kind}" for key, kind in types.items())


# -- identity rules, split groups ------------------------------------------------------------

MAX_DAYS = 3650
SPLIT_GROUPS = {"1": "Group 1", "2": "Group 2", "3": "Group 3", "alone": "Alone"}


def _rules_json(name: str, text: str) -> Any:
    if not text.strip():
        return {}
    try:
        return decode_json(text)
    except JsonInputError as error:
        raise FormError(f"{name}: not valid JSON ({error})") from None


_RULE_FIELDS = {
    "identity_rules": _rules_json,
    "max_user_ids": _optional_whole,
    "illegal_ids": lambda name, text: _lines(text),
    "illegal_id_patterns": lambda name, text: _lines(text),
}


def rules_changes(form: Form, current: ProjectSettings) -> tuple[dict[str, Any], dict[str, str]]:
    """The identity settings the rules form changes (those that differ from `current`), and a
    problem for each field that cannot be read or that the setting refuses (InvalidSetting's
    message, which names the bad part: `identity_rules.limits[0].max`)."""
    wanted: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for name, read in _RULE_FIELDS.items():
        try:
            value = read(name, form.get(name))
            current.updated({name: value})
        except (FormError, InvalidSetting) as error:
            problems[name] = str(error)
        else:
            wanted[name] = value
    before = current.to_json()
    return {name: value for name, value in wanted.items() if before.get(name) != value}, problems


def days(text: str) -> int:
    """How many days back a rule preview replays: 1 to MAX_DAYS; FormError otherwise."""
    number = _whole("days", text)
    if not 1 <= number <= MAX_DAYS:
        raise FormError(f"days: expected 1 to {MAX_DAYS}, got {number}")
    return number


def split_choices(form: Form) -> dict[str, str]:
    """The split form's choices: `id_<i>` each with the group `group_<i>` chosen for it."""
    chosen: dict[str, str] = {}
    i = 0
    while form.has(f"id_{i}"):
        chosen[form.get(f"id_{i}")] = form.get(f"group_{i}", "1")
        i += 1
    return chosen


def split_groups(form: Form) -> tuple[tuple[str, ...], ...]:
    """The split form's choices (a key of SPLIT_GROUPS per id) as groups for operations.split:
    each numbered group one person, each id left alone another."""
    numbered: dict[str, list[str]] = {}
    alone: list[tuple[str, ...]] = []
    for distinct_id, group in split_choices(form).items():
        if group not in SPLIT_GROUPS:
            raise FormError(f"the group of {distinct_id!r}: expected one of {', '.join(SPLIT_GROUPS)}, got {group!r}")
        if group == "alone":
            alone.append((distinct_id,))
        else:
            numbered.setdefault(group, []).append(distinct_id)
    return tuple(tuple(numbered[g]) for g in sorted(numbered)) + tuple(alone)
