"""Which expired events retention deletes whole and which it keeps for replays (store/retention.py),
each rule with the replay that would go wrong without it. tests/core/test_undo_equals_replay.py
holds the property over random histories; these are its cases, by rule."""

from __future__ import annotations

import json
from typing import Any

import pytest

from idstitch.clock import format_time
from idstitch.commands import ImportPerson
from idstitch.store.retention import expire_batch
from tests.core.harness import ADMIN, PROJECT_ID, RECEIVED_AT, Engine, at, identify, split, track

pytestmark = pytest.mark.both_stores

DAY = 24 * 60


def expire_before(engine: Engine, minute: float, *, limit: int = 2) -> None:
    """Every event before `minute` expires, in batches of `limit`, each alone as the writer runs it."""
    resume: str | None = None
    while True:
        done = engine.run(lambda _: expire_batch(engine.conn, PROJECT_ID, format_time(at(minute)), resume=resume, limit=limit))
        if not done.more:
            return
        resume = done.resume


def kept_apart(engine: Engine) -> dict[str, dict[str, Any]]:
    """What retention kept of expired events, by uuid: the name, the operations, the properties."""
    rows = engine.conn.execute("SELECT uuid, event, ops, lifted FROM retired_events ORDER BY seq").fetchall()
    return {r[0]: {"event": r[1], "ops": r[2] and json.loads(r[2]), "lifted": r[3] and json.loads(r[3])} for r in rows}


def later(engine: Engine) -> None:
    """An event retention leaves, after the others (the greatest seq is never deleted on SQLite)."""
    engine.apply(track("someone-else", "Ping", minute=3 * DAY))


def stored(engine: Engine) -> list[str]:
    return [r[0] for r in engine.conn.execute("SELECT uuid FROM events ORDER BY seq")]


def test_a_run_of_plain_events_leaves_its_first(engine: Engine) -> None:
    engine.apply(*(track("anon-1", "Ping", minute=m, uuid=f"ping-{m}") for m in range(4)))
    engine.apply(track("anon-1", "Ping", minute=60, uuid="ping-60"))
    later(engine)
    person = engine.person("anon-1")

    expire_before(engine, 10)

    assert list(kept_apart(engine)) == ["ping-0"]
    assert stored(engine)[:1] == ["ping-60"]
    assert engine.person("anon-1") == person


def test_an_event_with_operations_or_page_properties_is_kept_with_only_those(engine: Engine) -> None:
    engine.apply(
        track("anon-1", minute=0, uuid="page", properties={"$current_url": "https://shop.example/", "colour": "red"}),
        track("anon-1", "Chose plan", minute=1, uuid="plan", set={"plan": "pro"}),
        track("anon-1", "Ping", minute=2, uuid="ping", properties={"colour": "red"}),
        identify("user-1", "anon-1", minute=30, set={"name": "Ann"}),
    )
    later(engine)
    person = engine.person("anon-1")

    expire_before(engine, 10)

    assert kept_apart(engine) == {
        "page": {"event": "$pageview", "ops": None, "lifted": {"$current_url": "https://shop.example/"}},
        "plan": {"event": "Chose plan", "ops": {"set": {"plan": "pro"}}, "lifted": None},
    }
    assert engine.person("anon-1") == person
    # A split re-derives each id's attributes from what was kept.
    engine.apply(split(person["person_id"]))
    assert engine.person("anon-1")["properties"] == {
        "$current_url": "https://shop.example/", "$initial_current_url": "https://shop.example/", "plan": "pro",
    }


def test_an_identify_is_kept_and_undone_after_retention_as_before(engine: Engine) -> None:
    engine.apply(track("anon-1", "Ping", minute=0), identify("user-1", "anon-1", minute=5, uuid="login", set={"plan": "pro"}))
    engine.apply(track("anon-1", "Ping", minute=60))
    [link_id] = engine.link_ids()

    expire_before(engine, 10)
    engine.undo(link_id)

    assert "login" in kept_apart(engine)
    assert [p["distinct_ids"] for p in engine.persons()] == [["anon-1"], ["user-1"]]
    assert engine.person("user-1")["properties"] == {"plan": "pro"}
    assert engine.person("anon-1")["created_at"] == at(0)


def test_a_personless_event_does_not_cover_the_one_that_made_the_person(engine: Engine) -> None:
    """Without the second event, an undo of the identify would leave anon-1 without a person."""
    engine.apply(track("anon-1", "Ping", minute=0, uuid="personless", process_person=False))
    engine.apply(track("anon-1", "Ping", minute=5, uuid="first-person"))
    engine.apply(identify("user-1", "anon-1", minute=30))
    [link_id] = engine.link_ids()

    expire_before(engine, 10)
    engine.undo(link_id)

    assert {"personless", "first-person"} <= set(kept_apart(engine))
    assert [p["distinct_ids"] for p in engine.persons()] == [["anon-1"], ["user-1"]]
    assert engine.person("anon-1")["created_at"] == at(5)


@pytest.mark.parametrize("changes", [pytest.param({}, id="always"), pytest.param({"person_profiles": "identified_only"}, id="identified-only")])
def test_an_event_after_an_entry_naming_its_id_is_kept(make_engine, changes: dict[str, Any]) -> None:
    """Only an entry naming an id gives it a person where events do not: a late event of the id,
    after its identify, makes the person older; the undo and redo of that identify must see it."""
    engine = make_engine(**changes)
    engine.apply(track("anon-1", "Ping", minute=0, uuid="before-login"))
    engine.apply(identify("user-1", "anon-1", minute=20))
    engine.apply(track("anon-1", "Ping", minute=5, uuid="late"))  # sent late: older than the identify
    later(engine)
    [link_id] = engine.link_ids()
    before = engine.person("user-1")

    expire_before(engine, 10)
    undo = engine.undo(link_id)
    engine.undo(undo.undo_id)

    assert {"before-login", "late"} <= set(kept_apart(engine))
    assert engine.person("user-1") == before
    assert before["created_at"] == at(0 if not changes else 5)


def test_an_import_does_not_cover_the_events_after_it(engine: Engine) -> None:
    """A rewritten history may refuse an import (an id of it taken earlier), and its event with it."""
    engine.apply(ImportPerson(("crm-1",), ("crm-1",), {"plan": "pro"}, True, RECEIVED_AT, ADMIN))
    engine.apply(track("crm-1", "Ping", minute=DAY + 30, uuid="after-import"))
    engine.apply(track("crm-1", "Ping", minute=DAY + 40, uuid="covered"))
    later(engine)

    expire_before(engine, 2 * DAY)

    assert [row["event"] for row in kept_apart(engine).values()] == ["$import", "Ping"]
    assert "after-import" in kept_apart(engine) and "covered" not in kept_apart(engine)


def test_the_last_event_is_kept_so_that_its_seq_is_never_taken_again(engine: Engine) -> None:
    """On SQLite the next seq is the greatest held plus one: a deleted last event would hand its
    seq to the next event, which the analytics feed, already past it, would never copy."""
    engine.apply(track("anon-1", "Ping", minute=0), track("anon-1", "Ping", minute=1, uuid="last"))
    [last] = engine.conn.execute("SELECT seq FROM events WHERE uuid = 'last'").fetchone()

    expire_before(engine, 10)
    engine.apply(track("anon-2", "Ping", minute=60, uuid="next"))

    assert engine.conn.execute("SELECT seq FROM events WHERE uuid = 'next'").fetchone()[0] > last
