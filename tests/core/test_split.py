"""split: chosen distinct ids (or all) become persons of their own again; each new person's
attributes are re-derived from its own ids' events, and user ids stay with their ids (§3)."""

from __future__ import annotations

import pytest

from idstitch.errors import InvalidRequest, NotFound
from idstitch.ids import person_id_for
from tests.core.harness import Link, admin_merge, alias, at, identify, split, track

pytestmark = pytest.mark.both_stores

ADA = "ada@example.com"


@pytest.fixture
def ada(engine):
    """One person: a laptop (anon-1), a phone (anon-2) and the user id user-1, each with its own events."""
    engine.apply(
        track("anon-1", minute=0, set={"plan": "free", "browser": "firefox"}),
        identify("user-1", "anon-1", minute=1, set={"email": ADA, "plan": "pro"}),
        track("anon-2", minute=2, set={"device": "phone"}),
        identify("user-1", "anon-2", minute=3),
    )
    assert engine.persons() == [
        {"distinct_ids": ["anon-1", "anon-2", "user-1"], "user_ids": ["user-1"], "is_identified": True}
    ]
    return engine


def test_split_all_ids_gives_each_id_a_person_of_its_own(ada) -> None:
    person_id = ada.person_id("user-1")
    ada.apply(split(person_id))
    assert ada.persons() == [
        {"distinct_ids": ["anon-1"], "user_ids": [], "is_identified": False},
        {"distinct_ids": ["anon-2"], "user_ids": [], "is_identified": False},
        {"distinct_ids": ["user-1"], "user_ids": ["user-1"], "is_identified": True},
    ]
    assert [ada.person_id(d) for d in ("anon-1", "anon-2", "user-1")] == [
        person_id_for(1, "anon-1"), person_id_for(1, "anon-2"), person_id_for(1, "user-1"),
    ]
    assert ada.links()[-3:] == [
        Link("split", "admin:7", "anon-1", None, None, "split", None),
        Link("split", "admin:7", "user-1", None, None, "split", None),
        Link("split", "admin:7", "anon-2", None, None, "split", None),
    ]
    assert ada.audit() == [("admin:7", "split")]


def test_split_rederives_each_persons_attributes_from_its_own_events(ada) -> None:
    ada.apply(split(ada.person_id("user-1")))
    assert {d: ada.properties(d) for d in ("anon-1", "anon-2", "user-1")} == {
        "anon-1": {"plan": "free", "browser": "firefox"},
        "anon-2": {"device": "phone"},
        "user-1": {"email": ADA, "plan": "pro"},
    }


def test_split_gives_each_person_the_time_of_its_own_first_event(ada) -> None:
    ada.apply(split(ada.person_id("user-1")))
    assert [ada.person(d)["created_at"] for d in ("anon-1", "user-1", "anon-2")] == [at(0), at(1), at(2)]


def test_split_of_chosen_ids_keeps_the_rest_together(ada) -> None:
    person_id = ada.person_id("user-1")
    ada.apply(split(person_id, ("anon-2",)))
    assert ada.persons() == [
        {"distinct_ids": ["anon-1", "user-1"], "user_ids": ["user-1"], "is_identified": True},
        {"distinct_ids": ["anon-2"], "user_ids": [], "is_identified": False},
    ]
    assert ada.person_id("user-1") == person_id
    assert ada.properties("user-1") == {"plan": "pro", "browser": "firefox", "email": ADA}
    assert ada.properties("anon-2") == {"device": "phone"}


def test_split_off_the_user_id_takes_the_identity_with_it(ada) -> None:
    ada.apply(split(ada.person_id("user-1"), ("user-1",)))
    assert ada.persons() == [
        {"distinct_ids": ["anon-1", "anon-2"], "user_ids": [], "is_identified": False},
        {"distinct_ids": ["user-1"], "user_ids": ["user-1"], "is_identified": True},
    ]
    assert ada.properties("anon-1") == {"plan": "free", "browser": "firefox", "device": "phone"}


def test_split_of_every_id_named_explicitly_is_a_split_of_all(ada) -> None:
    ada.apply(split(ada.person_id("user-1"), ("anon-1", "anon-2", "user-1")))
    assert [p["distinct_ids"] for p in ada.persons()] == [["anon-1"], ["anon-2"], ["user-1"]]


def test_split_keeps_each_user_id_of_a_merged_person(engine) -> None:
    engine.apply(identify("user-1", "anon-1"), identify("user-2", "anon-2", minute=1))
    engine.apply(admin_merge("user-1", "user-2"))
    engine.apply(split(engine.person_id("user-1"), ("user-2", "anon-2")))
    assert engine.persons() == [
        {"distinct_ids": ["anon-1", "user-1"], "user_ids": ["user-1"], "is_identified": True},
        {"distinct_ids": ["anon-2"], "user_ids": [], "is_identified": False},
        {"distinct_ids": ["user-2"], "user_ids": ["user-2"], "is_identified": True},
    ]


def test_split_is_the_only_way_back_to_not_identified(engine) -> None:
    engine.apply(track("anon-1"), track("anon-2"), alias("anon-1", "anon-2", minute=1))
    engine.apply(split(engine.person_id("anon-1")))
    assert engine.persons() == [
        {"distinct_ids": ["anon-1"], "user_ids": [], "is_identified": False},
        {"distinct_ids": ["anon-2"], "user_ids": [], "is_identified": False},
    ]


def test_split_brings_back_a_key_another_ids_event_had_unset(engine) -> None:
    engine.apply(track("anon-1", minute=0, set={"plan": "free"}), identify("user-1", "anon-1", minute=1))
    engine.apply(track("user-1", minute=5, unset=["plan"]))
    assert engine.properties("anon-1") == {}
    engine.apply(split(engine.person_id("anon-1")))
    assert (engine.properties("anon-1"), engine.properties("user-1")) == ({"plan": "free"}, {})


def test_split_ignores_operations_of_personless_events(engine) -> None:
    engine.apply(
        track("anon-1", set={"plan": "free"}),
        track("anon-1", minute=1, set={"plan": "ignored"}, process_person=False),
        identify("user-1", "anon-1", minute=2),
    )
    engine.apply(split(engine.person_id("anon-1")))
    assert engine.properties("anon-1") == {"plan": "free"}


def test_events_after_a_split_follow_their_own_id(ada) -> None:
    ada.apply(split(ada.person_id("user-1")))
    ada.apply(track("anon-2", minute=60, set={"device": "tablet"}), track("user-1", minute=60, add={"logins": 1}))
    assert (ada.properties("anon-2"), ada.properties("user-1")) == (
        {"device": "tablet"},
        {"email": ADA, "plan": "pro", "logins": 1},
    )
    # Events keep their distinct id; nothing was rewritten.
    assert ada.event_ids() == ["anon-1", "user-1", "anon-2", "user-1", "anon-2", "user-1"]


def test_split_ids_can_be_identified_again(ada) -> None:
    ada.apply(split(ada.person_id("user-1")))
    ada.apply(identify("user-1", "anon-2", minute=70))
    assert ada.persons() == [
        {"distinct_ids": ["anon-1"], "user_ids": [], "is_identified": False},
        {"distinct_ids": ["anon-2", "user-1"], "user_ids": ["user-1"], "is_identified": True},
    ]
    assert ada.properties("anon-2") == {"device": "phone", "email": ADA, "plan": "pro"}


@pytest.mark.parametrize(
    "distinct_ids, message",
    [
        pytest.param(("anon-9",), r"Distinct ids \['anon-9'\] do not belong to person", id="stranger"),
        pytest.param((), "Choose at least one distinct id to split off", id="none-chosen"),
    ],
)
def test_split_refuses_ids_it_cannot_split(ada, distinct_ids, message) -> None:
    with pytest.raises(InvalidRequest, match=message):
        ada.apply(split(ada.person_id("user-1"), distinct_ids))
    assert len(ada.persons()) == 1


def test_split_of_a_person_with_one_id_is_refused(engine) -> None:
    engine.apply(track("anon-1"))
    with pytest.raises(InvalidRequest, match="has nothing to split"):
        engine.apply(split(engine.person_id("anon-1")))


def test_split_of_an_unknown_person_is_not_found(engine) -> None:
    with pytest.raises(NotFound, match="No person with id 'no-such-person'"):
        engine.apply(split("no-such-person"))


def test_split_in_the_same_transaction_as_the_events_rederives_from_them(engine) -> None:
    engine.apply(identify("user-1", "anon-1", minute=0))
    person_id = engine.person_id("user-1")
    commands = (
        track("anon-1", minute=1, set={"plan": "free"}),
        track("user-1", minute=2, set={"email": ADA}),
        split(person_id),
    )
    engine.apply(*commands)
    assert (engine.properties("anon-1"), engine.properties("user-1")) == ({"plan": "free"}, {"email": ADA})
    assert engine.event_ids() == ["user-1", "anon-1", "user-1"]


def test_split_keeps_first_touch_attributes_and_first_seen_from_events_without_operations(engine) -> None:
    engine.apply(
        track("anon-1", minute=0, properties={"$current_url": "https://shop.example/?utm_source=ads", "utm_source": "ads"}),
        identify("user-1", "anon-1", minute=5, set={"plan": "pro"}),
    )
    engine.apply(split(engine.person_id("user-1")))
    assert engine.properties("anon-1") == {
        "$initial_current_url": "https://shop.example/?utm_source=ads",
        "$initial_utm_source": "ads",
        "$current_url": "https://shop.example/?utm_source=ads",
        "utm_source": "ads",
    }
    assert engine.person("anon-1")["created_at"] == at(0)
