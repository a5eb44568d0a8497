"""A project's identity rules, Segment Unify style (identity-rules.md §3 "Identity rules").

Kinds of ids, blocked values per kind, limits per kind with an optional time window, and a
priority order of kinds that says which id a link drops when it would break a limit. The setting
is parsed and checked once, when it is saved (settings.py); identity.decide_link asks the
parsed `IdentityRules`. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from idstitch.attributes import looks_like_email
from idstitch.regexes import check_pattern, searches

USER_ID = "user_id"
ANONYMOUS_ID = "anonymous_id"
EMAIL = "email"
BUILT_IN_KINDS = (USER_ID, EMAIL, ANONYMOUS_ID)
_KIND_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


@dataclass(frozen=True, slots=True)
class HeldId:
    """One id of a person, with what its kind and its limits depend on."""

    distinct_id: str
    is_user_id: bool
    # When the id joined its person: distinct_ids.created_at, the time of the event that first
    # mapped it (an id moved by a merge keeps its time).
    joined_at: datetime


@dataclass(frozen=True, slots=True)
class CustomKind:
    """A kind named by the project: the ids its regular expression is found in."""

    name: str
    pattern: str


@dataclass(frozen=True, slots=True)
class Blocked:
    """Ids of one kind that are never linked: exact values, and regular expressions searched in the id."""

    values: frozenset[str] = frozenset()
    patterns: tuple[str, ...] = ()

    def blocks(self, distinct_id: str) -> bool:
        return distinct_id in self.values or any(searches(p, distinct_id) for p in self.patterns)

    def to_json(self) -> dict[str, list[str]]:
        data: dict[str, list[str]] = {}
        if self.values:
            data["values"] = sorted(self.values)
        if self.patterns:
            data["patterns"] = list(self.patterns)
        return data


@dataclass(frozen=True, slots=True)
class Limit:
    """At most `max` ids of `kind` on one person: ever, or joined within `window_days` before an event."""

    kind: str
    max: int
    window_days: int | None = None

    def count(self, ids: Iterable[HeldId], rules: IdentityRules, at: datetime) -> int:
        since = at - timedelta(days=self.window_days) if self.window_days is not None else None
        return sum(
            1
            for held in ids
            if (since is None or since < held.joined_at <= at)
            and rules.kind_of(held.distinct_id, is_user_id=held.is_user_id) == self.kind
        )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "max": self.max}
        if self.window_days is not None:
            data["window_days"] = self.window_days
        return data


@dataclass(frozen=True, slots=True)
class IdentityRules:
    """The parsed `identity_rules` setting; the empty default changes nothing."""

    kinds: tuple[CustomKind, ...] = ()
    blocked: Mapping[str, Blocked] = field(default_factory=dict)
    limits: tuple[Limit, ...] = ()
    priority: tuple[str, ...] = ()

    def kind_of(self, distinct_id: str, *, is_user_id: bool) -> str:
        """The first custom kind found in the id, else `email` if it looks like an address, else
        `user_id` if it is (or becomes, by this identify) a user id, else `anonymous_id`."""
        for kind in self.kinds:
            if searches(kind.pattern, distinct_id):
                return kind.name
        if looks_like_email(distinct_id):
            return EMAIL
        return USER_ID if is_user_id else ANONYMOUS_ID

    def blocking_kind(self, distinct_id: str, *, is_user_id: bool) -> str | None:
        """The kind whose blocked values hold the id, if they do."""
        if not self.blocked:
            return None
        kind = self.kind_of(distinct_id, is_user_id=is_user_id)
        blocked = self.blocked.get(kind)
        return kind if blocked is not None and blocked.blocks(distinct_id) else None

    def rank(self, kind: str) -> int:
        """0 for the kind with the highest priority. Kinds the priority does not list follow it,
        in the default order: user_id, the custom kinds as declared, email, anonymous_id."""
        default = (USER_ID, *(k.name for k in self.kinds), EMAIL, ANONYMOUS_ID)
        order = self.priority + tuple(k for k in default if k not in self.priority)
        return order.index(kind)

    def broken_limit(self, after: Sequence[HeldId], before: Sequence[Sequence[HeldId]], at: datetime) -> Limit | None:
        """The first limit that a person holding `after` would break, where the persons holding
        `before` became it. A limit breaks when the person would hold more ids of its kind than
        the limit allows and than any of those persons held: a person already over a limit (an
        admin merge made it) still takes ids of other kinds."""
        for limit in self.limits:
            count = limit.count(after, self, at)
            if count > limit.max and all(count > limit.count(ids, self, at) for ids in before):
                return limit
        return None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.kinds:
            data["kinds"] = [{"name": k.name, "pattern": k.pattern} for k in self.kinds]
        if self.blocked:
            data["blocked"] = {kind: blocked.to_json() for kind, blocked in self.blocked.items()}
        if self.limits:
            data["limits"] = [limit.to_json() for limit in self.limits]
        if self.priority:
            data["priority"] = list(self.priority)
        return data


NO_RULES = IdentityRules()


def parse_identity_rules(data: object) -> IdentityRules:
    """The `identity_rules` setting's JSON, parsed. ValueError names the bad part as a path
    (`'identity_rules.limits[0].max' has value -1. Expected ...`)."""
    root = _object(data, _ROOT, ("kinds", "blocked", "limits", "priority"))
    kinds = tuple(_custom_kind(item, f"{_ROOT}.kinds[{n}]") for n, item in _items(root, "kinds"))
    names = [kind.name for kind in kinds]
    for n, name in enumerate(names):
        if name in BUILT_IN_KINDS or name in names[:n]:
            expected = "a name no other kind has (user_id, email and anonymous_id are built in)"
            raise _bad(f"{_ROOT}.kinds[{n}].name", name, expected)
    known = (*BUILT_IN_KINDS, *names)
    blocked_json = root.get("blocked", {})
    if not isinstance(blocked_json, Mapping):
        raise _bad(f"{_ROOT}.blocked", blocked_json, "an object mapping kinds to their blocked values and patterns")
    for kind in blocked_json:
        if kind not in known:
            raise ValueError(
                f"'{_ROOT}.blocked' names the unknown kind {kind!r}. Expected kinds among {', '.join(known)}."
            )
    blocked = {kind: _blocked(value, f"{_ROOT}.blocked.{kind}") for kind, value in blocked_json.items()}
    limits = tuple(_limit(item, f"{_ROOT}.limits[{n}]", known) for n, item in _items(root, "limits"))
    priority = tuple(_known_kind(kind, f"{_ROOT}.priority[{n}]", known) for n, kind in _items(root, "priority"))
    for n, kind in enumerate(priority):
        if kind in priority[:n]:
            raise _bad(f"{_ROOT}.priority[{n}]", kind, "each kind at most once")
    return IdentityRules(kinds, blocked, limits, priority)


_ROOT = "identity_rules"


def _bad(path: str, value: object, expected: str) -> ValueError:
    return ValueError(f"{path!r} has value {value!r}. Expected {expected}.")


def _object(value: object, path: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _bad(path, value, "an object with " + ", ".join(allowed))
    for key in value:
        if key not in allowed:
            raise ValueError(f"{path!r} has unknown key {key!r}. Expected only {', '.join(allowed)}.")
    return value


def _items(root: Mapping[str, Any], key: str) -> Iterable[tuple[int, Any]]:
    return enumerate(_list(root.get(key, []), f"{_ROOT}.{key}"))


def _list(value: object, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise _bad(path, value, "a list")
    return value


def _pattern(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise _bad(path, value, "a regular expression as a string")
    # Refused here, when saved: a pattern the ingest path runs must be linear-time (regexes.py).
    problem = check_pattern(value)
    if problem:
        raise ValueError(f"{path!r}: {problem}")
    return value


def _custom_kind(value: object, path: str) -> CustomKind:
    item = _object(value, path, ("name", "pattern"))
    name = item.get("name")
    if not isinstance(name, str) or not _KIND_NAME.fullmatch(name):
        raise _bad(f"{path}.name", name, "lowercase letters, digits and _, starting with a letter (at most 40)")
    return CustomKind(name, _pattern(item.get("pattern"), f"{path}.pattern"))


def _known_kind(value: object, path: str, known: tuple[str, ...]) -> str:
    if value not in known:
        raise _bad(path, value, "one of the kinds " + ", ".join(known))
    assert isinstance(value, str)
    return value


def _blocked(value: object, path: str) -> Blocked:
    item = _object(value, path, ("values", "patterns"))
    values = _list(item.get("values", []), f"{path}.values")
    for n, exact in enumerate(values):
        if not isinstance(exact, str):
            raise _bad(f"{path}.values[{n}]", exact, "a distinct id as a string")
    patterns = _list(item.get("patterns", []), f"{path}.patterns")
    return Blocked(frozenset(values), tuple(_pattern(p, f"{path}.patterns[{n}]") for n, p in enumerate(patterns)))


def _limit(value: object, path: str, known: tuple[str, ...]) -> Limit:
    item = _object(value, path, ("kind", "max", "window_days"))
    kind = _known_kind(item.get("kind"), f"{path}.kind", known)
    window = item.get("window_days")
    return Limit(
        kind,
        _whole(item.get("max"), f"{path}.max"),
        None if window is None else _whole(window, f"{path}.window_days"),
    )


def _whole(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _bad(path, value, "a whole number of at least 1")
    return value
