"""What a user sees of the analytics copy: a merge made a moment ago is in the next breakdown, a
split's ids count as two persons at once, an erased person's events leave the copy, and a feeder
restarted (mid-way, or on a re-opened file) stores nothing twice. Each answer is compared with
the store's and with the numbers a person would expect."""

from __future__ import annotations

from contextlib import closing
from typing import Any

import duckdb
import pytest

from idstitch.analytics import feeder as feeder_module
from idstitch.analytics.duckdb_engine import DuckDBEngine
from idstitch.query import counts, people
from idstitch.query.compiler import EVENTS, PERSONS, where_clause
from idstitch.query.counts import CountSpec
from idstitch.query.filters import parse_filter
from idstitch.store.feed import FeedPosition
from tests.analytics.sites import NOW, Site, at, open_site


def track(distinct_id: str, day: int, event: str = "$pageview", **properties: Any) -> dict[str, Any]:
    return {"type": "track", "distinct_id": distinct_id, "event": event, "timestamp": at(day), "properties": properties}


def identify(user_id: str, anonymous_id: str | None, day: int, **attributes: Any) -> dict[str, Any]:
    return {"type": "identify", "user_id": user_id, "anonymous_id": anonymous_id, "timestamp": at(day), "set": attributes}


PERSONS_BY_PLAN = CountSpec(measure="persons", interval=None, breakdown_attribute="plan")
EVENTS_BY_DAY = CountSpec(measure="events", interval="day")


def by_value(answer: dict[str, Any]) -> dict[Any, int]:
    return {series["breakdown"]: series["total"] for series in answer["series"]}


def answers(site: Site, spec: CountSpec, filter_document: Any = None) -> dict[str, Any]:
    """The copy's answer, once it has caught up, after checking it is the store's."""
    site.catch_up()
    found = site.count(site.copy(), spec, filter_document)
    assert found == site.count(site.conn, spec, filter_document)
    return found  # type: ignore[no-any-return]


def copied_events(site: Site) -> list[tuple[int, str]]:
    # DuckDB's copy holds its own number of each distinct id, and their texts in `id_keys`.
    sql = (
        "SELECT e.seq, k.distinct_id FROM events e JOIN id_keys k ON k.id_key = e.id_key ORDER BY e.seq"
        if site.engine.name == "duckdb" else "SELECT seq, distinct_id FROM events ORDER BY seq"
    )
    return [tuple(r) for r in site.copy().execute(sql).fetchall()]


def stored_events(site: Site) -> list[tuple[int, str]]:
    return [tuple(r) for r in site.conn.execute("SELECT seq, distinct_id FROM events ORDER BY seq").fetchall()]


def test_a_merge_made_a_moment_ago_is_in_the_next_breakdown(site):
    site.send(
        identify("user-1", "anon-1", 1, plan="pro"),
        track("anon-1", 1), track("anon-2", 2), track("anon-3", 3),
    )
    assert by_value(answers(site, PERSONS_BY_PLAN)) == {None: 2, "pro": 1}
    site.merge("user-1", "anon-2")
    # The next question, with no wait: anon-2's event is the pro person's now.
    assert by_value(answers(site, PERSONS_BY_PLAN)) == {None: 1, "pro": 1}
    assert answers(site, CountSpec(measure="persons", interval=None), {"did": "$pageview", "min_count": 2})["total"] == 1


def test_an_identify_joining_two_persons_shows_at_once(site):
    site.send(identify("user-1", None, 1, plan="pro"), track("anon-1", 2), track("anon-1", 3))
    assert by_value(answers(site, PERSONS_BY_PLAN)) == {None: 1, "pro": 1}
    site.send(identify("user-1", "anon-1", 4))
    assert by_value(answers(site, PERSONS_BY_PLAN)) == {"pro": 1}


def test_a_splits_ids_count_as_two_persons_at_once(site):
    site.send(identify("user-1", "anon-1", 1, plan="pro"), track("anon-1", 2), track("user-1", 3))
    assert answers(site, CountSpec(measure="persons", interval=None))["total"] == 1
    site.split("anon-1", only_this_id=True)
    assert answers(site, CountSpec(measure="persons", interval=None))["total"] == 2
    # anon-1 is its own person, created by its own first event, without the identify's attribute.
    assert by_value(answers(site, PERSONS_BY_PLAN)) == {None: 1, "pro": 1}
    assert answers(site, CountSpec(measure="new_persons", interval=None))["total"] == 2


def test_an_undone_identify_shows_at_once(site):
    site.send(track("anon-1", 1), identify("user-1", "anon-1", 2, plan="pro"))
    assert by_value(answers(site, PERSONS_BY_PLAN)) == {"pro": 1}
    [identify_link] = site.undoable_links()
    site.undo(identify_link)
    assert by_value(answers(site, PERSONS_BY_PLAN)) == {None: 1, "pro": 1}
    site.undo(site.undoable_links()[-1])  # the undo's own entry: a redo
    assert by_value(answers(site, PERSONS_BY_PLAN)) == {"pro": 1}


def test_an_erased_persons_events_leave_the_copy(site):
    site.send(identify("user-1", "anon-1", 1, plan="pro"), track("anon-1", 2), track("anon-2", 3), track("anon-2", 4))
    assert answers(site, EVENTS_BY_DAY)["total"] == 4
    site.erase("user-1")
    assert answers(site, EVENTS_BY_DAY)["total"] == 2
    assert [d for _, d in copied_events(site)] == ["anon-2", "anon-2"]
    assert site.copy().execute("SELECT count(*) FROM persons").fetchone()[0] == 1
    assert site.copy().execute("SELECT count(*) FROM person_attributes").fetchone()[0] == 0


def test_an_erasure_keeping_anonymised_counts_keeps_the_events_without_their_person(site):
    site.send(identify("user-1", "anon-1", 1, plan="pro"), track("anon-1", 2, plan="pro"), track("anon-2", 3))
    site.catch_up()
    site.erase("anon-1", keep_anonymised_counts=True)
    assert answers(site, EVENTS_BY_DAY)["total"] == 3
    assert by_value(answers(site, CountSpec(measure="events", interval=None, breakdown_property="plan"))) == {None: 3}
    assert answers(site, CountSpec(measure="persons", interval=None))["total"] == 1
    assert copied_events(site) == stored_events(site)


def test_events_sent_after_the_newest_were_erased_reach_the_copy(site):
    """An erasure of the newest events must not free their seqs: the copy has read past them, and
    an event stored again under one of them would never reach it."""
    site.send(track("anon-1", 1), track("anon-2", 2), track("anon-2", 3))
    site.catch_up()
    site.erase("anon-2")
    site.catch_up()
    site.send(track("anon-3", 4), track("anon-3", 5))
    assert answers(site, EVENTS_BY_DAY)["total"] == 3
    assert copied_events(site) == stored_events(site)


def test_a_person_changed_after_the_newest_changes_were_erased_reaches_the_copy(site):
    """An erasure must not free the numbers of the journal rows it drops: the copy has read past
    them, and a change numbered again with one of them would never reach it. Here the person
    made again under the erased one's id (UUIDv5 of user-1) begins later than the old one did."""
    site.send(track("anon-1", 1), identify("user-1", "anon-1", 5, plan="pro"))
    site.catch_up()
    site.erase("user-1")
    site.send(identify("user-1", None, 2, plan="free"))
    assert by_value(answers(site, PERSONS_BY_PLAN)) == {"free": 1}
    persons = "SELECT id, created_at FROM persons ORDER BY id"
    assert [tuple(r) for r in site.copy().execute(persons).fetchall()] == [tuple(r) for r in site.conn.execute(persons).fetchall()]


def test_a_copy_of_another_store_starts_over(analytics_engine, site_directories):
    with open_site(site_directories(), analytics_engine) as first:
        first.send(track("anon-1", 1), track("anon-2", 2), identify("user-1", "anon-1", 3, plan="pro"))
        first.catch_up()
        with open_site(site_directories(), analytics_engine) as second:
            second.send(track("anon-9", 5))
            assert by_value(answers(second, PERSONS_BY_PLAN)) == {None: 1}
            assert copied_events(second) == stored_events(second)
            assert second.copy().execute("SELECT count(*) FROM persons").fetchone()[0] == 1
        # And back: the first store's copy is made again, whole.
        first.feeder = first.new_feeder()
        assert by_value(answers(first, PERSONS_BY_PLAN)) == {None: 1, "pro": 1}
        assert copied_events(first) == stored_events(first)


@pytest.fixture
def small_steps(monkeypatch):
    """A step reads 3 events and 2 person changes at most, so a feed takes many steps."""
    monkeypatch.setattr(feeder_module, "STEP_EVENTS", 3)
    monkeypatch.setattr(feeder_module, "STEP_PERSONS", 2)


def many_persons(site: Site) -> None:
    site.send(
        *[track(f"anon-{i}", i % 9, plan=["free", "pro"][i % 2]) for i in range(12)],
        identify("user-1", "anon-1", 9, plan="pro"), identify("user-2", "anon-2", 9, plan="free"),
        identify("user-3", "anon-3", 10),
    )


def test_a_feeder_restarted_mid_way_stores_nothing_twice(site, small_steps):
    many_persons(site)
    while site.engine.state().position.seq == 0:  # every person copied, then a step of events
        site.feeder.step()
    position = site.engine.state().position
    assert 0 < position.seq < len(stored_events(site))
    site.feeder.stop()
    site.feeder = site.new_feeder()  # as after a restart: resumes where the copy's position says
    site.merge("user-1", "anon-5")
    site.send(track("anon-20", 11))
    assert by_value(answers(site, PERSONS_BY_PLAN)) == {None: 10, "pro": 1, "free": 1}
    assert copied_events(site) == stored_events(site)
    assert answers(site, EVENTS_BY_DAY)["total"] == 16


def test_the_first_copy_is_made_a_page_of_persons_at_a_time_and_says_so(site, small_steps):
    """A large store's first copy takes a while: each step copies a page of persons, so a read
    waits for one page at most (the store answers meanwhile), and the lag says how far it is."""
    many_persons(site)
    assert site.feeder.step() == 2
    lag = site.feeder.lag.to_json()
    assert lag["caught_up"] is False and lag["error"] == "making the first copy: 2 persons so far"
    assert site.copy().execute("SELECT count(*) FROM persons").fetchone()[0] == 2
    assert by_value(answers(site, PERSONS_BY_PLAN)) == {None: 10, "pro": 1, "free": 1}
    assert site.feeder.lag.caught_up


class FailingOnce:
    """The session's engine, whose `apply` fails once, the n-th time (a crash mid-way)."""

    def __init__(self, engine: Any, failing_apply: int) -> None:
        self._engine, self._left = engine, failing_apply

    def apply(self, batch: Any) -> None:
        self._left -= 1
        if self._left == 0:
            raise OSError("the disk went away")
        self._engine.apply(batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


def test_a_first_copy_stopped_mid_way_copies_every_person_after_a_restart(site, small_steps):
    """The first copy walks every person (a store from before the journal names few of them in
    it); a walk stopped part way is made again, not taken for done."""
    many_persons(site)
    with closing(site.store.connect()) as conn:
        conn.execute("DELETE FROM person_changes")  # as in a store older than the journal
        conn.commit()
    site.feeder.stop()
    crashing = site.new_feeder()
    crashing.engine = FailingOnce(site.engine, failing_apply=3)
    crashing.step()
    crashing.step()
    with pytest.raises(OSError):  # the third page of persons
        crashing.step()
    site.feeder = site.new_feeder()
    site.catch_up()
    persons = "SELECT id, created_at FROM persons ORDER BY id"
    assert [tuple(r) for r in site.copy().execute(persons).fetchall()] == [tuple(r) for r in site.conn.execute(persons).fetchall()]
    assert by_value(answers(site, PERSONS_BY_PLAN)) == {None: 10, "pro": 1, "free": 1}


def test_reopening_the_copy_file_stores_nothing_twice(site_directories, tmp_path, small_steps):
    path = tmp_path / "analytics.duckdb"
    engine = DuckDBEngine(path)
    engine.prepare()
    with open_site(site_directories(), engine) as site:
        many_persons(site)
        site.catch_up()
        before = site.count(site.copy(), PERSONS_BY_PLAN), copied_events(site)
        site.feeder.stop()
        engine.close()
        # A restarted server: the same file, a new engine and feeder that find nothing to do.
        site.engine = engine = DuckDBEngine(path)
        engine.prepare()
        site.feeder = site.new_feeder()
        assert site.feeder.step() == 0
        assert (site.count(site.copy(), PERSONS_BY_PLAN), copied_events(site)) == before
        site.send(track("anon-1", 12), track("anon-30", 12))
        assert answers(site, EVENTS_BY_DAY)["total"] == 17
        assert copied_events(site) == stored_events(site)
    engine.close()


def test_a_copy_in_an_older_format_is_made_again_from_the_store(site_directories, tmp_path):
    path = tmp_path / "analytics.duckdb"
    # An older idstitch's copy: events and the mapping by the distinct id's text, caught up.
    older = duckdb.connect(str(path))
    older.execute(
        "CREATE TABLE events (seq BIGINT, project_id INTEGER, distinct_id VARCHAR, event VARCHAR, timestamp VARCHAR,"
        " session_id VARCHAR, properties VARCHAR)"
    )
    older.execute("INSERT INTO events VALUES (1, 1, 'anon-1', '$pageview', '2026-01-01T00:00:00.000Z', NULL, '{}')")
    older.execute("CREATE TABLE copy_state (store_id VARCHAR, seq BIGINT, person_change BIGINT, event_change BIGINT)")
    older.execute("INSERT INTO copy_state VALUES ('some store', 1, 1, 0)")
    older.close()
    engine = DuckDBEngine(path)
    engine.prepare()
    assert engine.state().store_id is None and engine.state().position == FeedPosition()
    with open_site(site_directories(), engine) as site:
        site.send(identify("user-1", "anon-1", 1, plan="pro"), track("anon-1", 2), track("anon-2", 3))
        assert by_value(answers(site, PERSONS_BY_PLAN)) == {None: 1, "pro": 1}
        assert copied_events(site) == stored_events(site)
    engine.close()


def test_an_erasure_leaves_no_journal_row_of_a_person_its_ids_made(site):
    """A person merged into the erased one is gone already, but its journal row named it by an id
    made from one of the erased ids (identity-rules.md §3: UUIDv5 of the first distinct id)."""
    site.send(track("anon-1", 1), track("anon-2", 2))
    site.send(identify("user-1", "anon-1", 3))
    site.send(identify("user-1", "anon-2", 4))  # anon-2's person merged into user-1's
    site.catch_up()
    site.erase("user-1")
    assert site.conn.execute("SELECT person_id FROM person_changes").fetchall() == []
    assert answers(site, CountSpec(measure="persons", interval=None))["total"] == 0
    assert site.copy().execute("SELECT count(*) FROM persons").fetchone()[0] == 0


def test_a_page_asking_twice_of_one_did_condition_computes_its_persons_once(site):
    """The segment page's persons list and chart of one `did` filter: the same answers as asked
    apart, from one computation of the set on an engine that keeps it (DuckDB)."""
    site.send(*(track("anon-1", day) for day in range(1, 4)), track("anon-2", 2), identify("user-1", "anon-1", 4, plan="pro"))
    site.catch_up()
    node = parse_filter({"did": "$pageview", "min_count": 2})
    kept_while_asking: list[int] = []

    def both(conn, compiler):
        with compiler.sharing_person_sets():
            members = people.newest_and_count(conn, site.project_id, where_clause(compiler, PERSONS, node, None), 10, 100,
                                              details=site.conn)
            chart = counts.count(conn, site.project_id, PERSONS_BY_PLAN, where_clause(compiler, EVENTS, node, None), NOW)
            kept_while_asking.append(temporary_tables(conn))
        return [p["id"] for p in members[0]], members[1], chart

    def apart(conn, compiler):
        members = people.newest_and_count(conn, site.project_id, where_clause(compiler, PERSONS, node, None), 10, 100,
                                          details=site.conn)
        return [p["id"] for p in members[0]], members[1], site.count(conn, PERSONS_BY_PLAN, {"did": "$pageview", "min_count": 2})

    shared = site.ask(site.copy(), both)
    assert shared == site.ask(site.copy(), apart) == site.ask(site.conn, apart)
    assert shared[1] == 1 and by_value(shared[2]) == {"pro": 1}
    assert kept_while_asking == [1 if site.engine.name == "duckdb" else 0]
    assert temporary_tables(site.copy()) == 0  # dropped after the page


def temporary_tables(conn) -> int:
    if conn.dialect.name != "duckdb":
        return 0
    return conn.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone()[0]
