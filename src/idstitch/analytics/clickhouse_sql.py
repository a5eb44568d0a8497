"""The query layer's SQL pieces in ClickHouse's words (store/dialects.py `Dialect`), so a filter or a
count compiles for the ClickHouse copy as it does for the store, and answers as SQLite does.

What a JSON piece reads is the JSON text of one value, '' when the key is missing:

    an event's property     `properties[key]`: the copy holds `properties` as a Map of each
                            top-level key to its value's JSON text, as msgspec writes it, which is
                            also what SQLite's `->` gives back for the store's text (the engine
                            splits them when it copies an event: clickhouse_engine.py)
    an attribute's value    the value column itself (JSON text, as msgspec writes it)
    any other document      `JSONExtractRaw(doc, key)` (ClickHouse's own writing of the value)

and its type is read off its first character, as JSON's grammar allows: `"` a string, `-` or a
digit a number, `t`/`f` a boolean, `n` null, `[` a list, `{` an object. A number written as an
integer within 64 bits compares as an integer, any other as a double, as SQLite's `json_extract`
returns them; ClickHouse compares integers and doubles exactly, as SQLite does. Strings are read
with `JSONExtractString`, so escapes never matter. Regexes run on ClickHouse's `match()`, which
is RE2 (regexes.py rewrites `.` and the classes explicitly, so its dot-matches-newline default
changes nothing). Times compare as SQLite's `julianday()` reads them: the same arithmetic as
date.c, in SQL (`_julian_day`), for every shape SQLite reads.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import msgspec

from idstitch.analytics.engine import CopyDialect
from idstitch.store.dialects import Sql

if TYPE_CHECKING:
    from idstitch.store.connection import Connection

_encode = msgspec.json.Encoder().encode

# A reference to an events table's `properties` column (`e.properties`, `ev3.properties`): a Map.
_PROPERTIES = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_]*\.)?properties")
_DIGITS = "('-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9')"


def literal(text: str) -> str:
    """`text` as a ClickHouse string literal (a backslash escapes in ClickHouse's literals)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def let(name: str, value: str, body: str) -> str:
    """`body` with `name` bound to `value`, computed once (ClickHouse has no LET: a one-element
    array mapped by a lambda)."""
    return f"arrayElement(arrayMap({name} -> {body}, [{value}]), 1)"


def _marks(values: list[Any]) -> str:
    return ",".join("?" * len(values))


def _is_number(v: str) -> str:
    return f"(substring({v}, 1, 1) IN {_DIGITS})"


def _is_integer(v: str) -> str:
    """A JSON number SQLite reads as an integer: no fraction, no exponent, within 64 bits."""
    return f"(toInt64OrNull({v}) IS NOT NULL AND NOT match({v}, '[.eE]'))"


def _number_test(v: str, sign: str, count: int) -> str:
    """The number at `v` `sign` each of `count` bound numbers (joined by OR), compared as SQLite
    compares what json_extract returns: an integer exactly, a double as a double."""
    as_integer = " OR ".join([f"toInt64OrNull({v}) {sign} ?"] * count)
    as_double = " OR ".join([f"toFloat64OrNull({v}) {sign} ?"] * count)
    return f"multiIf({_is_integer(v)}, {as_integer}, {_is_number(v)}, {as_double}, NULL)"


def _string(v: str) -> str:
    """The string a JSON string's text holds, as SQLite's json_extract reads it: up to its first
    NUL character (an escaped `\\u0000` ends the text SQLite 3.40 reads from JSON)."""
    return let("js", f"JSONExtractString({v})", "if(position(js, '\\0') = 0, js, substring(js, 1, position(js, '\\0') - 1))")


class ClickHouseDialect(CopyDialect):
    name = "clickhouse"

    def week_start(self, day: str) -> str:
        # ClickHouse's dates cover 1900-2299 (Date32); the calendar's other years take the
        # arithmetic (Julian day numbers, whose multiples of 7 are Mondays).
        # (toMonday of a Date32 is a Date, which starts in 1970: a Date32 less its weekday stays one.)
        fast = f"toString(toDate32({day}) - (toDayOfWeek(toDate32({day})) - 1))"
        return f"if(substring({day}, 1, 4) BETWEEN '1900' AND '2299', {fast}, {_monday_by_arithmetic(day)})"

    def same_text_ignoring_ascii_case(self, column: str, value: str) -> Sql:
        return Sql(f"lower({column}) = lower(?)", (value,))  # ClickHouse's lower() is ASCII's

    # -- JSON ----------------------------------------------------------------------------------

    @staticmethod
    def _value(doc: str, key: str | None) -> Sql:
        """The JSON text of the value at `key` of `doc` ('' when missing)."""
        if key is None:
            return Sql(f"ifNull({doc}, '')")  # an attribute's value; NULL is "not set" as missing is
        if _PROPERTIES.fullmatch(doc):
            return Sql(f"{doc}[?]", (key,))
        return Sql(f"ifNull(JSONExtractRaw({doc}, ?), '')", (key,))

    def _over_value(self, doc: str, key: str | None, body: str, params: tuple[Any, ...] = ()) -> Sql:
        """`body` (SQL over `jv`, the value's JSON text, and its own `params`), the value read once."""
        v = self._value(doc, key)
        return Sql(let("jv", v.text, body), (*params, *v.params))

    def json_document(self, text: str) -> str:
        return text

    def json_array_values(self, doc: str) -> str:
        return f"(SELECT arrayJoin(JSONExtract({doc}, 'Array(String)')) AS value)"

    def json_text_at(self, doc: str, key: str) -> Sql:
        v = self._value(doc, key)
        return Sql(f"nullIf({v.text}, '')", v.params)

    def json_is_set(self, doc: str, key: str | None) -> Sql:
        v = self._value(doc, key)
        return Sql(f"coalesce({v.text} NOT IN ('', 'null'), FALSE)", v.params)

    def json_in(self, doc: str, key: str | None, values: list[Any]) -> Sql:
        strings = [s for s in values if isinstance(s, str)]
        numbers = [n for n in values if isinstance(n, (int, float)) and not isinstance(n, bool)]
        words = sorted({"true" if b else "false" for b in values if isinstance(b, bool)} | ({"null"} if None in values else set()))
        parts: list[str] = []
        params: list[Any] = []
        if strings:
            parts.append(f"(startsWith(jv, '\"') AND {_string('jv')} IN ({_marks(strings)}))")
            params += strings
        if numbers:
            parts.append(f"coalesce({_number_test('jv', '=', len(numbers))}, FALSE)")
            params += [*numbers, *numbers]
        if words:
            parts.append(f"jv IN ({_marks(words)})")
            params += words
        return self._over_value(doc, key, "(" + (" OR ".join(parts) or "FALSE") + ")", tuple(params))

    def json_contains(self, doc: str, key: str | None, value: Any, alias: str) -> Sql:
        elements = "JSONExtractArrayRaw(jv)"
        if isinstance(value, str):
            body = (
                f"multiIf(startsWith(jv, '\"'), position(lower({_string('jv')}), lower(?)) > 0,"
                f" startsWith(jv, '['), arrayExists({alias} -> startsWith({alias}, '\"') AND {_string(alias)} = ?,"
                f" {elements}), FALSE)"
            )
            return self._over_value(doc, key, body, (value, value))
        if isinstance(value, bool):
            return self._over_value(doc, key, f"(startsWith(jv, '[') AND has({elements}, ?))", ("true" if value else "false",))
        test = _number_test(alias, "=", 1)
        return self._over_value(
            doc, key, f"(startsWith(jv, '[') AND arrayExists({alias} -> coalesce({test}, FALSE), {elements}))", (value, value)
        )

    def json_matches(self, doc: str, key: str | None, pattern: str, *, longest: int) -> Sql:
        text = _string("jv")
        return self._over_value(
            doc, key, f"(startsWith(jv, '\"') AND lengthUTF8({text}) <= ? AND match({text}, ?))", (longest, pattern)
        )

    def json_compare_number(self, doc: str, key: str | None, sign: str, number: int | float) -> Sql:
        return self._over_value(doc, key, _number_test("jv", sign, 1), (number, number))

    def json_compare_time(self, doc: str, key: str | None, sign: str, julian_day: float) -> Sql:
        return self._over_value(doc, key, f"(startsWith(jv, '\"') AND {_julian_day(_string('jv'))} {sign} ?)", (julian_day,))

    # -- running queries -----------------------------------------------------------------------

    def register_regex(self, conn: Connection, match: Callable[[str, object], int]) -> None:
        pass  # match() is RE2, ClickHouse's own

    @contextmanager
    def time_limit(self, conn: Connection, seconds: float) -> Iterator[None]:
        # Each statement runs with `max_execution_time`; the connection turns ClickHouse's
        # TIMEOUT_EXCEEDED into StatementTimeout (clickhouse_engine.ClickHouseConnection).
        previous = conn.statement_seconds  # type: ignore[attr-defined]
        conn.statement_seconds = seconds  # type: ignore[attr-defined]
        try:
            yield
        finally:
            conn.statement_seconds = previous  # type: ignore[attr-defined]


CLICKHOUSE = ClickHouseDialect()


# -- SQLite's julianday() in ClickHouse's SQL ---------------------------------------------------

# As store/dialects.py's PostgreSQL port (date.c, parseDateOrTime and computeJD): `[-]YYYY-MM-DD`,
# then after any spaces or Ts an optional `HH:MM[:SS[.fff]]`, then an optional `Z` or `±HH:MM`
# (a bare time is on 2000-01-01); 'now'; or a number, itself a Julian day. Fields out of SQLite's
# ranges make NULL; a day past its month's end rolls over, as SQLite's arithmetic does. The usual
# shapes (`_CANONICAL`) are cut at fixed places; the others are read by extractGroups.
#
# Not ClickHouse's own date parsing: its DateTime64 covers only 1900-2299, and SQLite rounds the
# fraction of a second to the millisecond in double arithmetic, which this repeats.
_SPACE = r"[ \t\n\v\f\r]"
_CANONICAL = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})?)?$"
_DATETIME = (
    rf"^(?:(-?)([0-9]{{4}})-([0-9]{{2}})-([0-9]{{2}})[T \t\n\v\f\r]*)?"
    rf"(?:([0-9]{{2}}):([0-9]{{2}})(?::([0-9]{{2}})(\.[0-9]+)?)?{_SPACE}*"
    rf"(?:[Zz]|([+-])([0-9]{{2}}):([0-9]{{2}}))?{_SPACE}*)?$"
)
_NUMBER = rf"^{_SPACE}*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{{1,3}})?{_SPACE}*$"
_LAST_MS = 464269060799999  # 9999-12-31 23:59:59.999
_UNIX_EPOCH_MS = 210866760000000  # the Julian day of 1970-01-01, in milliseconds

# Each field: cut from a canonical text `jd_t` (of length `jd_n`, whose zone is `jd_z` characters
# long), or read from the groups `jd_m` of `_DATETIME` ('' for a group that matched nothing).
_FIELDS = (
    ("toInt64OrZero(substring(jd_t, 1, 4))", "if(jd_m[2] = '', 2000, if(jd_m[1] = '-', -1, 1) * toInt64OrZero(jd_m[2]))"),
    ("toInt64OrZero(substring(jd_t, 6, 2))", "if(jd_m[3] = '', 1, toInt64OrZero(jd_m[3]))"),
    ("toInt64OrZero(substring(jd_t, 9, 2))", "if(jd_m[4] = '', 1, toInt64OrZero(jd_m[4]))"),
    ("if(jd_n > 10, toInt64OrZero(substring(jd_t, 12, 2)), 0)", "toInt64OrZero(jd_m[5])"),
    ("if(jd_n > 10, toInt64OrZero(substring(jd_t, 15, 2)), 0)", "toInt64OrZero(jd_m[6])"),
    ("if(jd_n - jd_z >= 19, toInt64OrZero(substring(jd_t, 18, 2)), 0)", "toInt64OrZero(jd_m[7])"),
    ("if(jd_n - jd_z > 20, toFloat64OrZero(substring(jd_t, 20, jd_n - jd_z - 19)), 0.)", "toFloat64OrZero(jd_m[8])"),
    ("if(jd_z = 6 AND substring(jd_t, jd_n - 5, 1) = '-', -1, 1)", "if(jd_m[9] = '-', -1, 1)"),
    ("if(jd_z = 6, toInt64OrZero(substring(jd_t, jd_n - 4, 2)), 0)", "toInt64OrZero(jd_m[10])"),
    ("if(jd_z = 6, toInt64OrZero(substring(jd_t, jd_n - 1, 2)), 0)", "toInt64OrZero(jd_m[11])"),
)
_TRIM_SPACES = "' \\t\\n\\v\\f\\r'"  # ClickHouse's escapes of SQLite's spaces


def _julian_day_sql() -> str:
    """SQL over `jd_t` (the text): SQLite's julianday(jd_t), or NULL."""
    cut = "tuple(" + ", ".join(c for c, _ in _FIELDS) + ")"
    read = "tuple(" + ", ".join(r for _, r in _FIELDS) + ")"
    zone = "multiIf(endsWith(jd_t, 'Z') OR endsWith(jd_t, 'z'), 1, jd_n >= 22 AND substring(jd_t, jd_n - 5, 1) IN ('+', '-'), 6, 0)"
    y, mo, d, h, mi, s, fraction, tz_sign, tz_h, tz_mi = (f"tupleElement(jd_f, {i})" for i in range(1, 11))
    before_march = f"toInt64({mo} <= 2)"
    year = f"({y} - {before_march})"
    month = f"({mo} + 12 * {before_march})"
    days = (
        f"(intDiv(36525 * ({year} + 4716), 100) + intDiv(306001 * ({month} + 1), 10000) + {d} + 2"
        f" - intDiv({year}, 100) + intDiv(intDiv({year}, 100), 4))"
    )
    ms_of_time = (
        f"{days} * 86400000 - 131716800000 + {h} * 3600000 + {mi} * 60000"
        f" + toInt64(floor(({s} + {fraction}) * 1000 + 0.5)) - {tz_sign} * ({tz_h} * 60 + {tz_mi}) * 60000"
    )
    in_range = (
        f"{mo} BETWEEN 1 AND 12 AND {d} BETWEEN 1 AND 31 AND {y} >= -4713 AND {h} <= 24 AND {mi} <= 59"
        f" AND {s} <= 59 AND {tz_h} <= 14 AND {tz_mi} <= 59"
    )
    of_time = let("jd_f", f"if(jd_c, {cut}, {read})", f"if({in_range}, {ms_of_time}, NULL)")
    number = let(
        "jd_x", f"toFloat64OrNull(trim(BOTH {_TRIM_SPACES} FROM jd_t))",
        "if(jd_x >= 0 AND jd_x < 5373484.5, toInt64(floor(jd_x * 86400000 + 0.5)), NULL)",
    )
    ms = (
        f"multiIf(jd_c OR jd_m[2] != '' OR jd_m[5] != '', {of_time},"
        f" lower(jd_t) = 'now', toUnixTimestamp64Milli(now64(3)) + {_UNIX_EPOCH_MS},"
        f" match(jd_t, {literal(_NUMBER)}), {number}, NULL)"
    )
    in_days = let("jd_ms", ms, f"if(jd_ms BETWEEN 0 AND {_LAST_MS}, jd_ms / 86400000, NULL)")
    canonical = f"match(jd_t, {literal(_CANONICAL)})"
    groups = f"if({canonical}, CAST([] AS Array(String)), extractGroups(jd_t, {literal(_DATETIME)}))"
    zone = zone.replace("jd_n", "length(jd_t)")
    return (
        f"arrayElement(arrayMap((jd_c, jd_n, jd_z, jd_m) -> {in_days}, [{canonical}], [length(jd_t)], [{zone}], [{groups}]), 1)"
    )


_JULIAN_DAY = _julian_day_sql()


def _julian_day(text: str) -> str:
    """SQLite's julianday(`text`) (a String expression, computed once), or NULL."""
    return let("jd_t", text, _JULIAN_DAY)


def _monday_by_arithmetic(day: str) -> str:
    """The Monday on or before `day` (a `YYYY-MM-DD` text of any year 0-9999), by Julian day
    numbers (Fliegel and Van Flandern's conversions, all in non-negative integers)."""
    y, m, d = (f"toInt64OrZero(substring({day}, {start}, {length}))" for start, length in ((1, 4), (6, 2), (9, 2)))
    a = f"intDiv(14 - {m}, 12)"
    jdn = (
        f"{d} + intDiv(153 * ({m} + 12 * {a} - 3) + 2, 5) + 365 * ({y} + 4800 - {a}) + intDiv({y} + 4800 - {a}, 4)"
        f" - intDiv({y} + 4800 - {a}, 100) + intDiv({y} + 4800 - {a}, 400) - 32045"
    )
    date = (
        "concat(leftPad(toString(100 * (wk_q - 49) + wk_i + intDiv(wk_k, 11)), 4, '0'), '-',"
        " leftPad(toString(wk_k + 2 - 12 * intDiv(wk_k, 11)), 2, '0'), '-',"
        " leftPad(toString(wk_l3 - intDiv(2447 * wk_k, 80)), 2, '0'))"
    )
    for name, value in reversed((
        ("wk_l", "wk_j + 68569"),
        ("wk_q", "intDiv(4 * wk_l, 146097)"),
        ("wk_l2", "wk_l - intDiv(146097 * wk_q + 3, 4)"),
        ("wk_i", "intDiv(4000 * (wk_l2 + 1), 1461001)"),
        ("wk_l3", "wk_l2 - intDiv(1461 * wk_i, 4) + 31"),
        ("wk_k", "intDiv(80 * wk_l3, 2447)"),
    )):
        date = let(name, value, date)
    return let("wk_jdn", jdn, let("wk_j", "wk_jdn - wk_jdn % 7", date))
