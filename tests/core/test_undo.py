"""Undo one link (identity-rules.md §3, undo): the persons become what they would be had that
identify, alias or merge never happened; later links that do not depend on it stay."""

from __future__ import annotations

import pytest

from idstitch.commands import ImportPerson
from idstitch.errors import Conflict, InvalidRequest, NotFound
from tests.core.harness import ADMIN, RECEIVED_AT, Engine, admin_merge, alias, identify, split, track

pytestmark = pytest.mark.both_stores


def kiosk_history(engine: Engine) -> int:
    """Two customers, each identified on their own device; an operator merges them by mistake."""
    engine.apply(track("kiosk-ann", set={"plan": "pro"}, minute=1), identify("ann", "kiosk-ann", minute=2, set={"email": "ann@example.com"}))
    engine.apply(track("phone-bob", minute=3), identify("bob", "phone-bob", minute=4, set={"email": "bob@example.com", "plan": "free"}))
    engine.apply(admin_merge("ann", "bob"))
    return engine.link_ids()[-1]


def test_undoing_an_admin_merge_gives_both_customers_back_their_ids_and_attributes(engine: Engine) -> None:
    merge = kiosk_history(engine)
    assert engine.person("bob")["distinct_ids"] == ["ann", "bob", "kiosk-ann", "phone-bob"]

    undone = engine.undo(merge)

    assert not undone.redo
    ann, bob = engine.person("ann"), engine.person("bob")
    assert ann["distinct_ids"] == ["ann", "kiosk-ann"] and bob["distinct_ids"] == ["bob", "phone-bob"]
    assert ann["properties"] == {"email": "ann@example.com", "plan": "pro"}
    assert bob["properties"] == {"email": "bob@example.com", "plan": "free"}
    assert ann["user_ids"] == ["ann"] and bob["user_ids"] == ["bob"]
    assert engine.outcome_now(merge) == "undone"
    assert [link.kind for link in engine.links()][-1] == "undo"


def test_undoing_the_undo_redoes_the_merge(engine: Engine) -> None:
    merge = kiosk_history(engine)
    merged = engine.persons()
    first = engine.undo(merge)

    redo = engine.undo(first.undo_id)

    assert redo.redo
    assert engine.persons() == merged
    assert engine.outcome_now(merge) == "merged"
    with pytest.raises(Conflict, match="already undone"):
        engine.undo(first.undo_id)


def test_an_entry_cannot_be_undone_twice(engine: Engine) -> None:
    merge = kiosk_history(engine)
    engine.undo(merge)
    with pytest.raises(Conflict, match=f"Entry {merge} is already undone"):
        engine.undo(merge)


def test_a_later_identify_refused_because_of_the_undone_alias_now_attaches(engine: Engine) -> None:
    # The alias wrongly joined a shared tablet to Ann; Bob's identify on it was then refused.
    engine.apply(identify("ann", "phone-ann", minute=1))
    engine.apply(track("tablet", minute=2))
    engine.apply(alias("ann", "tablet", minute=3))
    wrong = engine.link_ids()[-1]
    engine.apply(identify("bob", "tablet", minute=4))
    refused = engine.link_ids()[-1]
    assert engine.outcome_now(refused) == "refused"

    engine.undo(wrong)

    assert engine.person("tablet")["distinct_ids"] == ["bob", "tablet"]
    assert engine.person("ann")["distinct_ids"] == ["ann", "phone-ann"]
    assert engine.outcome_now(refused) == "attached"


def test_undoing_an_identify_keeps_its_event_on_the_id_that_sent_it(engine: Engine) -> None:
    engine.apply(track("anon", minute=1, set={"plan": "pro"}))
    engine.apply(identify("ann", "anon", minute=2, set={"name": "Ann"}))
    engine.undo(engine.link_ids()[-1])

    assert engine.persons() == [
        {"distinct_ids": ["ann"], "user_ids": [], "is_identified": False},
        {"distinct_ids": ["anon"], "user_ids": [], "is_identified": False},
    ]
    assert engine.properties("ann") == {"name": "Ann"}
    assert engine.properties("anon") == {"plan": "pro"}


def test_undo_names_an_entry_of_the_log(engine: Engine) -> None:
    with pytest.raises(NotFound):
        engine.undo(12345)


def test_an_import_is_not_undone_but_split_or_deleted(engine: Engine) -> None:
    engine.apply(ImportPerson(("crm-1", "anon-9"), ("crm-1",), {"plan": "pro"}, True, RECEIVED_AT, ADMIN))
    with pytest.raises(InvalidRequest, match="import"):
        engine.undo(engine.link_ids()[0])


@pytest.mark.parametrize("refusing", [{"attributes_enabled": False}, {"pii_guard": True}])
def test_what_a_rule_refused_stays_refused_after_the_rule_is_lifted(make_engine, refusing) -> None:
    """A value refused at ingest (attributes off; an email on an anonymous visitor) does not come
    back when a split or an undo re-derives the person after the setting changed."""
    engine = make_engine(**refusing)
    engine.apply(track("anon", minute=1, set={"email": "ann@example.com", "plan": "pro"},
                       properties={"$browser": "Firefox", "$current_url": "https://shop.example/"}))
    refused = engine.properties("anon")
    engine.settings = engine.settings.updated({"attributes_enabled": True, "pii_guard": False})
    engine.apply(identify("ann", "anon", minute=2))
    link = engine.link_ids()[-1]

    engine.undo(link)
    assert engine.properties("anon") == refused
    engine.undo(engine.link_ids()[-1])  # redo
    engine.run(lambda batch: batch.apply(split(engine.person_id("ann"))))
    assert engine.properties("anon") == refused
