"""The SQL that differs between the two stores, side by side: one `Dialect` per backend.

Store and query code asks `conn.dialect` for the piece it needs (by what it does, never by
which database it is), so the whole difference between SQLite and PostgreSQL reads here:

    Dialect              what each piece does, and the names the code above the store uses
    SQLiteDialect        the SQL idstitch was written in (JSON as text, json_type/json_extract)
    PostgresDialect      the same answers in PostgreSQL's words (jsonb, `~`, statement_timeout)

The JSON pieces compare like SQLite's `json_type` / `json_extract`: types never mix ("1" is not
1, a boolean is not a number), and a missing key or a JSON null is "not set". `doc` is the SQL
of a JSON document (a column, or `json_document(text_column)`); `key` is a top-level key of it,
or None for the document itself. Keys and values travel as bound parameters, never as SQL text.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ContextManager

import msgspec
from psycopg import errors as pg_errors

if TYPE_CHECKING:
    from idstitch.store.connection import Connection

# PostgreSQL advisory lock keys of our own (hashed ids never take these values in practice,
# and a collision would only make two writes wait for each other).
MIGRATIONS_LOCK = 0x1D57_17C4_0000_0001
WRITES_LOCK = 0x1D57_17C4_0000_0002
# Held (for its whole session) by the one server that feeds the analytics copy (store/feed.py).
FEED_LOCK = 0x1D57_17C4_0000_0003

# On SQLite, the greatest number the analytics feed's `person_changes` has given (store/feed.py):
# its rows' greatest, or an erasure's mark's (the rows an erasure drops keep their numbers taken).
LAST_PERSON_CHANGE = (
    "max(coalesce((SELECT max(change) FROM person_changes), 0),"
    " coalesce((SELECT max(person_change) FROM event_changes), 0))"
)

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class Sql:
    """A piece of SQL and its parameters, in the order of its `?` marks."""

    text: str
    params: tuple[Any, ...] = ()


class StatementTimeout(Exception):
    """A statement ran past the time `Dialect.time_limit` gave it; the database stopped it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"a statement ran longer than {seconds:g} s and was stopped")


class PatternRefused(Exception):
    """The database refused a regular expression a filter bound (PostgreSQL's own limits)."""


class Dialect(ABC):
    """The pieces of SQL that differ between the backends, by what they do."""

    name: str
    # "INSERT OR IGNORE INTO" / "INSERT INTO ... ON CONFLICT DO NOTHING": see `insert_ignore`.
    insert_ignore_prefix: str
    insert_ignore_suffix: str
    # The greatest and least of two values (SQLite's two-argument max/min).
    greatest: str
    least: str
    # Starts a transaction that runs alone: no other writer of the store runs until it ends.
    begin_exclusive: str
    # `a {is_distinct_from} b`: not equal, where NULL equals only NULL.
    is_distinct_from: str
    # The number of the next change of the analytics feed's `person_changes` (store/feed.py).
    next_person_change: str
    # The syntax `json_matches` patterns are bound in: filters are written in Python's `re`
    # syntax (`python`: as written, for regexes.searches), and idstitch/regexes.py rewrites them
    # for the engine named here.
    regex_syntax: str
    # Whether `GROUP BY GROUPING SETS (...)` is there and the fastest way to count distinct
    # persons per period, per breakdown value and overall in one pass (query/counts.py).
    grouping_sets = False

    def insert_ignore(self, table_and_columns: str, values: str) -> str:
        """An insert that skips rows whose key is already there."""
        return f"{self.insert_ignore_prefix} {table_and_columns} {values}{self.insert_ignore_suffix}"

    # An event's distinct id, as the analytics queries group and join by it: the store's is the
    # id's text; the DuckDB copy numbers its ids (a join of integers costs half of one of texts).

    def distinct_id_key(self, event: str) -> str:
        """The columns of an `events` row that name its distinct id (to GROUP BY)."""
        return f"{event}.project_id, {event}.distinct_id"

    def same_distinct_id(self, event: str, mapping: str) -> str:
        """The join of an `events` row (or a row grouped by `distinct_id_key`) to its `distinct_ids` row."""
        return f"{mapping}.project_id = {event}.project_id AND {mapping}.distinct_id = {event}.distinct_id"

    def keep_person_set(self, name: str, select: str) -> str | None:
        """The statement that keeps `select`'s rows (one `person_id` column) in a temporary table
        `name` of this connection, for the queries after it to read; None: not kept here (each
        query computes the set again)."""
        return None

    def person_id(self, text: str) -> Any:
        """A person id (a UUID's text, ids.person_id_for) as a parameter compared with the person
        id columns (the DuckDB copy's are UUIDs)."""
        return text

    @abstractmethod
    def join_each(self, table: str, alias: str, on: str, *, outer: bool = False) -> str:
        """`JOIN table alias ON on` (`LEFT JOIN` if `outer`), looked up for each row of what
        comes before it, in the order written: a JSON list's few elements (or a page's few rows)
        first, then an index lookup each, where a planner left to itself may hash or scan the
        whole table once per row outside."""

    @abstractmethod
    def exists_per_row(self, select: str) -> str:
        """`EXISTS (select)`, probed for each row of the outer query (by its indexes) until the
        page is full, never turned into a join over the whole table."""

    @abstractmethod
    def indexed_by(self, index: str) -> str:
        """What follows `FROM table alias` to read the table through `index` (a hint)."""

    @abstractmethod
    def week_start(self, day: str) -> str:
        """The Monday on or before `day` (a `YYYY-MM-DD` text), as a `YYYY-MM-DD` text."""

    @abstractmethod
    def same_text_ignoring_ascii_case(self, column: str, value: str) -> Sql:
        """`column` equals `value` but for the case of ASCII letters (SQLite's `lower()`), as an
        expression the `lower(column)` index answers."""

    # -- JSON ----------------------------------------------------------------------------------

    @abstractmethod
    def json_document(self, text: str) -> str:
        """A column holding JSON text (an attribute's value) as a JSON document."""

    @abstractmethod
    def json_array_values(self, doc: str) -> str:
        """A table source of the elements of a JSON array of strings, one row each with a
        `value` column: `FROM {json_array_values(doc)} alias`."""

    @abstractmethod
    def json_text_at(self, doc: str, key: str) -> Sql:
        """The JSON text of the value at `key`, NULL when missing (a breakdown's value)."""

    @abstractmethod
    def json_is_set(self, doc: str, key: str | None) -> Sql:
        """The value is there and is not JSON null."""

    @abstractmethod
    def json_in(self, doc: str, key: str | None, values: list[Any]) -> Sql:
        """The value equals one of `values` (JSON scalars), type and all."""

    @abstractmethod
    def json_contains(self, doc: str, key: str | None, value: Any, alias: str) -> Sql:
        """A string `value`: a substring of a string value ignoring ASCII case, or a string
        element of a list value; any other scalar: an element of a list value. `alias` names
        the elements, if the dialect lists them."""

    @abstractmethod
    def json_matches(self, doc: str, key: str | None, pattern: str, *, longest: int) -> Sql:
        """A string value no longer than `longest` in which the regex `pattern` (in this
        dialect's `regex_syntax`) finds a match."""

    @abstractmethod
    def json_compare_number(self, doc: str, key: str | None, sign: str, number: int | float) -> Sql:
        """A number value `sign` (`<`, `<=`, `>`, `>=`) `number`."""

    @abstractmethod
    def json_compare_time(self, doc: str, key: str | None, sign: str, julian_day: float) -> Sql:
        """A string value read as a time (SQLite's `julianday()`: ISO-8601 in any UTC offset)
        `sign` the moment whose Julian day is `julian_day`."""

    # -- running queries -----------------------------------------------------------------------

    @abstractmethod
    def register_regex(self, conn: Connection, match: Callable[[str, object], int]) -> None:
        """Make `match(pattern, value)` what `json_matches` calls, if the database has no
        regular expressions of its own."""

    @abstractmethod
    def time_limit(self, conn: Connection, seconds: float) -> ContextManager[None]:
        """Reads in this block whose statements the database stops after `seconds` each
        (`StatementTimeout`), if it can stop one (SQLite only stops `register_regex`'s function)."""


# -- SQLite ------------------------------------------------------------------------------------


def _sqlite_path(key: str | None) -> str:
    """The JSON path of a top-level key (filters.py refuses keys this cannot express)."""
    return "$" if key is None else f'$."{key}"'


def _marks(values: list[Any]) -> str:
    return ",".join("?" * len(values))


class SQLiteDialect(Dialect):
    """JSON is text read by `json_type` / `json_extract`; regexes call a Python function (RE2)."""

    name = "sqlite"
    insert_ignore_prefix = "INSERT OR IGNORE INTO"
    insert_ignore_suffix = ""
    greatest = "max"
    least = "min"
    begin_exclusive = "BEGIN IMMEDIATE"
    is_distinct_from = "IS NOT"
    # One writer: the greatest number so far plus one is in commit order (person_changes_by_change).
    next_person_change = f"({LAST_PERSON_CHANGE} + 1)"
    regex_syntax = "python"

    def join_each(self, table: str, alias: str, on: str, *, outer: bool = False) -> str:
        # CROSS JOIN is SQLite's documented way to fix the order; a LEFT JOIN keeps it anyway.
        return f"{'LEFT' if outer else 'CROSS'} JOIN {table} {alias} ON {on}"

    def exists_per_row(self, select: str) -> str:
        return f"EXISTS ({select})"

    def indexed_by(self, index: str) -> str:
        return f" INDEXED BY {index}"

    def week_start(self, day: str) -> str:
        return f"date({day}, '-6 days', 'weekday 1')"

    def same_text_ignoring_ascii_case(self, column: str, value: str) -> Sql:
        return Sql(f"lower({column}) = lower(?)", (value,))

    def json_document(self, text: str) -> str:
        return text

    def json_array_values(self, doc: str) -> str:
        return f"json_each({doc})"

    def json_text_at(self, doc: str, key: str) -> Sql:
        return Sql(f"{doc} -> ?", (_sqlite_path(key),))

    def json_is_set(self, doc: str, key: str | None) -> Sql:
        return Sql(f"coalesce(json_type({doc}, ?), 'null') != 'null'", (_sqlite_path(key),))

    def json_in(self, doc: str, key: str | None, values: list[Any]) -> Sql:
        path = _sqlite_path(key)
        jt, jv = f"json_type({doc}, ?)", f"json_extract({doc}, ?)"
        strings = [v for v in values if isinstance(v, str)]
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        types = sorted({("true" if v else "false") for v in values if isinstance(v, bool)} | ({"null"} if None in values else set()))
        parts = []
        if strings:
            parts.append(Sql(f"({jt} = 'text' AND {jv} IN ({_marks(strings)}))", (path, path, *strings)))
        if numbers:
            parts.append(Sql(f"({jt} IN ('integer', 'real') AND {jv} IN ({_marks(numbers)}))", (path, path, *numbers)))
        if types:
            parts.append(Sql(f"{jt} IN ({_marks(types)})", (path, *types)))
        if len(parts) == 1:
            return parts[0]
        return Sql("(" + " OR ".join(p.text for p in parts) + ")", tuple(v for p in parts for v in p.params))

    def json_contains(self, doc: str, key: str | None, value: Any, alias: str) -> Sql:
        path = _sqlite_path(key)
        jt, jv = f"json_type({doc}, ?)", f"json_extract({doc}, ?)"
        if isinstance(value, str):
            return Sql(
                f"(({jt} = 'text' AND instr(lower({jv}), lower(?)) > 0) OR ({jt} = 'array' AND EXISTS"
                f" (SELECT 1 FROM json_each({doc}, ?) {alias} WHERE {alias}.type = 'text' AND {alias}.value = ?)))",
                (path, path, value, path, path, value),
            )
        if isinstance(value, bool):
            element = Sql(f"{alias}.type = ?", ("true" if value else "false",))
        else:
            element = Sql(f"{alias}.type IN ('integer', 'real') AND {alias}.value = ?", (value,))
        return Sql(
            f"({jt} = 'array' AND EXISTS (SELECT 1 FROM json_each({doc}, ?) {alias} WHERE {element.text}))",
            (path, path, *element.params),
        )

    def json_matches(self, doc: str, key: str | None, pattern: str, *, longest: int) -> Sql:
        # `longest` is checked by the registered function (query/patterns.py PatternGuard).
        path = _sqlite_path(key)
        return Sql(f"(json_type({doc}, ?) = 'text' AND idstitch_regex(?, json_extract({doc}, ?)))", (path, pattern, path))

    def json_compare_number(self, doc: str, key: str | None, sign: str, number: int | float) -> Sql:
        path = _sqlite_path(key)
        return Sql(f"(json_type({doc}, ?) IN ('integer', 'real') AND json_extract({doc}, ?) {sign} ?)", (path, path, number))

    def json_compare_time(self, doc: str, key: str | None, sign: str, julian_day: float) -> Sql:
        path = _sqlite_path(key)
        return Sql(f"(json_type({doc}, ?) = 'text' AND julianday(json_extract({doc}, ?)) {sign} ?)", (path, path, julian_day))

    def register_regex(self, conn: Connection, match: Callable[[str, object], int]) -> None:
        conn.create_function("idstitch_regex", 2, match, deterministic=True)  # type: ignore[attr-defined]

    def time_limit(self, conn: Connection, seconds: float) -> ContextManager[None]:
        return nullcontext()


# -- PostgreSQL --------------------------------------------------------------------------------

_UPPER, _LOWER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"

# SQLite's julianday(text) (date.c, parseDateOrTime and computeJD) in PostgreSQL's SQL, so a text
# compares as the same time on both stores and never raises, whatever an attribute holds:
# `[-]YYYY-MM-DD`, then after any spaces or Ts an optional `HH:MM[:SS[.fff]]`, then an optional
# `Z` or `±HH:MM` (a bare time is on 2000-01-01); 'now'; or a number, itself a Julian day. Fields
# out of SQLite's ranges (month 1-12, day 1-31, hour 0-24, ...) make NULL; a day past the end of
# its month rolls over, as SQLite's arithmetic does. `{text}` appears once, so do its parameters.
#
# The usual shapes (`_CANONICAL`: what clients and clock.format_time write) are recognised by `~`
# and cut at fixed places; only the others pay for regexp_match's capture groups (~20x slower).
_SPACE = r"[ \t\n\v\f\r]"
_CANONICAL = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})?)?$"
_DATETIME = (
    rf"^(?:(-?)([0-9]{{4}})-([0-9]{{2}})-([0-9]{{2}})[T \t\n\v\f\r]*)?"
    rf"(?:([0-9]{{2}}):([0-9]{{2}})(?::([0-9]{{2}})(\.[0-9]+)?)?{_SPACE}*"
    rf"(?:[Zz]|([+-])([0-9]{{2}}):([0-9]{{2}}))?{_SPACE}*)?$"
)
_NUMBER = rf"^{_SPACE}*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{{1,3}})?{_SPACE}*$"


# Each field of the time: cut from a canonical text, or read from regexp_match's groups.
_FIELDS = (
    ("y", "substr(given.v, 1, 4)::int", "coalesce(CASE parsed.m[1] WHEN '-' THEN -1 ELSE 1 END * parsed.m[2]::int, 2000)"),
    ("mo", "substr(given.v, 6, 2)::int", "coalesce(parsed.m[3]::int, 1)"),
    ("d", "substr(given.v, 9, 2)::int", "coalesce(parsed.m[4]::int, 1)"),
    ("h", "CASE WHEN shape.n > 10 THEN substr(given.v, 12, 2)::int ELSE 0 END", "coalesce(parsed.m[5]::int, 0)"),
    ("mi", "CASE WHEN shape.n > 10 THEN substr(given.v, 15, 2)::int ELSE 0 END", "coalesce(parsed.m[6]::int, 0)"),
    ("s", "CASE WHEN shape.n - shape.zone >= 19 THEN substr(given.v, 18, 2)::int ELSE 0 END", "coalesce(parsed.m[7]::int, 0)"),
    ("fraction", "CASE WHEN shape.n - shape.zone > 20 THEN substr(given.v, 20, shape.n - shape.zone - 19)::float8 ELSE 0 END",
     "coalesce(parsed.m[8]::float8, 0)"),
    ("tz_sign", "CASE WHEN shape.zone = 6 AND substr(given.v, shape.n - 5, 1) = '-' THEN -1 ELSE 1 END",
     "CASE parsed.m[9] WHEN '-' THEN -1 ELSE 1 END"),
    ("tz_h", "CASE WHEN shape.zone = 6 THEN substr(given.v, shape.n - 4, 2)::int ELSE 0 END", "coalesce(parsed.m[10]::int, 0)"),
    ("tz_mi", "CASE WHEN shape.zone = 6 THEN substr(given.v, shape.n - 1, 2)::int ELSE 0 END", "coalesce(parsed.m[11]::int, 0)"),
)

_PG_JULIAN_DAY = (
    "(SELECT CASE WHEN jd.ms BETWEEN 0 AND 464269060799999 THEN jd.ms / 86400000::float8 END"
    " FROM (SELECT {text} AS v OFFSET 0) AS given"
    f" CROSS JOIN LATERAL (SELECT given.v ~ '{_CANONICAL}' AS canonical, length(given.v) AS n,"
    # the length of a canonical text's zone: Z, ±HH:MM, or none
    " CASE WHEN right(given.v, 1) IN ('Z', 'z') THEN 1"
    " WHEN length(given.v) >= 22 AND substr(given.v, length(given.v) - 5, 1) IN ('+', '-') THEN 6 ELSE 0 END AS zone"
    " OFFSET 0) AS shape"
    f" CROSS JOIN LATERAL (SELECT CASE WHEN NOT shape.canonical AND given.v ~ '{_DATETIME}'"
    f" THEN regexp_match(given.v, '{_DATETIME}') END AS m OFFSET 0) AS parsed"
    " CROSS JOIN LATERAL (SELECT shape.canonical OR parsed.m[2] IS NOT NULL OR parsed.m[5] IS NOT NULL AS is_time, "
    + ", ".join(f"CASE WHEN shape.canonical THEN {cut} ELSE {read} END AS {name}" for name, cut, read in _FIELDS)
    + " OFFSET 0) AS f"
    " CROSS JOIN LATERAL (SELECT CASE"
    " WHEN f.is_time THEN CASE"
    " WHEN f.mo BETWEEN 1 AND 12 AND f.d BETWEEN 1 AND 31 AND f.y >= -4713 AND f.h <= 24 AND f.mi <= 59"
    " AND f.s <= 59 AND f.tz_h <= 14 AND f.tz_mi <= 59 THEN"
    " (36525 * (f.y - (f.mo <= 2)::int + 4716) / 100 + 306001 * (f.mo + 12 * (f.mo <= 2)::int + 1) / 10000 + f.d"
    " + 2 - (f.y - (f.mo <= 2)::int) / 100 + (f.y - (f.mo <= 2)::int) / 100 / 4)::bigint * 86400000 - 131716800000"
    " + f.h * 3600000 + f.mi * 60000 + floor((f.s + f.fraction) * 1000::float8 + 0.5)::bigint"
    " - f.tz_sign * (f.tz_h * 60 + f.tz_mi) * 60000 END"
    " WHEN lower(given.v) = 'now' THEN floor(extract(epoch FROM statement_timestamp()) * 1000)::bigint + 210866760000000"
    f" WHEN given.v ~ '{_NUMBER}' THEN CASE WHEN given.v::numeric >= 0 AND given.v::numeric < 5373484.5"
    " THEN floor(given.v::numeric * 86400000 + 0.5)::bigint END"
    " END AS ms) AS jd)"
)


def _pg_json(value: Any) -> str:
    """A scalar as the JSON text bound for `?::jsonb`. PostgreSQL stores no NUL (the migration
    and the writer keep U+FFFD instead), and jsonb refuses even its escape."""
    if isinstance(value, str):
        value = value.replace("\x00", "\ufffd")
    return _encode(value).decode()


class PostgresDialect(Dialect):
    """JSON documents are `jsonb` (attribute values: JSON text, cast); regexes are PostgreSQL's
    own (`~`), each statement of a query bounded by `statement_timeout`."""

    name = "postgresql"
    insert_ignore_prefix = "INSERT INTO"
    insert_ignore_suffix = " ON CONFLICT DO NOTHING"
    greatest = "greatest"
    least = "least"
    begin_exclusive = f"BEGIN; SELECT pg_advisory_xact_lock({WRITES_LOCK})"
    is_distinct_from = "IS DISTINCT FROM"
    # Drawn out of commit order by concurrent writers: store/feed.py reads only below a horizon.
    next_person_change = "nextval('person_changes_seq')"
    regex_syntax = "postgresql"

    def join_each(self, table: str, alias: str, on: str, *, outer: bool = False) -> str:
        # A LATERAL subquery is never reordered nor flattened (OFFSET 0). PostgreSQL guesses 100
        # rows for any jsonb_array_elements, and costs a session's flags so high that it would
        # rather hash or scan a whole table than look rows up one at a time.
        lookup = f"LATERAL (SELECT * FROM {table} {alias} WHERE {on} OFFSET 0) AS {alias}"
        return f"LEFT JOIN {lookup} ON TRUE" if outer else f"CROSS JOIN {lookup}"

    def exists_per_row(self, select: str) -> str:
        return f"EXISTS ({select} OFFSET 0)"  # an OFFSET keeps PostgreSQL from making it a semi-join

    def indexed_by(self, index: str) -> str:
        return ""

    def week_start(self, day: str) -> str:
        return f"to_char(({day})::date - (extract(isodow FROM ({day})::date)::int - 1), 'YYYY-MM-DD')"

    def same_text_ignoring_ascii_case(self, column: str, value: str) -> Sql:
        # lower() is the index; outside the C locale it also folds non-ASCII letters, which
        # SQLite's does not, so the ASCII-only fold decides.
        return Sql(
            f"lower({column}) = lower(?) AND {self._ascii_lower(column)} = {self._ascii_lower('?')}",
            (value, value),
        )

    @staticmethod
    def _ascii_lower(text: str) -> str:
        return f"translate({text}, '{_UPPER}', '{_LOWER}')"

    @staticmethod
    def _value(doc: str, key: str | None) -> Sql:
        return Sql(doc) if key is None else Sql(f"({doc} -> ?)", (key,))

    @staticmethod
    def _text(doc: str, key: str | None) -> Sql:
        return Sql(f"({doc} #>> '{{}}')") if key is None else Sql(f"({doc} ->> ?)", (key,))

    def json_document(self, text: str) -> str:
        return f"({text})::jsonb"

    def json_array_values(self, doc: str) -> str:
        return f"jsonb_array_elements_text(({doc})::jsonb)"

    def json_text_at(self, doc: str, key: str) -> Sql:
        return Sql(f"({doc} -> ?)::text", (key,))

    def json_is_set(self, doc: str, key: str | None) -> Sql:
        v = self._value(doc, key)
        return Sql(f"coalesce(jsonb_typeof({v.text}), 'null') != 'null'", v.params)

    def json_in(self, doc: str, key: str | None, values: list[Any]) -> Sql:
        # jsonb equality is typed: '"1"' != '1', 'true' != '1', and 1 = 1.0 as in SQLite.
        v = self._value(doc, key)
        texts = [_pg_json(value) for value in values]
        return Sql(f"{v.text} IN ({','.join('?::jsonb' for _ in texts)})", (*v.params, *texts))

    def json_contains(self, doc: str, key: str | None, value: Any, alias: str) -> Sql:
        # `@>` of a one-element list: an element equal to it, type and all, at the top level.
        v = self._value(doc, key)
        if isinstance(value, str):
            t = self._text(doc, key)
            needle = value.replace("\x00", "\ufffd")
            return Sql(
                f"(CASE jsonb_typeof({v.text}) WHEN 'string' THEN strpos({self._ascii_lower(t.text)}, {self._ascii_lower('?')}) > 0"
                f" WHEN 'array' THEN {v.text} @> ?::jsonb ELSE FALSE END)",
                (*v.params, *t.params, needle, *v.params, _pg_json([needle])),
            )
        return Sql(f"(jsonb_typeof({v.text}) = 'array' AND {v.text} @> ?::jsonb)", (*v.params, *v.params, _pg_json([value])))

    def json_matches(self, doc: str, key: str | None, pattern: str, *, longest: int) -> Sql:
        v, t = self._value(doc, key), self._text(doc, key)
        return Sql(
            f"(CASE WHEN jsonb_typeof({v.text}) = 'string' AND length({t.text}) <= ? THEN {t.text} ~ ? ELSE FALSE END)",
            (*v.params, *t.params, longest, *t.params, pattern),
        )

    def json_compare_number(self, doc: str, key: str | None, sign: str, number: int | float) -> Sql:
        # numeric, not float8: a jsonb number may exceed a double (1e400), and a float is bound
        # as its shortest text, so the comparison is exact, as SQLite's.
        v = self._value(doc, key)
        return Sql(
            f"(CASE WHEN jsonb_typeof({v.text}) = 'number' THEN ({v.text})::numeric END {sign} ?::numeric)",
            (*v.params, *v.params, str(number)),
        )

    def json_compare_time(self, doc: str, key: str | None, sign: str, julian_day: float) -> Sql:
        v, t = self._value(doc, key), self._text(doc, key)
        return Sql(
            f"(jsonb_typeof({v.text}) = 'string' AND {_PG_JULIAN_DAY.replace('{text}', t.text)} {sign} ?)",
            (*v.params, *t.params, julian_day),
        )

    def register_regex(self, conn: Connection, match: Callable[[str, object], int]) -> None:
        pass  # `~` is PostgreSQL's own; `time_limit` bounds it

    @contextmanager
    def time_limit(self, conn: Connection, seconds: float) -> Iterator[None]:
        # One transaction, so SET LOCAL ends with it; 0 would mean "no limit" to PostgreSQL.
        # No JIT: the estimates of the correlated subqueries (a session's flags) are high enough
        # to compile hundreds of functions (~0.3 s) for reads that take milliseconds.
        milliseconds = max(1, math.ceil(seconds * 1000))
        conn.execute(f"BEGIN; SET LOCAL statement_timeout = {milliseconds}; SET LOCAL jit = off")
        try:
            yield
        except pg_errors.QueryCanceled:
            conn.execute("ROLLBACK")
            raise StatementTimeout(seconds) from None
        except pg_errors.InvalidRegularExpression as error:
            conn.execute("ROLLBACK")
            raise PatternRefused(str(error).splitlines()[0]) from None
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


SQLITE = SQLiteDialect()
POSTGRES = PostgresDialect()
