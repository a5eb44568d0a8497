"""Person attributes: types, operations, conflicts, merges, PII rules and limits (identity-rules.md §4)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from idstitch.attributes import (
    Attribute,
    AttributeOps,
    AttributePolicy,
    AttributeType,
    OperationContext,
    OpKind,
    PersonAttributes,
    apply_operations,
    encoded_size,
    type_of,
)
from idstitch.outcomes import WarningRecord, WarningType
from tests.core.harness import at, identify, track

pytestmark = pytest.mark.both_stores

POLICY = AttributePolicy()


class Person:
    """One person's attributes, fed one event at a time; `seq` is the arrival order."""

    def __init__(self, policy: AttributePolicy = POLICY, *, has_user_id: bool = False) -> None:
        self.attributes = PersonAttributes()
        self.policy = policy
        self.has_user_id = has_user_id
        self.arrivals = 0

    def event(self, minute: float = 0, *, uuid: str = "evt-1", **ops: Any) -> list[WarningRecord]:
        self.arrivals += 1
        if "unset" in ops:
            ops["unset"] = tuple(ops["unset"])
        context = OperationContext(at(minute), self.arrivals, uuid, "anon-1", self.has_user_id)
        warnings = apply_operations(self.attributes, AttributeOps(**ops), context, self.policy).warnings
        return warnings

    def values(self) -> dict[str, Any]:
        return self.attributes.values()


def warning(kind: WarningType, uuid: str = "evt-1", **details: Any) -> WarningRecord:
    return WarningRecord(kind, ("anon-1",), details, uuid)


def limit(key: str, name: str, maximum: int) -> WarningRecord:
    return warning(WarningType.PROPERTY_LIMIT_EXCEEDED, key=key, limit=name, max=maximum)


# -- types -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, kind",
    [
        pytest.param("pro", AttributeType.STRING, id="string"),
        pytest.param("42", AttributeType.STRING, id="numeric-string-stays-string"),
        pytest.param("3.14", AttributeType.STRING, id="decimal-string-stays-string"),
        pytest.param("", AttributeType.STRING, id="empty-string"),
        pytest.param("2026-03-01", AttributeType.DATETIME, id="iso-date"),
        pytest.param("2026-03-01T09:30:00Z", AttributeType.DATETIME, id="iso-datetime-z"),
        pytest.param("2026-03-01T09:30:00.123456+02:00", AttributeType.DATETIME, id="iso-datetime-offset"),
        pytest.param("2026-03-01 09:30", AttributeType.DATETIME, id="iso-datetime-space"),
        pytest.param("2026-02-30", AttributeType.STRING, id="impossible-date"),
        pytest.param("2026-03-01T25:00:00", AttributeType.STRING, id="impossible-hour"),
        pytest.param("01/03/2026", AttributeType.STRING, id="not-iso"),
        pytest.param("released 2026-03-01", AttributeType.STRING, id="date-inside-text"),
        pytest.param(42, AttributeType.NUMBER, id="int"),
        pytest.param(4.2, AttributeType.NUMBER, id="float"),
        pytest.param(True, AttributeType.BOOLEAN, id="boolean-not-number"),
        pytest.param(None, AttributeType.NULL, id="null"),
        pytest.param(["a", 1], AttributeType.LIST, id="list"),
        pytest.param({"plan": "pro"}, AttributeType.OBJECT, id="object"),
    ],
)
def test_type_is_taken_from_the_json_value(value: Any, kind: AttributeType) -> None:
    assert type_of(value) is kind


# -- set, set_once, unset --------------------------------------------------------------------


def test_set_keeps_the_latest_event_whatever_the_arrival_order() -> None:
    person = Person()
    person.event(10, set={"plan": "pro"})
    person.event(5, set={"plan": "free"})  # older, arrives late
    assert person.values() == {"plan": "pro"}


def test_set_ties_on_event_time_go_to_the_later_arrival() -> None:
    person = Person()
    person.event(5, set={"plan": "free"})
    person.event(5, set={"plan": "pro"})
    assert person.values() == {"plan": "pro"}


def test_set_once_fills_a_key_only_once_and_the_earliest_event_wins() -> None:
    person = Person()
    person.event(10, set_once={"first_seen_page": "/pricing"})
    person.event(20, set_once={"first_seen_page": "/docs"})
    person.event(1, set_once={"first_seen_page": "/"})  # the earliest, arriving last
    assert person.values() == {"first_seen_page": "/"}


def test_set_once_never_overrides_a_key_a_set_decided() -> None:
    person = Person()
    person.event(10, set={"plan": "pro"})
    person.event(1, set_once={"plan": "trial"})
    assert person.values() == {"plan": "pro"}


def test_set_overrides_set_once_even_when_older() -> None:
    person = Person()
    person.event(10, set_once={"plan": "trial"})
    person.event(1, set={"plan": "pro"})
    assert person.values() == {"plan": "pro"}


def test_unset_removes_the_key() -> None:
    person = Person()
    person.event(1, set={"plan": "pro", "company": "Acme"})
    person.event(2, unset=["plan"])
    assert person.values() == {"company": "Acme"}


def test_unset_tombstone_beats_an_older_set_that_arrives_late() -> None:
    person = Person()
    person.event(1, set={"plan": "free"})
    person.event(10, unset=["plan"])
    person.event(5, set={"plan": "pro"})  # older than the unset, arrives after it
    assert person.values() == {}
    assert person.attributes.items["plan"].kind is OpKind.UNSET


def test_a_newer_set_brings_an_unset_key_back() -> None:
    person = Person()
    person.event(10, unset=["plan"])
    person.event(11, set={"plan": "pro"})
    assert person.values() == {"plan": "pro"}


def test_set_once_does_not_bring_an_unset_key_back() -> None:
    person = Person()
    person.event(10, unset=["plan"])
    person.event(1, set_once={"plan": "trial"})
    assert person.values() == {}


def test_unset_of_an_absent_key_still_guards_against_older_sets() -> None:
    person = Person()
    person.event(10, unset=["plan"])
    person.event(5, set={"plan": "pro"})
    assert person.values() == {}


@pytest.mark.parametrize(
    "ops, values",
    [
        pytest.param({"set_once": {"plan": "trial"}, "set": {"plan": "pro"}}, {"plan": "pro"}, id="set_once-then-set"),
        pytest.param({"set": {"plan": "pro"}, "unset": ["plan"]}, {}, id="set-then-unset"),
        pytest.param({"set_once": {"plan": "trial"}, "unset": ["plan"]}, {}, id="set_once-then-unset"),
        pytest.param({"set": {"logins": 1}, "add": {"logins": 2}}, {"logins": 3}, id="set-then-add"),
        pytest.param({"unset": ["logins"], "add": {"logins": 2}}, {"logins": 2}, id="unset-then-add"),
        pytest.param({"set": {"tags": ["a"]}, "append": {"tags": "b"}}, {"tags": ["a", "b"]}, id="set-then-append"),
        pytest.param(
            {"set": {"tags": ["a"]}, "union": {"tags": ["a", "b"]}, "remove": {"tags": "a"}}, {"tags": ["b"]},
            id="set-union-remove",
        ),
    ],
)
def test_one_events_operations_apply_in_the_documented_order(ops: dict[str, Any], values: dict[str, Any]) -> None:
    # §4: set_once, set, unset, then add, append, union, remove.
    person = Person()
    person.event(5, **ops)
    assert person.values() == values


# -- add, append, union, remove --------------------------------------------------------------


@pytest.mark.parametrize(
    "events, values",
    [
        pytest.param([{"add": {"logins": 1}}], {"logins": 1}, id="add-to-nothing"),
        pytest.param([{"add": {"logins": 1}}, {"add": {"logins": 2}}], {"logins": 3}, id="add-twice"),
        pytest.param(
            [{"set": {"balance": 1.5}}, {"add": {"balance": -0.5}}], {"balance": 1.0}, id="add-negative-float"
        ),
        pytest.param(
            [{"append": {"tags": "a"}}, {"append": {"tags": "a"}}], {"tags": ["a", "a"]}, id="append-keeps-duplicates"
        ),
        pytest.param([{"append": {"tags": ["a", "b"]}}], {"tags": [["a", "b"]]}, id="append-a-list-is-one-item"),
        pytest.param(
            [{"union": {"tags": ["a", "b", "a"]}}, {"union": {"tags": ["b", "c"]}}], {"tags": ["a", "b", "c"]},
            id="union",
        ),
        pytest.param([{"union": {"tags": "a"}}], {"tags": ["a"]}, id="union-one-value"),
        pytest.param(
            [{"set": {"tags": ["a", "b", "a", "c"]}}, {"remove": {"tags": "a"}}], {"tags": ["b", "c"]},
            id="remove-every-copy",
        ),
        pytest.param(
            [{"set": {"tags": ["a", "b", "c"]}}, {"remove": {"tags": ["a", "c"]}}], {"tags": ["b"]}, id="remove-several"
        ),
    ],
)
def test_add_append_union_remove_transform_the_current_value(
    events: list[dict[str, Any]], values: dict[str, Any]
) -> None:
    person = Person()
    for minute, ops in enumerate(events):
        assert person.event(minute, **ops) == []
    assert person.values() == values


def test_an_older_increment_arriving_late_still_counts() -> None:
    person = Person()
    person.event(1, set={"logins": 10})
    person.event(5, add={"logins": 1})
    person.event(3, add={"logins": 1})  # back-filled: older than the last increment
    assert person.values() == {"logins": 12}


def test_an_older_increment_arriving_after_a_newer_set_is_overridden_by_the_set() -> None:
    person = Person()
    person.event(5, set={"logins": 10})
    person.event(3, add={"logins": 1})
    assert person.values() == {"logins": 10}


def test_a_set_older_than_an_increment_loses_to_it() -> None:
    person = Person()
    person.event(5, union={"teams": ["core"]})
    person.event(3, set={"teams": []})
    assert person.values() == {"teams": ["core"]}



@pytest.mark.parametrize(
    "before, ops, message",
    [
        pytest.param({}, {"add": {"logins": "1"}}, "add needs a number, got string", id="add-a-string"),
        pytest.param({}, {"add": {"logins": True}}, "add needs a number, got boolean", id="add-a-boolean"),
        pytest.param(
            {"logins": "many"}, {"add": {"logins": 1}},
            "add needs a number to increment, the stored value is a string", id="add-to-a-string",
        ),
        pytest.param(
            {"logins": 3}, {"append": {"logins": 1}}, "append needs a list, the stored value is a number",
            id="append-to-a-number",
        ),
        pytest.param(
            {"logins": {"a": 1}}, {"union": {"logins": [1]}}, "union needs a list, the stored value is a object",
            id="union-into-an-object",
        ),
        pytest.param(
            {"logins": True}, {"remove": {"logins": 1}}, "remove needs a list, the stored value is a boolean",
            id="remove-from-a-boolean",
        ),
    ],
)
def test_an_operation_on_the_wrong_type_is_refused_with_a_warning(
    before: dict[str, Any], ops: dict[str, Any], message: str
) -> None:
    person = Person()
    person.event(0, set=before)
    [operation] = ops
    assert person.event(1, **ops) == [
        warning(WarningType.INVALID_OPERATION, key="logins", operation=operation, message=message)
    ]
    assert person.values() == before


# -- merges ----------------------------------------------------------------------------------


def attributes(**items: Attribute) -> PersonAttributes:
    return PersonAttributes(dict(items))


def set_at(value: Any, minute: float, seq: int) -> Attribute:
    return Attribute(value, OpKind.SET, at(minute), seq, f"evt-{seq}")


def unset_at(minute: float, seq: int) -> Attribute:
    return Attribute(None, OpKind.UNSET, at(minute), seq, f"evt-{seq}")


def test_merge_keeps_the_targets_value_on_shared_keys_and_every_one_sided_key() -> None:
    target = attributes(plan=set_at("pro", 1, 1), email=set_at("ada@example.com", 1, 1))
    source = attributes(plan=set_at("free", 50, 9), company=set_at("Acme", 2, 2))  # newer, still loses
    merged = source.merged_under(target)
    assert merged.values() == {"plan": "pro", "company": "Acme", "email": "ada@example.com"}
    assert (merged.present_keys, merged.total_bytes) == (
        3,
        encoded_size("plan", "pro") + encoded_size("company", "Acme") + encoded_size("email", "ada@example.com"),
    )


def test_merge_keeps_a_key_that_only_the_source_holds_even_over_a_target_tombstone() -> None:
    target = attributes(plan=unset_at(1, 1), color=unset_at(1, 1))
    source = attributes(plan=set_at("free", 2, 2))
    assert source.merged_under(target).values() == {"plan": "free"}
    assert source.merged_under(target).items["color"].kind is OpKind.UNSET


def test_merge_leaves_both_sides_unchanged() -> None:
    target = attributes(plan=set_at("pro", 1, 1))
    source = attributes(plan=set_at("free", 2, 2), company=set_at("Acme", 2, 2))
    source.merged_under(target)
    assert (target.values(), source.values()) == ({"plan": "pro"}, {"plan": "free", "company": "Acme"})


# -- PII rules -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "has_user_id, ops, values, warnings",
    [
        pytest.param(
            True, {"set": {"email": "ada@example.com"}}, {"email": "ada@example.com"}, [], id="email-key-identified"
        ),
        pytest.param(
            False, {"set": {"email": "ada@example.com"}}, {},
            [warning(WarningType.PII_ON_ANONYMOUS, key="email")], id="email-key-anonymous",
        ),
        pytest.param(
            False, {"set_once": {"email": "not an address"}}, {},
            [warning(WarningType.PII_ON_ANONYMOUS, key="email")], id="anything-under-email-anonymous",
        ),
        pytest.param(False, {"unset": ["email"]}, {}, [], id="unset-email-anonymous"),
        pytest.param(
            True, {"set": {"contact": "ada@example.com"}}, {},
            [warning(WarningType.PII_OUTSIDE_EMAIL, key="contact")], id="email-outside-email-key",
        ),
        pytest.param(
            True, {"set": {"Email": "ada@example.com"}}, {},
            [warning(WarningType.PII_OUTSIDE_EMAIL, key="Email")], id="email-under-capitalised-key",
        ),
        pytest.param(
            True, {"set": {"contacts": ["x", "ada@example.com"]}}, {},
            [warning(WarningType.PII_OUTSIDE_EMAIL, key="contacts")], id="email-inside-a-list",
        ),
        pytest.param(
            True, {"set": {"billing": {"to": {"address": "ada@example.com"}}}}, {},
            [warning(WarningType.PII_OUTSIDE_EMAIL, key="billing")], id="email-inside-an-object",
        ),
        pytest.param(
            True, {"append": {"contacts": "ada@example.com"}}, {},
            [warning(WarningType.PII_OUTSIDE_EMAIL, key="contacts")], id="email-appended",
        ),
        pytest.param(
            False, {"set": {"note": "write to ada@example.com", "site": "example.com", "handle": "@ada"}},
            {"note": "write to ada@example.com", "site": "example.com", "handle": "@ada"}, [],
            id="text-that-is-not-an-address",
        ),
    ],
)
def test_emails_only_under_the_email_key_and_only_with_a_user_id(
    has_user_id: bool, ops: dict[str, Any], values: dict[str, Any], warnings: list[WarningRecord]
) -> None:
    person = Person(has_user_id=has_user_id)
    assert person.event(0, **ops) == warnings
    assert person.values() == values


def test_pii_guard_off_accepts_emails_anywhere() -> None:
    person = Person(AttributePolicy(pii_guard=False))
    assert person.event(0, set={"email": "ada@example.com", "contact": "bob@example.com"}) == []
    assert person.values() == {"email": "ada@example.com", "contact": "bob@example.com"}


# -- attributes disabled, declared types -----------------------------------------------------


def test_attributes_disabled_refuses_every_operation_with_one_warning() -> None:
    person = Person(AttributePolicy(enabled=False))
    warnings = person.event(0, set={"plan": "pro"}, set_once={"source": "ad"}, unset=["x"], add={"logins": 1})
    assert warnings == [warning(WarningType.ATTRIBUTES_DISABLED, keys=["logins", "plan", "source", "x"])]
    assert person.values() == {}


def test_an_event_without_operations_warns_nothing_even_when_attributes_are_disabled() -> None:
    assert Person(AttributePolicy(enabled=False)).event(0) == []


DECLARED = AttributePolicy(
    declared_types={"plan": AttributeType.STRING, "seats": AttributeType.NUMBER, "renews": AttributeType.DATETIME}
)


@pytest.mark.parametrize(
    "ops, values, warnings",
    [
        pytest.param({"set": {"plan": "pro", "seats": 3, "renews": "2026-04-01"}},
                     {"plan": "pro", "seats": 3, "renews": "2026-04-01"}, [], id="matching"),
        pytest.param(
            {"set": {"seats": "3"}}, {},
            [warning(WarningType.PROPERTY_TYPE_MISMATCH, key="seats", expected="number", received="string")],
            id="numeric-string-for-number",
        ),
        pytest.param(
            {"set": {"renews": "next month"}}, {},
            [warning(WarningType.PROPERTY_TYPE_MISMATCH, key="renews", expected="datetime", received="string")],
            id="text-for-datetime",
        ),
        pytest.param(
            {"set_once": {"plan": 1}, "set": {"other": 1}}, {"other": 1},
            [warning(WarningType.PROPERTY_TYPE_MISMATCH, key="plan", expected="string", received="number")],
            id="only-the-mismatching-key-is-dropped",
        ),
        pytest.param(
            {"append": {"seats": 1}}, {},
            [warning(WarningType.PROPERTY_TYPE_MISMATCH, key="seats", expected="number", received="list")],
            id="list-operation-on-a-number-key",
        ),
        pytest.param({"add": {"seats": 2}}, {"seats": 2}, [], id="add-to-a-number-key"),
        pytest.param({"unset": ["seats"]}, {}, [], id="unset-is-never-a-mismatch"),
    ],
)
def test_a_value_of_the_wrong_declared_type_is_dropped(
    ops: dict[str, Any], values: dict[str, Any], warnings: list[WarningRecord]
) -> None:
    person = Person(DECLARED)
    assert person.event(0, **ops) == warnings
    assert person.values() == values


# -- limits ----------------------------------------------------------------------------------


def test_max_keys_refuses_a_new_key_but_updates_existing_ones() -> None:
    person = Person(AttributePolicy(max_keys=2))
    person.event(0, set={"a": 1, "b": 2})
    assert person.event(1, set={"c": 3, "a": 10}, set_once={"d": 4}) == [
        limit("d", "max_keys", 2),
        limit("c", "max_keys", 2),
    ]
    assert person.values() == {"a": 10, "b": 2}


def test_max_keys_counts_only_present_keys() -> None:
    person = Person(AttributePolicy(max_keys=2))
    person.event(0, set={"a": 1, "b": 2})
    person.event(1, unset=["a"])
    assert person.event(2, set={"c": 3}) == []
    assert person.values() == {"b": 2, "c": 3}


def test_max_key_length_refuses_a_longer_key() -> None:
    person = Person(AttributePolicy(max_key_length=5))
    assert person.event(0, set={"plan5": 1, "plan_6": 2}, unset=["unset6"]) == [
        limit("plan_", "max_key_length", 5),
        limit("unset", "max_key_length", 5),
    ]
    assert person.values() == {"plan5": 1}


def test_max_string_length_refuses_and_never_truncates() -> None:
    person = Person(AttributePolicy(max_string_length=10))
    assert person.event(0, set={"ok": "x" * 10, "long": "y" * 11}) == [limit("long", "max_string_length", 10)]
    assert person.values() == {"ok": "x" * 10}


def test_max_total_bytes_refuses_growth_past_the_limit() -> None:
    one_key = encoded_size("a", "x" * 20)
    person = Person(AttributePolicy(max_total_bytes=one_key * 2 - 1))
    person.event(0, set={"a": "x" * 20})
    assert person.event(1, set={"b": "y" * 20}) == [limit("b", "max_total_bytes", one_key * 2 - 1)]
    # Shrinking or replacing with the same size is always allowed.
    assert person.event(2, set={"a": "z" * 20}) == []
    assert person.values() == {"a": "z" * 20}
    assert person.attributes.total_bytes == one_key


def test_list_operations_that_grow_past_a_limit_are_refused() -> None:
    person = Person(AttributePolicy(max_total_bytes=encoded_size("tags", ["a", "b"])))
    person.event(0, append={"tags": "a"})
    person.event(1, append={"tags": "b"})
    assert person.event(2, append={"tags": "c"}) == [limit("tags", "max_total_bytes", encoded_size("tags", ["a", "b"]))]
    assert person.values() == {"tags": ["a", "b"]}


def test_empty_key_is_refused() -> None:
    person = Person()
    assert person.event(0, set={"": 1}) == [limit("", "max_key_length", 200)]
    assert person.values() == {}


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("plain", id="ascii"),
        pytest.param('quote " and \\ backslash', id="escapes"),
        pytest.param("ünïcødé", id="unicode"),
        pytest.param({"a": [1, 2.5, None, True]}, id="object"),
    ],
)
def test_encoded_size_is_the_bytes_of_the_json(value: Any) -> None:
    expected = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()) + len("key") + 4
    assert encoded_size("key", value) == expected


# -- through the engine and the store --------------------------------------------------------


def test_a_tombstone_survives_the_store_and_beats_a_late_older_set(engine) -> None:
    engine.apply(track("anon-1", minute=1, set={"plan": "free", "company": "Acme"}))
    engine.apply(track("anon-1", minute=10, unset=["plan"]))
    engine.apply(track("anon-1", minute=5, set={"plan": "pro"}))
    assert engine.properties("anon-1") == {"company": "Acme"}


def test_set_once_earliest_wins_across_transactions(engine) -> None:
    engine.apply(track("anon-1", minute=10, set_once={"plan": "trial"}))
    engine.apply(track("anon-1", minute=1, set_once={"plan": "beta"}))
    engine.apply(track("anon-1", minute=5, set_once={"plan": "gamma"}))
    assert engine.properties("anon-1") == {"plan": "beta"}


def test_attributes_disabled_in_the_project_still_counts_the_event(make_engine) -> None:
    engine = make_engine(attributes_enabled=False)
    [result] = engine.apply(track("anon-1", set={"plan": "pro"}, uuid="evt-1"))
    assert result.warnings == [
        WarningRecord(WarningType.ATTRIBUTES_DISABLED, ("anon-1",), {"keys": ["plan"]}, "evt-1")
    ]
    assert (engine.properties("anon-1"), engine.event_ids()) == ({}, ["anon-1"])


def test_project_limits_reach_the_engine(make_engine) -> None:
    engine = make_engine(max_string_length=4, property_types={"seats": "number"})
    [result] = engine.apply(identify("user-1", "anon-1", set={"plan": "basic", "seats": "3", "ok": "pro"}, uuid="e-1"))
    assert result.warnings == [
        WarningRecord(
            WarningType.PROPERTY_LIMIT_EXCEEDED,
            ("user-1",),
            {"key": "plan", "limit": "max_string_length", "max": 4},
            "e-1",
        ),
        WarningRecord(
            WarningType.PROPERTY_TYPE_MISMATCH,
            ("user-1",),
            {"key": "seats", "expected": "number", "received": "string"},
            "e-1",
        ),
    ]
    assert engine.properties("user-1") == {"ok": "pro"}


def test_pii_guard_can_be_switched_off_for_a_project(make_engine) -> None:
    engine = make_engine(pii_guard=False)
    engine.apply(track("anon-1", set={"email": "ada@example.com", "contact": "bob@example.com"}))
    assert engine.properties("anon-1") == {"email": "ada@example.com", "contact": "bob@example.com"}
    assert engine.warnings() == []
