"""Hypothesis strategies: random event streams with identity changes, and random questions.

A stream is a list of steps: batches of ingest messages (tracks with properties of every JSON
type and odd date texts, identifies, aliases, attribute operations), admin merges, splits, undo
of a link, erasures, and `CatchUp` points where the test compares the copy with the store.
A question is a `counts.count` (every measure, interval, breakdown and date range) or a persons
list, with a filter drawn from the whole filter language (query/filters.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from hypothesis import strategies as st

from idstitch.query import counts
from tests.analytics.sites import T0, at
from tests.query.test_same_answers import PATTERNS, TIMES

DISTINCT_IDS = ["anon-1", "anon-2", "anon-3", "anon-4", "user-1", "user-2", "user-3"]
USER_IDS = ["user-1", "user-2", "user-3"]
ANONYMOUS_IDS = ["anon-1", "anon-2", "anon-3", "anon-4"]
EVENT_NAMES = ["$pageview", "Signed up", "Purchase"]
# What every query may name: the tracked events and the ones identity messages store.
QUERIED_EVENTS = [*EVENT_NAMES, "$identify", "$create_alias", "$set", "Never sent"]
# Mostly the events streams send.
NAMED_EVENTS = st.one_of(st.sampled_from(EVENT_NAMES), st.sampled_from(EVENT_NAMES), st.sampled_from(QUERIED_EVENTS))
PROPERTY_KEYS = ["plan", "n", "price", "flag", "tags", "when", "note"]
ATTRIBUTE_KEYS = ["plan", "name", "signup", "score", "tags", "verified"]

# -- values -----------------------------------------------------------------------------------

# Most values come from a few that many events share (so filters keep some rows and not others);
# the rest are the odd ones: case and Unicode, big integers, floats in every notation.
COMMON_STRINGS = st.sampled_from(["pro", "free", "Pro"])
ODD_STRINGS = st.sampled_from([
    "PRO", "", " ", "ß", "Straße", "STRASSE", "José", "JOSÉ", "a.b", "abc", "ab\n", "123", "1", "1.0", "true", "null",
    "x\ny", "😀", "naïve café", "K", "İ", "pro plan", "\\", '"quoted"', "\u00a0",
])
STRINGS = st.one_of(COMMON_STRINGS, COMMON_STRINGS, ODD_STRINGS)
INTEGERS = st.one_of(
    st.integers(0, 3),
    st.integers(-3, 50),
    st.sampled_from([2**31, 2**53, 2**53 + 1, -(2**53) - 1, 2**62 + 1, 2**63 - 1, -(2**63)]),
)
FLOATS = st.sampled_from([
    0.5, 1.0, -0.0, 1.5, 0.1, 2.5, 1e20, 1e16, 1.5e17, 1e-6, 2.5e-6, 1e-7, 3.14159, -2.75, 9007199254740993.0,
    1.7976931348623157e308,
])
NUMBERS = st.one_of(INTEGERS, FLOATS)
# Stored values may pass a filter's range (64-bit signed): JSON integers up to 2**64 - 1.
STORED_NUMBERS = st.one_of(NUMBERS, st.sampled_from([2**63, 2**64 - 1]))
# ISO times near the events, and texts SQLite's julianday() reads oddly or not at all.
ISO_TIMES = st.builds(lambda day, minute: at(day, minute), st.integers(-5, 85), st.integers(0, 1439))
DATE_TEXTS = st.one_of(
    ISO_TIMES,
    st.builds(lambda day: at(day)[:10], st.integers(-5, 85)),
    st.builds(lambda day, zone: at(day)[:16].replace("T", " ") + zone, st.integers(-5, 85), st.sampled_from(["", "Z", "+02:00", " -05:30"])),
    st.sampled_from(TIMES),
)
SCALARS = st.one_of(STRINGS, STRINGS, STORED_NUMBERS, st.booleans(), st.none(), DATE_TEXTS)
LISTS = st.lists(st.one_of(STRINGS, INTEGERS, st.sampled_from([1.0, 2.5, 1e20]), st.booleans(), st.none()), max_size=3)
VALUES = st.one_of(SCALARS, SCALARS, SCALARS, LISTS, st.sampled_from([{"nested": 1}, {"a": [1e16, "x"]}, {}]))

# -- messages ---------------------------------------------------------------------------------

DAYS = st.integers(0, 75)
MINUTES = st.integers(0, 1439)
OPS = st.fixed_dictionaries(
    {},
    optional={
        "set": st.dictionaries(st.sampled_from(ATTRIBUTE_KEYS), VALUES, max_size=3),
        "set_once": st.dictionaries(st.sampled_from(ATTRIBUTE_KEYS), VALUES, max_size=2),
        "unset": st.lists(st.sampled_from(ATTRIBUTE_KEYS), max_size=2, unique=True),
        "add": st.dictionaries(st.sampled_from(["score", "visits"]), st.one_of(st.integers(-2, 5), st.just(0.5)), max_size=1),
    },
)
PROPERTIES = st.dictionaries(st.sampled_from(PROPERTY_KEYS), VALUES, max_size=4)


def _message(kind: str, day: int, minute: int, ops: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"type": kind, "timestamp": at(day, minute), **fields, **ops}


TRACKS = st.builds(
    lambda d, name, day, minute, properties, ops: _message("track", day, minute, ops, distinct_id=d, event=name, properties=properties),
    st.sampled_from(DISTINCT_IDS), st.sampled_from(EVENT_NAMES), DAYS, MINUTES, PROPERTIES,
    st.one_of(st.just({}), OPS),
)
IDENTIFIES = st.builds(
    lambda user, anon, day, minute, ops: _message("identify", day, minute, ops, user_id=user, anonymous_id=anon),
    st.sampled_from(USER_IDS), st.one_of(st.sampled_from(ANONYMOUS_IDS), st.none()), DAYS, MINUTES, OPS,
)
ALIASES = st.builds(
    lambda d, alias, day, minute: _message("alias", day, minute, {}, distinct_id=d, alias=alias),
    st.sampled_from(DISTINCT_IDS), st.sampled_from(DISTINCT_IDS), DAYS, MINUTES,
)
ATTRIBUTE_MESSAGES = st.builds(
    lambda d, day, minute, ops: _message("attributes", day, minute, ops, distinct_id=d),
    st.sampled_from(DISTINCT_IDS), DAYS, MINUTES, OPS,
)
MESSAGES = st.one_of(TRACKS, TRACKS, TRACKS, IDENTIFIES, ALIASES, ATTRIBUTE_MESSAGES)


# -- steps --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    messages: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class AdminMerge:
    target: str
    source: str


@dataclass(frozen=True)
class SplitOf:
    """Split the person owning `distinct_id` when the step runs: all its ids, or this one only."""

    distinct_id: str
    only_this_id: bool


@dataclass(frozen=True)
class UndoLink:
    """Undo (or redo) the n-th undoable entry of the link log, modulo its length."""

    n: int


@dataclass(frozen=True)
class Erase:
    distinct_id: str
    keep_anonymised_counts: bool
    suppress: bool


@dataclass(frozen=True)
class CatchUp:
    """Compare here: the copy still answers as the store did at the last catch-up, then catches up."""


STEPS = st.one_of(
    st.builds(Send, st.lists(MESSAGES, min_size=1, max_size=12).map(tuple)),
    st.builds(Send, st.lists(MESSAGES, min_size=1, max_size=12).map(tuple)),
    st.builds(AdminMerge, st.sampled_from(DISTINCT_IDS), st.sampled_from(DISTINCT_IDS)),
    st.builds(SplitOf, st.sampled_from(DISTINCT_IDS), st.booleans()),
    st.builds(UndoLink, st.integers(0, 20)),
    st.builds(Erase, st.sampled_from(DISTINCT_IDS), st.booleans(), st.booleans()),
    st.just(CatchUp()),
)
# A stream opens with a batch of events, so that every question has rows to tell apart.
STREAMS = st.builds(
    lambda first, rest: [first, *rest],
    st.builds(Send, st.lists(st.one_of(TRACKS, TRACKS, IDENTIFIES), min_size=5, max_size=30).map(tuple)),
    st.lists(STEPS, max_size=14),
)


def run_step(site: Any, step: Any) -> None:
    """Apply one step through the app (CatchUp is the caller's)."""
    if isinstance(step, Send):
        site.send(*step.messages)
    elif isinstance(step, AdminMerge):
        site.merge(step.target, step.source)
    elif isinstance(step, SplitOf):
        site.split(step.distinct_id, only_this_id=step.only_this_id)
    elif isinstance(step, UndoLink):
        links = site.undoable_links()
        if links:
            site.undo(links[step.n % len(links)])
    elif isinstance(step, Erase):
        site.erase(step.distinct_id, keep_anonymised_counts=step.keep_anonymised_counts, suppress=step.suppress)


# -- filters ----------------------------------------------------------------------------------

FILTER_TIMES = st.one_of(
    ISO_TIMES,
    st.builds(lambda day: at(day)[:10], st.integers(-5, 85)),
    st.builds(lambda day: at(day)[:19] + "+03:00", st.integers(-5, 85)),
    st.sampled_from(["-30d", "-2w", "last 7 days", "now", "today", "yesterday", "-1y"]),
)
FILTER_SCALARS = st.one_of(COMMON_STRINGS, STRINGS, st.integers(0, 3), NUMBERS, st.booleans(), st.none())


def _comparisons() -> st.SearchStrategy[dict[str, Any]]:
    """`{"op": ..., "value": ...}` with a value that suits the op (query/filters.py check_value)."""

    def with_op(ops: list[str], values: st.SearchStrategy[Any] | None) -> st.SearchStrategy[dict[str, Any]]:
        if values is None:
            return st.builds(lambda op: {"op": op}, st.sampled_from(ops))
        return st.builds(lambda op, value: {"op": op, "value": value}, st.sampled_from(ops), values)

    return st.one_of(
        with_op(["equals", "not_equals"], st.one_of(FILTER_SCALARS, DATE_TEXTS.filter(lambda t: "\x00" not in t))),
        with_op(["contains", "not_contains"], st.one_of(STRINGS, st.sampled_from(["PRO", "o", "é", "a.", ""]), INTEGERS, FLOATS, st.booleans())),
        with_op(["regex", "not_regex"], st.sampled_from(PATTERNS)),
        with_op(["gt", "gte", "lt", "lte"], st.one_of(NUMBERS, FILTER_TIMES)),
        with_op(["after", "before"], FILTER_TIMES),
        with_op(["in", "not_in"], st.lists(FILTER_SCALARS, min_size=1, max_size=4)),
        with_op(["equals", "not_equals", "contains"], COMMON_STRINGS),
        with_op(["is_set", "is_not_set"], None),
    )


COMPARISONS = _comparisons()
ATTRIBUTE_CONDITIONS = st.builds(lambda key, c: {"attribute": key, **c}, st.sampled_from([*ATTRIBUTE_KEYS, "visits", "absent"]), COMPARISONS)
PROPERTY_CONDITIONS = st.builds(lambda key, c: {"property": key, **c}, st.sampled_from([*PROPERTY_KEYS, "absent"]), COMPARISONS)


def _groups(leaves: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.builds(lambda xs: {"and": xs}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda xs: {"or": xs}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda x: {"not": x}, inner),
        ),
        max_leaves=4,
    )


PROPERTY_FILTERS = _groups(PROPERTY_CONDITIONS)


def _did(name: str, min_count: int, after: str | None, before: str | None, where: dict[str, Any] | None) -> dict[str, Any]:
    document: dict[str, Any] = {"did": name, "min_count": min_count}
    for key, value in (("after", after), ("before", before), ("where", where)):
        if value is not None:
            document[key] = value
    return document


DID_CONDITIONS = st.builds(
    _did,
    NAMED_EVENTS,
    st.sampled_from([1, 1, 2, 3, 5]),
    st.one_of(st.none(), FILTER_TIMES),
    st.one_of(st.none(), FILTER_TIMES),
    st.one_of(st.none(), PROPERTY_FILTERS),
)
# Filters on events (every kind of condition) and on persons (no event properties but in `did`).
EVENT_FILTERS = _groups(st.one_of(ATTRIBUTE_CONDITIONS, PROPERTY_CONDITIONS, DID_CONDITIONS))
PERSON_FILTERS = _groups(st.one_of(ATTRIBUTE_CONDITIONS, DID_CONDITIONS, DID_CONDITIONS))

# -- questions ----------------------------------------------------------------------------------

def _moments(first_day: int, last_day: int) -> st.SearchStrategy[Any]:
    return st.builds(lambda day, hours: T0 + timedelta(days=day, hours=hours), st.integers(first_day, last_day), st.sampled_from([0, 0, 7.5]))


# Ranges wide enough to hold events most of the time: `after` early, `before` late.
AFTER = st.one_of(st.none(), st.none(), _moments(-3, 45))
BEFORE = st.one_of(st.none(), st.none(), _moments(20, 82))


@dataclass(frozen=True)
class CountQuestion:
    spec: counts.CountSpec
    filter: dict[str, Any] | None
    # Index into the segments saved at the start of the example (None: no segment).
    segment: int | None


@st.composite
def count_questions(draw: st.DrawFn) -> CountQuestion:
    measure = draw(st.sampled_from(["events", "persons", "new_persons"]))
    persons_scope = measure == "new_persons"
    breakdown = draw(st.sampled_from(["none", "attribute", "property"] if not persons_scope else ["none", "attribute"]))
    after = draw(AFTER)
    before = draw(BEFORE)
    if after is not None and before is not None and after >= before:
        after, before = before - timedelta(days=1), after + timedelta(days=1)
    spec = counts.CountSpec(
        measure=measure,
        events=() if persons_scope else tuple(draw(st.lists(NAMED_EVENTS, max_size=2, unique=True))),
        interval=draw(st.sampled_from(["day", "week", "month", None])),
        after=after,
        before=before,
        breakdown_attribute=draw(st.sampled_from([*ATTRIBUTE_KEYS, "absent"])) if breakdown == "attribute" else None,
        breakdown_property=draw(st.sampled_from([*PROPERTY_KEYS, "absent"])) if breakdown == "property" else None,
        breakdown_limit=draw(st.sampled_from([25, 25, 2])),
    )
    document = draw(st.one_of(st.none(), PERSON_FILTERS if persons_scope else EVENT_FILTERS))
    return CountQuestion(spec, document, draw(st.one_of(st.none(), st.integers(0, 1))))


@dataclass(frozen=True)
class PersonsQuestion:
    filter: dict[str, Any] | None
    segment: int | None
    page: int


PERSONS_QUESTIONS = st.builds(
    PersonsQuestion,
    st.one_of(DID_CONDITIONS, PERSON_FILTERS, PERSON_FILTERS),
    st.one_of(st.none(), st.none(), st.integers(0, 1)),
    st.sampled_from([1000, 2]),
)
# Saved segments an example's questions may use: one for persons, one mixing event properties
# (a persons question using it is refused alike on both sides).
SEGMENT_FILTERS = st.tuples(PERSON_FILTERS, EVENT_FILTERS)
