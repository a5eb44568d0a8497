"""track: ordinary events, attributed through the mapping (identity-rules.md §3, §6, §8)."""

from __future__ import annotations

import pytest

from idstitch.ids import person_id_for
from tests.core.harness import at, identify, track

pytestmark = pytest.mark.both_stores


def test_an_event_from_a_new_id_creates_an_anonymous_person(engine) -> None:
    [result] = engine.apply(track("anon-1", minute=3))
    person = engine.person("anon-1")
    assert person == {
        "person_id": person_id_for(1, "anon-1"),
        "distinct_ids": ["anon-1"],
        "user_ids": [],
        "is_identified": False,
        "created_at": at(3),
        "properties": {},
    }
    assert result.person_id == person["person_id"]


def test_a_late_older_event_moves_created_at_back(engine) -> None:
    engine.apply(track("anon-1", minute=10))
    engine.apply(track("anon-1", minute=2), track("anon-1", minute=20))
    assert (engine.persons(), engine.person("anon-1")["created_at"]) == (
        [{"distinct_ids": ["anon-1"], "user_ids": [], "is_identified": False}],
        at(2),
    )


def test_resending_an_event_uuid_is_idempotent(engine) -> None:
    first = engine.apply(
        track("anon-1", uuid="evt-1", add={"logins": 1}), track("anon-1", uuid="evt-1", add={"logins": 1})
    )
    again = engine.apply(track("anon-1", uuid="evt-1", add={"logins": 1}))
    assert [r.duplicate for r in first + again] == [False, True, True]
    assert (engine.event_ids(), engine.properties("anon-1")) == (["anon-1"], {"logins": 1})


def test_a_duplicate_identify_is_not_applied_twice(engine) -> None:
    engine.apply(identify("user-1", "anon-1", uuid="evt-identify"))
    [result] = engine.apply(identify("user-1", "anon-1", uuid="evt-identify"))
    assert result.duplicate is True
    assert len(engine.links()) == 1


def test_a_personless_event_is_stored_but_creates_and_updates_no_person(engine) -> None:
    engine.apply(track("anon-1", process_person=False, set={"plan": "pro"}))
    assert (engine.event_ids(), engine.persons()) == (["anon-1"], [])
    engine.apply(track("anon-2"), track("anon-2", minute=-5, process_person=False, set={"plan": "pro"}))
    assert engine.person("anon-2")["properties"] == {}
    assert engine.person("anon-2")["created_at"] == at(0)


def test_identified_only_creates_no_person_until_identify(make_engine) -> None:
    engine = make_engine(person_profiles="identified_only")
    engine.apply(track("anon-1", set={"plan": "free"}))
    assert (engine.persons(), engine.event_ids()) == ([], ["anon-1"])
    engine.apply(identify("user-1", "anon-1", minute=1), track("anon-1", minute=2, set={"plan": "pro"}))
    assert engine.persons() == [{"distinct_ids": ["anon-1", "user-1"], "user_ids": ["user-1"], "is_identified": True}]
    assert engine.properties("anon-1") == {"plan": "pro"}


def test_events_from_an_illegal_id_are_still_ingested(engine) -> None:
    engine.apply(track("undefined"), track("null", minute=1))
    assert engine.event_ids() == ["undefined", "null"]
    assert engine.links() == []


def test_first_touch_attributes_keep_the_earliest_page_whatever_the_arrival_order(engine) -> None:
    engine.apply(track("anon-1", minute=10, properties={"$referrer": "https://later.example/", "utm_source": "mail"}))
    engine.apply(track("anon-1", minute=1, properties={"$referrer": "https://news.ycombinator.com/"}))
    assert engine.properties("anon-1") == {
        "$initial_referrer": "https://news.ycombinator.com/",
        "$initial_utm_source": "mail",
        # The latest values are the newest event's, though it arrived first.
        "$referrer": "https://later.example/",
        "utm_source": "mail",
    }


def test_first_touch_attributes_warn_nothing_and_stop_when_attributes_are_disabled(make_engine) -> None:
    engine = make_engine(attributes_enabled=False)
    [result] = engine.apply(track("anon-1", properties={"$referrer": "https://news.ycombinator.com/"}))
    assert (result.warnings, engine.properties("anon-1")) == ([], {})
