"""Person attributes: value types, operations, conflict rules, limits and PII rules.

identity-rules.md §4. Each stored key remembers which operation wrote it, when (event time) and
in which arrival position, so that the result of `set`, `set_once` and `unset` is a function of
the operations alone, whatever order they arrive in:

* `set` and `unset` compete by (event time, arrival); the latest wins. An `unset` stays behind
  as a tombstone so that an older `set` arriving late does not bring the key back.
* `set_once` only fills a key that no `set` or `unset` has written; among `set_once`s the
  earliest event wins. (PostHog applies operations in arrival order, so a back-filled event
  clobbers newer values; we do not.)

`add`, `append`, `union` and `remove` transform the current value and are stamped like a `set`
at their event's time.
"""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from idstitch.outcomes import WarningRecord, WarningType


class AttributeType(StrEnum):
    STRING = "string"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    LIST = "list"
    OBJECT = "object"
    NULL = "null"


class OpKind(StrEnum):
    """Which operation last decided a key's state."""

    SET = "set"
    SET_ONCE = "set_once"
    UNSET = "unset"
    # add, append, union or remove: a change of the value before it, not a value of its own.
    UPDATE = "update"


_ISO_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
)
_EMAIL = re.compile(r"[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[A-Za-z]{2,}")


def type_of(value: Any) -> AttributeType:
    """The attribute type of a JSON value: an ISO-8601 string is a datetime, a numeric string stays a string."""
    if value is None:
        return AttributeType.NULL
    if isinstance(value, bool):
        return AttributeType.BOOLEAN
    if isinstance(value, (int, float)):
        return AttributeType.NUMBER
    if isinstance(value, str):
        if len(value) <= 40 and _ISO_DATETIME.fullmatch(value) and _is_real_date(value):
            return AttributeType.DATETIME
        return AttributeType.STRING
    if isinstance(value, list):
        return AttributeType.LIST
    return AttributeType.OBJECT


def _is_real_date(value: str) -> bool:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def looks_like_email(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 320 and _EMAIL.fullmatch(value) is not None


def encoded_size(key: str, value: Any) -> int:
    """Bytes the key and value take in the person's stored JSON (the 512 KiB limit counts these)."""
    if isinstance(value, str) and value.isascii() and '"' not in value and "\\" not in value:
        size = len(value) + 2
    else:
        size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    return len(key.encode()) + size + 4


@dataclass(slots=True)
class Attribute:
    """One key of a person: its value (absent when a tombstone), and what decided it."""

    value: Any
    kind: OpKind
    time: datetime
    seq: int
    event_uuid: str | None
    # Higher rank wins. Any set/unset/update beats any set_once; among set_onces, earliest wins.
    rank: tuple[int, float, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.rank = rank_of(self.kind, self.time.timestamp(), self.seq)

    @property
    def is_present(self) -> bool:
        return self.kind is not OpKind.UNSET


def rank_of(kind: OpKind, timestamp: float, seq: int) -> tuple[int, float, int]:
    if kind is OpKind.SET_ONCE:
        return (0, -timestamp, -seq)
    return (1, timestamp, seq)


@dataclass(frozen=True, slots=True)
class AttributeOps:
    """The attribute operations one event carries, applied in this field order (§4)."""

    set_once: Mapping[str, Any] = field(default_factory=dict)
    set: Mapping[str, Any] = field(default_factory=dict)
    unset: tuple[str, ...] = ()
    add: Mapping[str, Any] = field(default_factory=dict)
    append: Mapping[str, Any] = field(default_factory=dict)
    union: Mapping[str, Any] = field(default_factory=dict)
    remove: Mapping[str, Any] = field(default_factory=dict)
    # Whether the event's properties may also set the person's automatic attributes (first
    # touch, device). False once a rule refused them (attributes switched off), so that no
    # re-derivation brings them back after the rule is lifted.
    automatic: bool = True

    @property
    def has_operations(self) -> bool:
        return bool(
            self.set_once or self.set or self.unset or self.add or self.append or self.union or self.remove
        )

    def __bool__(self) -> bool:
        """Whether there is anything to store with the event."""
        return self.has_operations or not self.automatic

    def keys(self) -> builtins.set[str]:  # `set` here is the field of that name
        keys = set(self.unset)
        for part in (self.set_once, self.set, self.add, self.append, self.union, self.remove):
            keys.update(part)
        return keys

    def to_json(self) -> dict[str, Any]:
        """Only the non-empty parts, for storing with the event (split re-derives from these)."""
        out: dict[str, Any] = {}
        for name in ("set_once", "set", "unset", "add", "append", "union", "remove"):
            part = getattr(self, name)
            if part:
                out[name] = list(part) if name == "unset" else dict(part)
        if not self.automatic:
            out["automatic"] = False
        return out

    def without(self, refused: builtins.set[tuple[str, str]]) -> AttributeOps:
        """These operations less the refused (operation, key) pairs."""
        if not refused:
            return self

        def kept(name: str) -> dict[str, Any]:
            return {k: v for k, v in getattr(self, name).items() if (name, k) not in refused}

        return AttributeOps(
            set_once=kept("set_once"), set=kept("set"), unset=tuple(k for k in self.unset if ("unset", k) not in refused),
            add=kept("add"), append=kept("append"), union=kept("union"), remove=kept("remove"),
            automatic=self.automatic,
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AttributeOps:
        return cls(
            set_once=data.get("set_once", {}),
            set=data.get("set", {}),
            unset=tuple(data.get("unset", ())),
            add=data.get("add", {}),
            append=data.get("append", {}),
            union=data.get("union", {}),
            remove=data.get("remove", {}),
            automatic=data.get("automatic", True),
        )


NO_OPS = AttributeOps()


@dataclass(frozen=True, slots=True)
class AttributePolicy:
    """A project's attribute settings (identity-rules.md §4)."""

    enabled: bool = True
    pii_guard: bool = True
    max_keys: int = 1000
    max_key_length: int = 200
    max_string_length: int = 65_535
    max_total_bytes: int = 512 * 1024
    declared_types: Mapping[str, AttributeType] = field(default_factory=dict)


@dataclass(slots=True)
class PersonAttributes:
    """All keys of one person, tombstones included, with the running size of the present ones."""

    items: dict[str, Attribute] = field(default_factory=dict)
    total_bytes: int = 0
    present_keys: int = 0

    def __post_init__(self) -> None:
        self.total_bytes = sum(encoded_size(k, a.value) for k, a in self.items.items() if a.is_present)
        self.present_keys = sum(1 for a in self.items.values() if a.is_present)

    def values(self) -> dict[str, Any]:
        """The person's properties as the API shows them."""
        return {k: a.value for k, a in self.items.items() if a.is_present}

    def put(self, key: str, attribute: Attribute) -> None:
        old = self.items.get(key)
        if old is not None and old.is_present:
            self.total_bytes -= encoded_size(key, old.value)
            self.present_keys -= 1
        if attribute.is_present:
            self.total_bytes += encoded_size(key, attribute.value)
            self.present_keys += 1
        self.items[key] = attribute

    def restore(self, earlier: Mapping[str, Attribute | None]) -> None:
        """Put these keys back as they were (None: the key was not there)."""
        for key, attribute in earlier.items():
            if attribute is not None:
                self.put(key, attribute)
            elif key in self.items:
                removed = self.items.pop(key)
                if removed.is_present:
                    self.total_bytes -= encoded_size(key, removed.value)
                    self.present_keys -= 1

    def merged_under(self, target: PersonAttributes) -> PersonAttributes:
        """This (source) person's keys under the target's: keys present on both keep the target's value."""
        merged = PersonAttributes(dict(self.items))
        for key, attribute in target.items.items():
            mine = merged.items.get(key)
            if attribute.is_present or mine is None or not mine.is_present:
                merged.put(key, attribute)
        return merged


@dataclass(frozen=True, slots=True)
class OperationContext:
    """Where an event's operations come from: used for stamping, PII rules and warnings."""

    time: datetime
    seq: int
    event_uuid: str | None
    distinct_id: str
    # The PII guard's test (identity-rules.md §4): identified by an identify, an alias or an import.
    person_is_identified: bool


class Applied(NamedTuple):
    """What applying one event's operations did."""

    changed: set[str]  # keys whose stored state changed
    warnings: list[WarningRecord]  # what was refused, and why
    # The operations less the refused ones: what the event keeps (a refused value is not stored,
    # and a split re-deriving the person from its events cannot accept it later).
    kept: AttributeOps


def apply_operations(
    attributes: PersonAttributes,
    ops: AttributeOps,
    context: OperationContext,
    policy: AttributePolicy,
) -> Applied:
    """Apply one event's operations to a person's attributes in place."""
    warnings: list[WarningRecord] = []
    if not ops.has_operations:
        return Applied(set(), warnings, ops)
    if not policy.enabled:
        warnings.append(_warning(WarningType.ATTRIBUTES_DISABLED, context, keys=sorted(ops.keys())))
        return Applied(set(), warnings, AttributeOps(automatic=ops.automatic))

    changed: set[str] = set()
    refused: set[tuple[str, str]] = set()
    items = attributes.items
    timestamp = context.time.timestamp()

    def admit(operation: str, key: str, value: Any, check_value: bool = True) -> bool:
        reason = _refusal(key, value, context, policy, check_value)
        if reason is None:
            return True
        warnings.append(reason)
        refused.add((operation, key))
        return False

    def loses(key: str, kind: OpKind) -> bool:
        current = items.get(key)
        if current is None:
            return False
        rank = rank_of(kind, timestamp, context.seq)
        # An equal rank is this same event (same time, same arrival): its later operations apply in
        # the §4 order (set, then unset, then add/append/union/remove); a repeated set_once does not.
        return rank < current.rank or (rank == current.rank and kind is OpKind.SET_ONCE)

    def stamp(operation: str, key: str, candidate: Attribute) -> None:
        current = items.get(key)
        if candidate.is_present and (current is None or not current.is_present):
            if attributes.present_keys >= policy.max_keys:
                warnings.append(_limit(context, key, "max_keys", policy.max_keys))
                refused.add((operation, key))
                return
        growth = encoded_size(key, candidate.value) if candidate.is_present else 0
        if current is not None and current.is_present:
            growth -= encoded_size(key, current.value)
        if growth > 0 and attributes.total_bytes + growth > policy.max_total_bytes:
            warnings.append(_limit(context, key, "max_total_bytes", policy.max_total_bytes))
            refused.add((operation, key))
            return
        attributes.put(key, candidate)
        changed.add(key)

    def decide(key: str, value: Any, kind: OpKind) -> None:
        # The rank is checked first: most first-touch set_onces lose, and need no other check.
        if not loses(key, kind) and admit(kind.value, key, value, kind is not OpKind.UNSET):
            stamp(kind.value, key, Attribute(value, kind, context.time, context.seq, context.event_uuid))

    for key, value in ops.set_once.items():
        decide(key, value, OpKind.SET_ONCE)
    for key, value in ops.set.items():
        decide(key, value, OpKind.SET)
    for key in ops.unset:
        decide(key, None, OpKind.UNSET)

    for operation, values in (
        ("add", ops.add),
        ("append", ops.append),
        ("union", ops.union),
        ("remove", ops.remove),
    ):
        for key, operand in values.items():
            current = items.get(key)
            if current is not None and current.kind in (OpKind.SET, OpKind.UNSET) and loses(key, OpKind.UPDATE):
                continue  # a later set or unset decided the key: this older change is overridden
            existing = current.value if current is not None and current.is_present else None
            result = _transform(operation, existing, operand)
            if isinstance(result, str):
                warnings.append(
                    _warning(WarningType.INVALID_OPERATION, context, key=key, operation=operation, message=result)
                )
                refused.add((operation, key))
                continue
            (value,) = result
            if admit(operation, key, value):
                # Changes commute: an older one arriving late still counts, and the key keeps the
                # newer of the two times, so a set older than both still loses.
                newer = current is None or not loses(key, OpKind.UPDATE)
                when, seq = (context.time, context.seq) if newer else (current.time, current.seq)  # type: ignore[union-attr]
                stamp(operation, key, Attribute(value, OpKind.UPDATE, when, seq, context.event_uuid))
    return Applied(changed, warnings, ops.without(refused))


def _transform(operation: str, existing: Any, operand: Any) -> tuple[Any] | str:
    """The new value of a list or number operation, or a message saying why it cannot apply."""
    if operation == "add":
        if not _is_number(operand):
            return f"add needs a number, got {type_of(operand).value}"
        if existing is None:
            return (operand,)
        if not _is_number(existing):
            return f"add needs a number to increment, the stored value is a {type_of(existing).value}"
        return (existing + operand,)
    if existing is not None and not isinstance(existing, list):
        return f"{operation} needs a list, the stored value is a {type_of(existing).value}"
    items = list(existing or [])
    operands = operand if isinstance(operand, list) and operation != "append" else [operand]
    if operation == "append":
        return (items + operands,)
    if operation == "union":
        return (items + [v for i, v in enumerate(operands) if v not in items and v not in operands[:i]],)
    return ([v for v in items if v not in operands],)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _refusal(
    key: str, value: Any, context: OperationContext, policy: AttributePolicy, check_value: bool
) -> WarningRecord | None:
    if not key or len(key) > policy.max_key_length:
        return _limit(context, key[:policy.max_key_length], "max_key_length", policy.max_key_length)
    if not check_value:
        return None
    if isinstance(value, str) and len(value) > policy.max_string_length:
        return _limit(context, key, "max_string_length", policy.max_string_length)
    declared = policy.declared_types.get(key)
    if declared is not None and value is not None and type_of(value) is not declared:
        return _warning(
            WarningType.PROPERTY_TYPE_MISMATCH,
            context,
            key=key,
            expected=declared.value,
            received=type_of(value).value,
        )
    if policy.pii_guard:
        if key == "email":
            # Hotjar: personal data only for visitors the site has identified.
            if value is not None and not context.person_is_identified:
                return _warning(WarningType.PII_ON_ANONYMOUS, context, key=key)
        elif _contains_email(value):
            return _warning(WarningType.PII_OUTSIDE_EMAIL, context, key=key)
    return None


def _contains_email(value: Any) -> bool:
    if isinstance(value, str):
        return looks_like_email(value)
    if isinstance(value, list):
        return any(_contains_email(v) for v in value)
    if isinstance(value, dict):
        return any(_contains_email(v) for v in value.values())
    return False


def _limit(context: OperationContext, key: str, limit: str, value: int) -> WarningRecord:
    return _warning(WarningType.PROPERTY_LIMIT_EXCEEDED, context, key=key, limit=limit, max=value)


def _warning(kind: WarningType, context: OperationContext, **details: Any) -> WarningRecord:
    return WarningRecord(kind, (context.distinct_id,), details, context.event_uuid)
