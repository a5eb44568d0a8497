"""The query layer's SQL pieces in DuckDB's words (store/dialects.py `Dialect`), so a filter or a
count compiles for the analytics copy as it does for the store, and answers the same.

JSON is the text the store holds, read by DuckDB's `json_type` / `json_extract` (types:
VARCHAR, BIGINT, UBIGINT, DOUBLE, BOOLEAN, NULL, ARRAY, OBJECT). Regexes run on DuckDB's own
`regexp_matches`, which is RE2: linear time, as the store's. Times compare as SQLite's
`julianday()` reads them: the canonical ISO shapes are cast by DuckDB, any other text goes to
`sqlite_julian_day` (a Python function registered on each connection). Numbers compare as
SQLite compares them: a JSON integer within 64 bits exactly (never through a double, which holds
53), a greater one or a JSON real as a double, and an integer with a double exactly.
"""

from __future__ import annotations

import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import duckdb
import msgspec
from duckdb.func import SPECIAL

from idstitch.analytics.engine import CopyDialect
from idstitch.store.dialects import Sql, StatementTimeout

if TYPE_CHECKING:
    from idstitch.store.connection import Connection

_encode = msgspec.json.Encoder().encode
_UPPER, _LOWER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"
_NUMBER_TYPES = "('BIGINT', 'UBIGINT', 'DOUBLE')"
_INTEGER_TYPES = "('BIGINT', 'UBIGINT')"
_INT64 = 2**63


def _path(key: str | None) -> str:
    return "$" if key is None else f'$."{key}"'


def _ascii_lower(text: str) -> str:
    return f"translate({text}, '{_UPPER}', '{_LOWER}')"


def _marks(values: list[Any]) -> str:
    return ",".join("?" * len(values))


# -- numbers as SQLite compares them ----------------------------------------------------------
#
# SQLite's json_extract gives a JSON integer within 64 bits as an INTEGER, a greater one or a real
# as a REAL, and compares an INTEGER with a REAL exactly. Here each value is read both ways:
# `_as_integer` (a BIGINT, NULL unless a 64-bit JSON integer) and `_as_double` (NULL unless a JSON
# number); the number compared with is turned, in Python, into the bound that gives the exact
# answer against each. Every cast sits under a CASE of its type: DuckDB evaluates both sides of an
# AND, and a cast of a string fails the whole query.


def _as_integer(doc: str, key: str | None) -> Sql:
    path = _path(key)
    return Sql(f"(CASE WHEN json_type({doc}, ?) IN {_INTEGER_TYPES} THEN TRY_CAST(json_extract({doc}, ?) AS BIGINT) END)", (path, path))


def _as_double(doc: str, key: str | None) -> Sql:
    path = _path(key)
    return Sql(f"(CASE WHEN json_type({doc}, ?) IN {_NUMBER_TYPES} THEN CAST(json_extract({doc}, ?) AS DOUBLE) END)", (path, path))


def _integer_bound(sign: str, number: int | float) -> tuple[str, int] | bool:
    """`(sign', n)` such that `i sign' n` is `i sign number` for every 64-bit integer i, or the
    answer itself when it is the same for all of them."""
    if isinstance(number, int):
        return sign, number
    if number >= _INT64 or number < -_INT64:
        return (number > 0) == (sign in ("<", "<="))
    if number.is_integer():
        return sign, int(number)
    # Between two integers: i > 2.5 and i >= 2.5 are i > 2; i < 2.5 and i <= 2.5 are i <= 2.
    return (">" if sign in (">", ">=") else "<="), math.floor(number)


def _double_bound(sign: str, number: int | float) -> tuple[str, float]:
    """`(sign', d)` such that `x sign' d` is `x sign number` for every double x."""
    if isinstance(number, float):
        return sign, number
    nearest = float(number)
    if int(nearest) == number:
        return sign, nearest
    # No double equals the integer: the nearest one is just above it or just below.
    if nearest > number:
        return (">=" if sign in (">", ">=") else "<"), nearest
    return (">" if sign in (">", ">=") else "<="), nearest


def _compare_number(doc: str, key: str | None, sign: str, number: int | float) -> Sql:
    integer, double = _as_integer(doc, key), _as_double(doc, key)
    bound = _integer_bound(sign, number)
    if isinstance(bound, bool):
        on_integer = Sql(f"CASE WHEN {integer.text} IS NOT NULL THEN {str(bound).upper()} END", integer.params)
    else:
        on_integer = Sql(f"{integer.text} {bound[0]} ?", (*integer.params, bound[1]))
    double_sign, double_bound = _double_bound(sign, number)
    # coalesce: the integer's answer where it is one, else the double's (NULL: not a number).
    return Sql(
        f"coalesce({on_integer.text}, {double.text} {double_sign} ?)", (*on_integer.params, *double.params, double_bound)
    )


def _equals_number(doc: str, key: str | None, numbers: list[int | float]) -> Sql:
    """The value is a number equal to one of `numbers`, as SQLite's `=` has it."""
    integers = sorted({n if isinstance(n, int) else int(n) for n in numbers
                       if isinstance(n, int) or (n.is_integer() and -_INT64 <= n < _INT64)})
    doubles = sorted({float(n) for n in numbers if isinstance(n, float) or int(float(n)) == n})
    integer, double = _as_integer(doc, key), _as_double(doc, key)
    on_integer = Sql(f"{integer.text} IN ({_marks(integers)})", (*integer.params, *integers)) if integers else Sql(
        f"CASE WHEN {integer.text} IS NOT NULL THEN FALSE END", integer.params
    )
    on_double = Sql(f"{double.text} IN ({_marks(doubles)})", (*double.params, *doubles)) if doubles else Sql("FALSE")
    return Sql(f"coalesce({on_integer.text}, {on_double.text})", (*on_integer.params, *on_double.params))


class DuckDBDialect(CopyDialect):
    name = "duckdb"

    def distinct_id_key(self, event: str) -> str:
        return f"{event}.id_key"  # duckdb_engine numbers the copy's distinct ids

    def same_distinct_id(self, event: str, mapping: str) -> str:
        return f"{mapping}.id_key = {event}.id_key"

    def person_id(self, text: str) -> Any:
        return uuid.UUID(text)

    def keep_person_set(self, name: str, select: str) -> str | None:
        return f"CREATE OR REPLACE TEMPORARY TABLE {name} AS {select}"

    def week_start(self, day: str) -> str:
        return f"strftime(date_trunc('week', CAST({day} AS DATE)), '%Y-%m-%d')"

    def same_text_ignoring_ascii_case(self, column: str, value: str) -> Sql:
        return Sql(f"{_ascii_lower(column)} = {_ascii_lower('?')}", (value,))

    def json_document(self, text: str) -> str:
        return text

    def json_array_values(self, doc: str) -> str:
        return f"(SELECT unnest(json_extract_string({doc}, '$[*]')) AS value)"

    def json_text_at(self, doc: str, key: str) -> Sql:
        return Sql(f"CAST(json_extract({doc}, ?) AS VARCHAR)", (_path(key),))

    def json_is_set(self, doc: str, key: str | None) -> Sql:
        return Sql(f"coalesce(json_type({doc}, ?), 'NULL') != 'NULL'", (_path(key),))

    def json_in(self, doc: str, key: str | None, values: list[Any]) -> Sql:
        path = _path(key)
        jt = f"json_type({doc}, ?)"
        strings = [v for v in values if isinstance(v, str)]
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        booleans = sorted({"true" if v else "false" for v in values if isinstance(v, bool)})
        parts = []
        if strings:
            parts.append(Sql(f"({jt} = 'VARCHAR' AND json_extract_string({doc}, ?) IN ({_marks(strings)}))", (path, path, *strings)))
        if numbers:
            parts.append(_equals_number(doc, key, numbers))
        if booleans:
            parts.append(Sql(f"({jt} = 'BOOLEAN' AND json_extract_string({doc}, ?) IN ({_marks(booleans)}))", (path, path, *booleans)))
        if None in values:
            parts.append(Sql(f"{jt} = 'NULL'", (path,)))
        if len(parts) == 1:
            return parts[0]
        return Sql("(" + " OR ".join(p.text for p in parts) + ")", tuple(v for p in parts for v in p.params))

    def json_contains(self, doc: str, key: str | None, value: Any, alias: str) -> Sql:
        path = _path(key)
        jt = f"json_type({doc}, ?)"
        elements = f"CAST(json_extract({doc}, ?) AS JSON[])"
        if isinstance(value, str):
            return Sql(
                f"(CASE {jt} WHEN 'VARCHAR' THEN strpos({_ascii_lower(f'json_extract_string({doc}, ?)')}, {_ascii_lower('?')}) > 0"
                f" WHEN 'ARRAY' THEN list_contains(list_transform({elements}, lambda {alias}: CASE WHEN json_type({alias}) = 'VARCHAR'"
                f" THEN json_extract_string({alias}, '$') END), ?) ELSE FALSE END)",
                (path, path, value, path, value),
            )
        if isinstance(value, bool):
            test = Sql(f"json_type({alias}) = 'BOOLEAN' AND CAST({alias} AS VARCHAR) = ?", ("true" if value else "false",))
        else:
            test = _equals_number(alias, None, [value])
        return Sql(
            f"(CASE WHEN {jt} = 'ARRAY' THEN len(list_filter({elements}, lambda {alias}: {test.text})) > 0 ELSE FALSE END)",
            (path, path, *test.params),
        )

    def json_matches(self, doc: str, key: str | None, pattern: str, *, longest: int) -> Sql:
        path = _path(key)
        text = f"json_extract_string({doc}, ?)"
        return Sql(
            f"(CASE WHEN json_type({doc}, ?) = 'VARCHAR' AND length({text}) <= ? THEN regexp_matches({text}, ?) ELSE FALSE END)",
            (path, path, longest, path, pattern),
        )

    def json_compare_number(self, doc: str, key: str | None, sign: str, number: int | float) -> Sql:
        return _compare_number(doc, key, sign, number)

    def json_compare_time(self, doc: str, key: str | None, sign: str, julian_day: float) -> Sql:
        path = _path(key)
        text = f"json_extract_string({doc}, ?)"
        # SQLite rounds the fraction of a second to the millisecond, half up.
        cast = f"TRY_CAST({text} AS TIMESTAMPTZ)"
        return Sql(
            f"(CASE WHEN json_type({doc}, ?) = 'VARCHAR' THEN CASE WHEN regexp_full_match({text}, '{_CANONICAL}')"
            f" AND {cast} IS NOT NULL THEN floor(epoch_us({cast}) / 1000.0 + 0.5) / 86400000.0 + 2440587.5"
            f" ELSE sqlite_julian_day({text}) END END {sign} ?)",
            (path, path, path, path, path, julian_day),
        )

    def register_regex(self, conn: Connection, match: Callable[[str, object], int]) -> None:
        pass  # regexp_matches is RE2, DuckDB's own

    @contextmanager
    def time_limit(self, conn: Connection, seconds: float) -> Iterator[None]:
        # DuckDB has no statement timeout: a timer interrupts the connection's running query.
        interrupted = threading.Event()

        def interrupt() -> None:
            interrupted.set()
            conn.interrupt()  # type: ignore[attr-defined]

        timer = threading.Timer(seconds, interrupt)
        timer.daemon = True
        timer.start()
        try:
            yield
        except duckdb.Error:
            if interrupted.is_set():
                raise StatementTimeout(seconds) from None
            raise
        finally:
            timer.cancel()
        if interrupted.is_set():  # the budget ran out as the last statement ended: past it all the same
            raise StatementTimeout(seconds)


DUCKDB = DuckDBDialect()


# -- SQLite's julianday() in Python, for texts DuckDB cannot cast --------------------------------

# The shapes DuckDB's TIMESTAMPTZ cast reads as SQLite does: a date, a time to the second or
# beyond, and Z or an offset (a time without a zone is UTC to both, the session being UTC).
_CANONICAL = r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|[+-][0-9]{2}:[0-9]{2})?)?"
_SPACE = r"[ \t\n\v\f\r]"
_DATETIME = re.compile(
    rf"(?:(-?)([0-9]{{4}})-([0-9]{{2}})-([0-9]{{2}})[T \t\n\v\f\r]*)?"
    rf"(?:([0-9]{{2}}):([0-9]{{2}})(?::([0-9]{{2}})(\.[0-9]+)?)?{_SPACE}*"
    rf"(?:[Zz]|([+-])([0-9]{{2}}):([0-9]{{2}}))?{_SPACE}*)?"
)
_NUMBER = re.compile(rf"{_SPACE}*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{{1,3}})?{_SPACE}*")


def sqlite_julian_day(text: str | None) -> float | None:
    """What SQLite's `julianday(text)` gives (date.c: a date, a time, a zone; 'now'; a bare
    number is itself a Julian day; fields out of range give NULL; a day past its month's end
    rolls over)."""
    if text is None:
        return None
    found = _DATETIME.fullmatch(text)
    if found is not None and (found[2] is not None or found[5] is not None):
        sign, y, mo, d, h, mi, s, fraction, tz_sign, tz_h, tz_mi = found.groups()
        year = (-1 if sign == "-" else 1) * int(y) if y is not None else 2000
        month, day = (int(mo), int(d)) if mo is not None else (1, 1)
        hour, minute = (int(h), int(mi)) if h is not None else (0, 0)
        second = int(s) if s is not None else 0
        hours_off, minutes_off = (int(tz_h), int(tz_mi)) if tz_h is not None else (0, 0)
        if not (1 <= month <= 12 and 1 <= day <= 31 and year >= -4713 and hour <= 24 and minute <= 59
                and second <= 59 and hours_off <= 14 and minutes_off <= 59):
            return None
        if month <= 2:
            year, month = year - 1, month + 12
        centuries = _c_div(year, 100)
        days = _c_div(36525 * (year + 4716), 100) + _c_div(306001 * (month + 1), 10000) + day + 2 - centuries + _c_div(centuries, 4)
        ms = days * 86400000 - 131716800000 + hour * 3600000 + minute * 60000
        ms += int((second + float(fraction or 0)) * 1000 + 0.5)
        ms -= (-1 if tz_sign == "-" else 1) * (hours_off * 60 + minutes_off) * 60000
        return ms / 86400000 if 0 <= ms <= 464269060799999 else None
    if text.lower() == "now":
        return time.time() / 86400.0 + 2440587.5
    if _NUMBER.fullmatch(text) is not None:
        number = float(text)
        return number if 0 <= number < 5373484.5 else None
    return None


def _c_div(a: int, b: int) -> int:
    """C's integer division (toward zero), as SQLite's date.c does it."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def register_functions(conn: duckdb.DuckDBPyConnection) -> None:
    """Once per database: DuckDB's Python functions are shared by all its connections."""
    conn.create_function(
        "sqlite_julian_day", sqlite_julian_day, ["varchar"], "double", null_handling=SPECIAL, side_effects=False,
    )
