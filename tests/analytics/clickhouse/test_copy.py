"""The ClickHouse copy itself: a step applied again (after a crash before its position was written)
stores nothing twice, a changed person's old rows never count, erased and expired events leave,
and `--analytics` names the engine without showing a password."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from idstitch.analytics.choice import open_engine
from idstitch.analytics.engine import FeedBatch
from idstitch.errors import InvalidSetting
from idstitch.store.feed import FeedPosition, PersonRows

pytestmark = pytest.mark.chdb

T = "2026-11-01T10:00:00.000000Z"


def _event(seq: int, distinct_id: str = "anon-1", event: str = "$pageview", when: str = T, **properties: Any) -> tuple[Any, ...]:
    import msgspec

    return (seq, 1, distinct_id, event, when, None, msgspec.json.encode(properties).decode())


def _rows(conn: Any, sql: str) -> list[tuple[Any, ...]]:
    return sorted(tuple(r) for r in conn.execute(sql))


def _person(person_id: str, *ids: str, attributes: dict[str, str] | None = None) -> PersonRows:
    return PersonRows(
        [(person_id, 1, T, 0)],
        [(1, distinct_id, person_id) for distinct_id in ids],
        [(person_id, key, value, "set") for key, value in (attributes or {}).items()],
    )


def _merged(*persons: PersonRows) -> PersonRows:
    return PersonRows([p for r in persons for p in r.persons], [d for r in persons for d in r.distinct_ids],
                      [a for r in persons for a in r.attributes])


def test_a_step_applied_again_after_stopping_before_its_position_stores_nothing_twice(clickhouse, monkeypatch):
    first = FeedBatch(FeedPosition(2, 1, 0), events=[_event(1), _event(2)], changed_persons=["p1"],
                      persons=_person("p1", "anon-1", attributes={"plan": '"pro"'}))
    clickhouse.apply(first)
    second = FeedBatch(FeedPosition(4, 2, 0), events=[_event(3), _event(4, "anon-2")], changed_persons=["p1"],
                       persons=_person("p1", "anon-1", "anon-2", attributes={"plan": '"free"'}))

    def crash(*args: Any) -> None:
        raise ConnectionError("the feeder stopped here")

    monkeypatch.setattr(clickhouse, "_write_state", crash)
    with pytest.raises(ConnectionError):
        clickhouse.apply(second)
    monkeypatch.undo()
    assert clickhouse.state().position == FeedPosition(2, 1, 0)
    clickhouse.apply(second)  # the feeder reads the same step again from the position
    clickhouse.apply(second)  # and once more, for good measure
    reader = clickhouse.reader()
    assert _rows(reader, "SELECT seq, distinct_id FROM events") == [(1, "anon-1"), (2, "anon-1"), (3, "anon-1"), (4, "anon-2")]
    assert _rows(reader, "SELECT distinct_id, person_id FROM distinct_ids") == [("anon-1", "p1"), ("anon-2", "p1")]
    assert _rows(reader, "SELECT person_id, key, value FROM person_attributes") == [("p1", "plan", '"free"')]
    assert _rows(reader, "SELECT id FROM persons") == [("p1",)]
    assert clickhouse.state().position == FeedPosition(4, 2, 0)


def test_a_changed_persons_old_rows_never_count(clickhouse):
    clickhouse.apply(FeedBatch(
        FeedPosition(0, 1, 0), changed_persons=["p1", "p2", "p3"],
        persons=_merged(_person("p1", "a", "b", attributes={"plan": '"pro"', "seats": "3"}), _person("p2", "c"),
                        _person("p3", "d", attributes={"x": "1"})),
    ))
    # p2 merged into p1 (c moves), b split off to p4, seats unset away; p3 deleted.
    clickhouse.apply(FeedBatch(
        FeedPosition(0, 2, 0), changed_persons=["p1", "p2", "p3", "p4"],
        persons=_merged(_person("p1", "a", "c", attributes={"plan": '"pro"'}), _person("p4", "b")),
    ))
    reader = clickhouse.reader()
    assert _rows(reader, "SELECT distinct_id, person_id FROM distinct_ids") == [("a", "p1"), ("b", "p4"), ("c", "p1")]
    assert _rows(reader, "SELECT id FROM persons") == [("p1",), ("p4",)]
    assert _rows(reader, "SELECT person_id, key FROM person_attributes") == [("p1", "plan")]
    # An id that moved to a person of an earlier step is not taken from it by a later change.
    clickhouse.apply(FeedBatch(FeedPosition(0, 3, 0), changed_persons=["p5"], persons=_person("p5", "a")))
    clickhouse.apply(FeedBatch(FeedPosition(0, 4, 0), changed_persons=["p1"], persons=_person("p1", "c")))
    assert _rows(reader, "SELECT distinct_id, person_id FROM distinct_ids") == [("a", "p5"), ("b", "p4"), ("c", "p1")]


def test_erased_rewritten_and_expired_events_leave_the_copy(clickhouse):
    clickhouse.apply(FeedBatch(FeedPosition(3, 0, 0), events=[
        _event(1, when="2026-01-01T00:00:00.000000Z"), _event(2, email="ann@example.com"), _event(3),
    ]))
    clickhouse.apply(FeedBatch(
        FeedPosition(3, 0, 2), removed_events=[2, 3], events=[_event(2, "hash-1")],
        expired={1: "2026-06-01T00:00:00.000000Z"},
    ))
    reader = clickhouse.reader()
    assert _rows(reader, "SELECT seq, distinct_id, properties FROM events") == [(2, "hash-1", {})]


def test_properties_are_held_as_the_json_text_of_each_value(clickhouse):
    clickhouse.apply(FeedBatch(FeedPosition(1, 0, 0), events=[_event(1, plan="pro", n=1.0, big=2**70, tags=["a", 1])]))
    [(properties,)] = _rows(clickhouse.reader(), "SELECT properties FROM events")
    assert properties == {"plan": '"pro"', "n": "1.0", "big": "1180591620717411303424", "tags": '["a",1]'}


def test_start_over_empties_the_copy_and_names_its_store(clickhouse):
    clickhouse.apply(FeedBatch(FeedPosition(1, 1, 0), events=[_event(1)], changed_persons=["p1"], persons=_person("p1", "a")))
    clickhouse.start_over("store-2")
    reader = clickhouse.reader()
    assert [_rows(reader, f"SELECT count() FROM {table}") for table in ("events", "distinct_ids", "persons")] == [[(0,)]] * 3
    state = clickhouse.state()
    assert (state.store_id, state.position) == ("store-2", FeedPosition())
    assert clickhouse.size_bytes() is not None


@pytest.mark.parametrize(
    "setting, description",
    [
        pytest.param("clickhouse://idstitch:s3cret@ch.internal:8123/analytics", "clickhouse://idstitch:***@ch.internal:8123/analytics",
                     id="server"),
        pytest.param("clickhouses://ch.internal/analytics", "clickhouses://ch.internal/analytics", id="https-no-password"),
    ],
)
def test_analytics_names_a_clickhouse_server_without_its_password(setting, description, tmp_path):
    engine = open_engine(setting, tmp_path, shared_store=True)
    assert engine is not None and engine.name == "clickhouse"
    assert engine.description == description


def test_analytics_names_chdb_by_its_directory(tmp_path):
    engine = open_engine(f"chdb:{tmp_path}/copy", Path("unused"), shared_store=False)
    assert engine is not None and engine.description == f"chdb:{tmp_path}/copy"


@pytest.mark.parametrize(
    "setting, problem",
    [
        pytest.param("chdb:", "names no directory", id="chdb-without-path"),
        pytest.param("clickhouse://user:pw@host:port/db", "port that is not a number", id="bad-port"),
        pytest.param("mysql://user:pw@host/db", "'host/db' is not one of", id="unknown-scheme-hides-password"),
    ],
)
def test_a_wrong_analytics_setting_says_what_is_wrong(setting, problem, tmp_path):
    with pytest.raises(InvalidSetting, match=problem) as raised:
        open_engine(setting, tmp_path, shared_store=True)
    assert "pw" not in str(raised.value)


def test_after_an_erasure_the_persons_the_store_no_longer_has_leave_the_copy(clickhouse):
    clickhouse.apply(FeedBatch(FeedPosition(2, 2, 0), events=[_event(1), _event(2, "anon-2")], changed_persons=["p1", "p2"],
                               persons=_merged(_person("p1", "anon-1", attributes={"email": '"ada@example.com"'}),
                                               _person("p2", "anon-2"))))

    clickhouse.apply(FeedBatch(FeedPosition(2, 2, 1), removed_events=[1], persons_kept={1: ["p2"]}))
    clickhouse.forget_deleted()

    conn = clickhouse.reader()
    assert _rows(conn, "SELECT id FROM persons") == [("p2",)]
    assert _rows(conn, "SELECT distinct_id, person_id FROM distinct_ids") == [("anon-2", "p2")]
    assert _rows(conn, "SELECT person_id, key FROM person_attributes") == []
    assert _rows(conn, "SELECT seq FROM events") == [(2,)]
