"""Each piece of analytics/clickhouse_sql.py answers as SQLite's does (store/dialects.py), on the
same values copied as the engine copies them: an event's property through the `properties` Map,
an attribute's value through `person_attributes`. Types never mix, a missing key or a JSON null is
not set, `contains` folds ASCII case only, every pattern finds what it finds on RE2 in the server,
and every text is the same time as SQLite's julianday() says (tests/query/test_same_answers.py
holds PostgreSQL to the same)."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import msgspec
import pytest

from idstitch.analytics.clickhouse_sql import CLICKHOUSE
from idstitch.analytics.engine import FeedBatch
from idstitch.query.patterns import MAX_SUBJECT_LENGTH, PatternGuard
from idstitch.regexes import pattern_for
from idstitch.store.dialects import SQLITE, Dialect, Sql, StatementTimeout
from idstitch.store.feed import FeedPosition, PersonRows
from tests.query.test_same_answers import PATTERNS, SUBJECTS, TIMES, _random_times

pytestmark = pytest.mark.chdb

MISSING = object()  # the key is not there at all

VALUES: list[Any] = [
    MISSING, None, True, False, 0, 1, -1, 2, 1.0, -0.0, 1.5, -1.5, 0.1, 3.0, 1e100, -1e100, 1e-7, 2.5e-5, 1e16, 1e15,
    123456789012345678.0, 2**53, 2**53 + 1, float(2**53), 2**63 - 1, -(2**63), 2**63, 2**64 - 1, 2**64, 2**70, -(2**70),
    "", "a", "A", "pro", "PRO", "Pro plan", "the pro plan", "1", "1.0", "true", "null", "[]", "é", "É", "café", "CAFÉ",
    "x\u2028y", 'say "hi"', "back\\slash", "tab\there", "line\nbreak", "nul\x00byte", "\x01", "😀", "18446744073709551616",
    [], [1], [1.0], [2], [-1], ["a"], ["A", "b"], ["pro", "x"], [1, "a", None, True], [False], [[1]], [["pro"]], [2**70],
    [2**64], ["1"], [1.5, "1.5"], [{"a": 1}], {}, {"a": 1}, {"pro": "pro"},
    *SUBJECTS, *TIMES,
]

NUMBERS: list[Any] = [0, 1, -1, 2, 1.0, 1.5, -1.5, 0.1, 3, 1e100, 1e-7, 2**53, 2**53 + 1, float(2**53), 2**63 - 1, -(2**63), 1e19]
STRINGS = ["a", "A", "pro", "PRO", "Pro", "", "1", "é", "É", "CAF", "café", "x\u2028y", "nul\x00byte", 'say "hi"', "back\\slash"]


@pytest.fixture(scope="module")
def copies(chdb_engine: Any) -> tuple[sqlite3.Connection, Any]:
    """VALUES as the store holds them (SQLite) and as the ClickHouse engine copied them."""
    sqlite = sqlite3.connect(":memory:")
    PatternGuard(budget_seconds=60).install(_SQLite(sqlite))
    sqlite.execute("CREATE TABLE events (seq INTEGER, properties TEXT)")
    sqlite.execute("CREATE TABLE person_attributes (person_id TEXT, key TEXT, value TEXT, kind TEXT)")
    events, attributes = [], []
    for seq, value in enumerate(VALUES, start=1):
        properties = {"other": 1} if value is MISSING else {"other": [seq], "k": value}
        text = msgspec.json.encode(properties).decode()
        events.append((seq, 1, f"d{seq}", "e", "2026-01-01T00:00:00.000000Z", None, text))
        if value is not MISSING:
            attributes.append((f"p{seq:04d}", "k", msgspec.json.encode(value).decode(), "set"))
    sqlite.executemany("INSERT INTO events VALUES (?, ?)", [(e[0], e[6]) for e in events])
    sqlite.executemany("INSERT INTO person_attributes VALUES (?, ?, ?, ?)", attributes)
    chdb_engine.start_over("dialect-tests")
    persons = PersonRows([(p, 1, "2026-01-01T00:00:00.000000Z", 0) for p, *_ in attributes], [], attributes)
    chdb_engine.apply(FeedBatch(
        FeedPosition(len(events), 1, 0), events=events, changed_persons=[a[0] for a in attributes], persons=persons,
    ))
    return sqlite, chdb_engine.reader()


class _SQLite:
    """A sqlite3 connection where register_regex expects the store's connection."""

    dialect = SQLITE

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def create_function(self, *args: Any, **kwargs: Any) -> None:
        self.conn.create_function(*args, **kwargs)


Piece = Callable[[Dialect, str, "str | None"], Sql]


def _seqs_where(copies: tuple[sqlite3.Connection, Any], piece: Piece) -> tuple[list[int], list[int], list[str], list[str]]:
    """The rows `piece` holds for, on SQLite and on ClickHouse: for a property (an event's) and for
    an attribute's value (a person's)."""
    sqlite, clickhouse = copies
    answers: list[Any] = []
    for conn, dialect in ((sqlite, SQLITE), (clickhouse, CLICKHOUSE)):
        on_event = piece(dialect, "e.properties", "k")
        on_value = piece(dialect, dialect.json_document("pa.value"), None)
        answers.append(sorted(r[0] for r in conn.execute(f"SELECT seq FROM events e WHERE {on_event.text}", on_event.params)))
        answers.append(sorted(r[0] for r in conn.execute(
            f"SELECT person_id FROM person_attributes pa WHERE pa.key = 'k' AND {on_value.text}", on_value.params
        )))
    sqlite_events, sqlite_values, clickhouse_events, clickhouse_values = answers
    return sqlite_events, clickhouse_events, sqlite_values, clickhouse_values


def _same(copies: tuple[sqlite3.Connection, Any], piece: Piece) -> None:
    sqlite_events, clickhouse_events, sqlite_values, clickhouse_values = _seqs_where(copies, piece)
    assert [_shown(s) for s in clickhouse_events] == [_shown(s) for s in sqlite_events]
    assert [_shown(int(p[1:])) for p in clickhouse_values] == [_shown(int(p[1:])) for p in sqlite_values]


def _shown(seq: int) -> str:
    value = VALUES[seq - 1]
    return "MISSING" if value is MISSING else repr(value)


def test_is_set_means_there_and_not_null(copies):
    _same(copies, lambda d, doc, key: d.json_is_set(doc, key))


@pytest.mark.parametrize(
    "values",
    [[s] for s in STRINGS] + [[n] for n in NUMBERS] + [[True], [False], [None], ["a", 1, True, None], [1, 1.5, "1"], [0, False]],
    ids=repr,
)
def test_in_compares_type_and_value(copies, values):
    _same(copies, lambda d, doc, key: d.json_in(doc, key, values))


@pytest.mark.parametrize("value", [*STRINGS, *NUMBERS, True, False], ids=repr)
def test_contains_finds_substrings_ignoring_ascii_case_and_elements_of_a_type(copies, value):
    _same(copies, lambda d, doc, key: d.json_contains(doc, key, value, "je1"))


@pytest.mark.parametrize("sign", ["<", "<=", ">", ">="])
@pytest.mark.parametrize("number", NUMBERS, ids=repr)
def test_a_number_compares_as_sqlite_compares_integers_and_doubles(copies, sign, number):
    _same(copies, lambda d, doc, key: d.json_compare_number(doc, key, sign, number))


@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_pattern_finds_what_it_finds_on_sqlite(copies, pattern):
    def matches(d: Dialect, doc: str, key: str | None) -> Sql:
        return d.json_matches(doc, key, pattern_for(d.regex_syntax, pattern), longest=MAX_SUBJECT_LENGTH)

    _same(copies, matches)


def test_a_value_longer_than_the_longest_subject_never_matches(copies):
    sqlite, clickhouse = copies
    long = msgspec.json.encode("a" * MAX_SUBJECT_LENGTH + "é").decode()
    just = msgspec.json.encode("a" * (MAX_SUBJECT_LENGTH - 1) + "é").decode()
    test = CLICKHOUSE.json_matches("given.v", None, "a", longest=MAX_SUBJECT_LENGTH)
    found = [clickhouse.execute(f"SELECT {test.text} FROM (SELECT ? AS v) given", (*test.params, text)).fetchone()[0]
             for text in (long, just)]
    assert found == [False, True]


def test_the_text_at_a_key_is_sqlites(copies):
    sqlite, clickhouse = copies
    answers = []
    for conn, dialect in ((sqlite, SQLITE), (clickhouse, CLICKHOUSE)):
        text = dialect.json_text_at("e.properties", "k")
        answers.append(conn.execute(f"SELECT seq, {text.text} FROM events e ORDER BY seq", text.params).fetchall())
    assert [tuple(r) for r in answers[1]] == [tuple(r) for r in answers[0]]


def test_the_text_at_a_key_of_a_json_document_decodes_to_sqlites(copies):
    """Outside `properties` (no engine query reads one), ClickHouse writes the value itself."""
    sqlite, clickhouse = copies
    doc = '{"a":1.5,"k":["x",{"y":null}],"s":"é\\n"}'
    for key in ("a", "k", "s", "nope"):
        expected = sqlite.execute("SELECT ? -> ?", (doc, f'$."{key}"')).fetchone()[0]
        text = CLICKHOUSE.json_text_at(CLICKHOUSE.json_document("given.doc"), key)
        found = clickhouse.execute(f"SELECT {text.text} FROM (SELECT ? AS doc) given", (*text.params, doc)).fetchone()[0]
        assert (found and msgspec.json.decode(found)) == (expected and msgspec.json.decode(expected))


# -- times -------------------------------------------------------------------------------------

def test_a_text_is_the_same_time_as_sqlite_says(chdb_engine):
    """Every text, through the dialect's comparison: equal to SQLite's Julian day, or where SQLite
    has none, not even at or after the earliest."""
    sqlite = sqlite3.connect(":memory:")
    clickhouse = chdb_engine.reader()
    texts = sorted(set(TIMES + _random_times(1500) + SUBJECTS))
    clickhouse.client.command("CREATE TABLE IF NOT EXISTS time_texts (i Int64, value String) ENGINE = Memory")
    clickhouse.client.command("TRUNCATE TABLE time_texts")
    clickhouse.client.insert("time_texts", [(i, msgspec.json.encode(t).decode()) for i, t in enumerate(texts)])
    by_day: dict[float | None, set[int]] = {}
    for i, text in enumerate(texts):
        by_day.setdefault(sqlite.execute("SELECT julianday(?)", (text,)).fetchone()[0], set()).add(i)
    differ = []
    for day, wanted in by_day.items():
        test = CLICKHOUSE.json_compare_time("t.value", None, *((">=", -1.0) if day is None else ("=", day)))
        found = {r[0] for r in clickhouse.execute(f"SELECT t.i FROM time_texts t WHERE {test.text}", test.params)}
        if day is None:
            found &= wanted  # at or after the earliest: every text with a Julian day, none without
        if found != (set() if day is None else wanted):
            differ.append((day, sorted(texts[i] for i in wanted), sorted(texts[i] for i in found)))
    clickhouse.client.command("DROP TABLE time_texts")
    assert differ == []


@pytest.mark.parametrize("sign", ["<", "<=", ">", ">="])
def test_times_order_as_on_sqlite(copies, sign):
    for moment in (2461041.5, 2461041.5 + 1 / 24, 2451544.5, 1721425.5, 5373484.4):
        _same(copies, lambda d, doc, key: d.json_compare_time(doc, key, sign, moment))


def test_now_is_now(chdb_engine):
    clickhouse = chdb_engine.reader()
    now = sqlite3.connect(":memory:").execute("SELECT julianday('now')").fetchone()[0]
    for text in ("now", "NOW", "Now"):
        before = CLICKHOUSE.json_compare_time("given.v", None, ">", now - 1 / 86400)
        after = CLICKHOUSE.json_compare_time("given.v", None, "<", now + 60 / 86400)
        found = clickhouse.execute(
            f"SELECT {before.text} AND {after.text} FROM (SELECT ? AS v) given",
            (*before.params, *after.params, msgspec.json.encode(text).decode()),
        ).fetchone()[0]
        assert found


def test_the_monday_of_a_week_is_sqlites(chdb_engine):
    rng = random.Random(7)
    days = [date.fromordinal(rng.randint(1, date.max.toordinal())).isoformat() for _ in range(3000)]
    for first in (date.min, date(1899, 12, 25), date(2299, 12, 24), date(1582, 10, 1), date.max - timedelta(days=7)):
        days += [(first + timedelta(days=i)).isoformat() for i in range(8)]
    sqlite = sqlite3.connect(":memory:")
    expected = [(d, sqlite.execute("SELECT date(?, '-6 days', 'weekday 1')", (d,)).fetchone()[0]) for d in days]
    found = chdb_engine.reader().execute(
        f"SELECT d, {CLICKHOUSE.week_start('d')} FROM (SELECT arrayJoin(?) AS d)", (days,)
    ).fetchall()
    assert sorted(map(tuple, found)) == sorted(expected)


# -- the other pieces ----------------------------------------------------------------------------

def test_text_equal_but_for_ascii_case(chdb_engine):
    clickhouse = chdb_engine.reader()
    for column, value, equal in (("Ann@Example.COM", "ann@example.com", True), ("ÉLAN", "élan", False), ("a", "b", False)):
        test = CLICKHOUSE.same_text_ignoring_ascii_case("given.c", value)
        found = clickhouse.execute(f"SELECT {test.text} FROM (SELECT ? AS c) given", (*test.params, column)).fetchone()[0]
        assert bool(found) is equal


def test_the_values_of_a_list_of_strings(chdb_engine):
    clickhouse = chdb_engine.reader()
    found = clickhouse.execute(
        f"SELECT value FROM {CLICKHOUSE.json_array_values('?')} picked ORDER BY value", ('["b","a","é"]',)
    ).fetchall()
    assert [r[0] for r in found] == ["a", "b", "é"]


def test_joins_exists_and_null_comparisons(chdb_engine):
    clickhouse = chdb_engine.reader()
    join = CLICKHOUSE.join_each("(SELECT 1 AS k, 'x' AS v)", "r", "r.k = l.k", outer=True)
    rows = clickhouse.execute(f"SELECT l.k, r.v FROM (SELECT arrayJoin([1, 2]) AS k) l {join} ORDER BY l.k").fetchall()
    assert [tuple(r) for r in rows] == [(1, "x"), (2, None)]
    exists = CLICKHOUSE.exists_per_row("SELECT 1 FROM (SELECT 2 AS k) o WHERE o.k = l.k")
    rows = clickhouse.execute(f"SELECT l.k FROM (SELECT arrayJoin([1, 2]) AS k) l WHERE {exists}").fetchall()
    assert [r[0] for r in rows] == [2]
    found = clickhouse.execute(
        f"SELECT NULL {CLICKHOUSE.is_distinct_from} NULL, 1 {CLICKHOUSE.is_distinct_from} NULL,"
        f" {CLICKHOUSE.greatest}(1, 2), {CLICKHOUSE.least}(1, 2)"
    ).fetchone()
    assert tuple(found) == (False, True, 2, 1)


def test_a_statement_past_its_time_is_stopped_and_the_connection_stays_usable(chdb_engine):
    clickhouse = chdb_engine.reader()
    with pytest.raises(StatementTimeout, match="longer than 0.2 s"):
        with CLICKHOUSE.time_limit(clickhouse, 0.2):
            clickhouse.execute("SELECT count() FROM numbers(1000000000000) WHERE number % 7 = ?", (3,))
    assert clickhouse.statement_seconds is None
    with CLICKHOUSE.time_limit(clickhouse, 5):
        assert clickhouse.execute("SELECT ?", (1,)).fetchone()[0] == 1


def test_marks_percent_signs_and_quoted_question_marks_bind_as_written(chdb_engine):
    clickhouse = chdb_engine.reader()
    row = clickhouse.execute(
        "SELECT ?, '100%', 'a?b', 'it\\'s ?', concat(?, '%'), ? LIKE 'x%'", ("5% ?", "%s", "x%s")
    ).fetchone()
    assert tuple(row) == ("5% ?", "100%", "a?b", "it's ?", "%s%", True)
    assert clickhouse.execute("SELECT '50%'").fetchone()[0] == "50%"
