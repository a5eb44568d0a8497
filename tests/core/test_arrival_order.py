"""Arrival order does not matter for set, set_once and unset (identity-rules.md §4).

Each operation is stamped with its event's time, so the same events applied in any order leave
the same attributes. Event times are distinct here: ties are broken by arrival, by design.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from idstitch.attributes import AttributeOps, AttributePolicy, OperationContext, PersonAttributes, apply_operations
from tests.core.harness import at

KEYS = st.sampled_from(["plan", "seats", "color"])
VALUES = st.one_of(
    st.integers(0, 3),
    st.sampled_from(["free", "pro", "2026-03-01"]),
    st.none(),
    st.lists(st.integers(0, 2), max_size=2),
)
OPS = st.builds(
    AttributeOps,
    set_once=st.dictionaries(KEYS, VALUES, max_size=2),
    set=st.dictionaries(KEYS, VALUES, max_size=2),
    unset=st.lists(KEYS, max_size=2, unique=True).map(tuple),
)


@st.composite
def events_and_two_orders(draw: st.DrawFn) -> tuple[list[tuple[int, AttributeOps]], list[int], list[int]]:
    minutes = draw(st.lists(st.integers(0, 10_000), min_size=1, max_size=10, unique=True))
    events = [(minute, draw(OPS)) for minute in minutes]
    indexes = list(range(len(events)))
    return events, draw(st.permutations(indexes)), draw(st.permutations(indexes))


def replay(events: list[tuple[int, AttributeOps]], order: list[int]) -> PersonAttributes:
    attributes = PersonAttributes()
    for arrival, index in enumerate(order, start=1):
        minute, ops = events[index]
        context = OperationContext(at(minute), arrival, f"evt-{index}", "anon-1", person_is_identified=False)
        apply_operations(attributes, ops, context, AttributePolicy())
    return attributes


def decided(attributes: PersonAttributes) -> dict[str, Any]:
    """What each key holds and which operation at which time decided it (tombstones included)."""
    return {key: (a.value, a.kind, a.time) for key, a in attributes.items.items()}


@settings(max_examples=100, deadline=None)
@given(events_and_two_orders())
def test_set_set_once_and_unset_do_not_depend_on_arrival_order(case) -> None:
    events, first, second = case
    one, other = replay(events, first), replay(events, second)
    assert one.values() == other.values()
    assert decided(one) == decided(other)


def test_arrival_order_check_sees_a_difference_when_times_are_equal() -> None:
    # The property above holds because event times are distinct: with equal times the later
    # arrival wins, so this pair gives two answers (and the check would notice).
    events = [(5, AttributeOps(set={"plan": "free"})), (5, AttributeOps(set={"plan": "pro"}))]
    assert [replay(events, [0, 1]).values(), replay(events, [1, 0]).values()] == [{"plan": "pro"}, {"plan": "free"}]
