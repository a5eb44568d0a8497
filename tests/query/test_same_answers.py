"""The PostgreSQL pieces of store/dialects.py answer as SQLite, and idstitch/regexes.py's rewrites
as Python's `re`, on RE2 and on a real PostgreSQL: every text compares as the same time, every
pattern finds the same matches on both engines, and what they cannot run is refused with the
reason, whichever the store."""

from __future__ import annotations

import random
import re
import sqlite3

import msgspec
import pytest

from idstitch.regexes import check_pattern, pattern_for, searches
from idstitch.store.dialects import POSTGRES, PatternRefused, StatementTimeout
from idstitch.store.postgres import PostgresConnection


@pytest.fixture(scope="module")
def pg(postgres_server):
    name = "t_same_answers"
    conn = PostgresConnection(postgres_server.create_database(name))
    yield conn
    conn.close()
    postgres_server.drop_database(name)


TIMES = [
    "2026-01-15", "2026-03-01T12:00:00+02:00", "2026-01-15T10:00:00.123456Z", "2026-01-15 12:00 Z ",
    "2026-01-15 12:00 -05:30", "2026-01-15T", "2026-01-15TT 12:00", "2026-01-1512:00", "2026-01-15\n12:00",
    "2026-02-30", "2024-02-29T01:02:03.4567891234567Z", "9999-12-31T23:59:59.999", "0000-01-01", "-0001-06-15",
    "-4713-11-24 12:00", "12:30", "12:30:15.5Z", "00:00", "24:00", "2026", "2460000.5", " 2460000.5 ", "1.5e+2",
    "1e-999", "1e999", ".5", "5.", "+5",
    # SQLite says NULL: out of its ranges, or not one of its forms
    "2026-13-01", "2026-00-10", "2026-01-32", "2026-01-15T23:60", "2026-01-15 12:00 +15:00", "-4714-01-01",
    "2026-01-15Z", "2026-1-15", "26-01-15", "2026-01-15 12", "2026-01-15 12:00:5", "2026-01-15T12:00:00.",
    "2026-01-15t12:00", "5373484.5", "-1", "1e", "abc", "", "  ", "٢٠٢٦-٠١-١٥",
]


def _random_times(count: int) -> list[str]:
    rng = random.Random(5)
    texts = []
    for _ in range(count):
        day = f"{rng.choice(['2026', '1999', '0100', '1582', '0000', '9999'])}-{rng.randint(0, 13):02d}-{rng.randint(0, 32):02d}"
        clock = ""
        if rng.random() < 0.7:
            seconds = rng.choice(["", f":{rng.randint(0, 60):02d}", f":{rng.randint(0, 59):02d}.{rng.randint(0, 999999)}"])
            clock = rng.choice(["T", " ", ""]) + f"{rng.randint(0, 25):02d}:{rng.randint(0, 60):02d}" + seconds
        zone = rng.choice(["", "Z", f"+{rng.randint(0, 15):02d}:{rng.randint(0, 60):02d}", "-08:30"])
        texts.append(day + clock + zone)
    return texts


def test_a_text_is_the_same_time_on_both_stores(pg):
    sqlite = sqlite3.connect(":memory:")
    differ = []
    for text in TIMES + _random_times(2000):
        expected = sqlite.execute("SELECT julianday(?)", (text,)).fetchone()[0]
        # Through the dialect's own comparison of a JSON string: equal to SQLite's Julian day, or
        # where SQLite has none, not even at or after the earliest.
        test = POSTGRES.json_compare_time("given.doc", None, *((">=", -1.0) if expected is None else ("=", expected)))
        found = pg.execute(
            f"SELECT {test.text} FROM (SELECT ?::jsonb AS doc) AS given", (*test.params, msgspec.json.encode(text).decode())
        ).fetchone()[0]
        if bool(found) != (expected is not None):
            differ.append((text, expected))
    assert differ == []


PATTERNS = [
    r"@example\.com$", r"^[ab]", r"^https://m\.", r"a.b", r"(?s)a.b", r"abc$", r"^abc$", r"(?m)^b", r"(?m)a$", r"\bfoo\b",
    r"\Bo", r"\d{3}-\d{4}", r"\w+@\w+", r"\s", r"\S+", r"[^\d]", r"[\Dx]", r"[^\Wa]", r"(?i)josé", r"(?i)[a-c]+",
    r"(?i)STRASSE", r"(?i)ß", r"(?i)ı", r"(?i)k", r"(?i)[^k]", r"(?a)\w+", r"(?a)\bé", r"é\b", r"\Aab", r"ab\Z",
    r"(?i:AB)c", r"(?s:a.)b", r"a{2,3}", r"a{0,1}b", r"(?:ab)?c", r"a*?b", r"x|y|", r"(?P<n>a)c", r"(?x) a b # comment", r"", r"\n", r"[\]\-\\^]", r"\.", r"[.]", r"\x41",
    r"[\U0001F600-\U0001F64F]", r"^$", r"(?m)$", r"(?:^)*b", r"(a|b)c", r"\x00", r"[^a]", r"(?s).", r"(?i)É", r"\$", r"(?i)\W", r"[^\n]",
    r"(?i)ǅ", r"(?i)Ω", r"(?i)µ", r"(?i)[K]", r"(?i)[à-ÿ]+",
]
SUBJECTS = [
    "", "a", "ab", "abc", "abc\n", "a\nb", "b\na", "foo", "a foo b", "foobar", "123-4567", "٣٤٥-٦٧٨٩", "x@y",
    "user@example.com", "USER@EXAMPLE.COM", "José", "JOSÉ", "Straße", "STRASSE", "ẞ", "ı", "i", "İ", "k", "K", "K",
    "é", "É", "naïve café", "\t", "\u00a0", "\u2003", "\x1c", "https://m.example", "ab\n\n", "😀", "a😀", "AB",
    "ABc", "aBc", "_", "aaa", "a.b", "]-\\^", "ǅ", "ǆ", "Ω", "ω", "Ω", "µ", "μ", "Μ", "€", "Ÿ", "ſ", "s",
    "é foo", "fooé", "\ufffd",
]


def python_finds(pattern: str, subjects: list[str] = SUBJECTS) -> list[str]:
    """What Python's `re` finds, with the one documented difference: \\b and \\B see ASCII words."""
    meant = re.sub(r"\\([bB])", r"(?a:\\\1)", pattern)
    return [s for s in subjects if re.search(meant, s)]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_pattern_finds_what_python_finds_on_re2(pattern):
    assert check_pattern(pattern) is None
    assert [s for s in SUBJECTS if searches(pattern, s)] == python_finds(pattern)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_pattern_finds_what_python_finds_on_postgresql(pg, pattern):
    assert check_pattern(pattern) is None
    rewritten = pattern_for("postgresql", pattern)
    # PostgreSQL holds U+FFFD where a NUL was sent (store/dialects.py), and a pattern's NUL too.
    stored = [s.replace("\x00", "\ufffd") for s in SUBJECTS]
    found = [s for s in stored if pg.execute("SELECT ? ~ ?", (s, rewritten)).fetchone()[0]]
    assert found == python_finds(pattern.replace(r"\x00", "\ufffd"), stored)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        pytest.param(r"(?>a)b", "atomic groups", id="atomic-group"),
        pytest.param(r"a*+b", "possessive quantifiers", id="possessive"),
        pytest.param(r"a{256}", "at most 255 times", id="count-above-255"),
        pytest.param("\ud800", "lone surrogate", id="surrogate"),
        pytest.param(r"(?=a)b", "lookahead and lookbehind", id="lookahead"),
        pytest.param(r"(?<!a)b", "lookahead and lookbehind", id="lookbehind"),
        pytest.param(r"(a)\1", "back-references", id="back-reference"),
        pytest.param(r"(a)?(?(1)b|c)", "back-references", id="conditional"),
        pytest.param(r"(a+)+$", "nested quantifiers", id="nested-quantifiers"),
        pytest.param(r"(a|ab)*c", "alternatives under a quantifier", id="alternatives-repeated"),
        pytest.param(r"a*b*c*d", "unbounded quantifiers", id="too-many-unbounded"),
    ],
)
def test_what_an_engine_cannot_run_is_refused_with_the_reason(pattern, reason):
    refused = check_pattern(pattern)
    assert refused is not None and reason in refused and repr(pattern) in refused


def test_a_statement_past_its_time_is_stopped_and_the_connection_stays_usable(pg):
    with pytest.raises(StatementTimeout, match="longer than 0.05 s"):
        with POSTGRES.time_limit(pg, 0.05):
            pg.execute("SELECT pg_sleep(5)")
    assert pg.execute("SHOW statement_timeout").fetchone()[0] == "0"  # SET LOCAL ended with the transaction
    with POSTGRES.time_limit(pg, 0.05):
        assert pg.execute("SELECT 1").fetchone()[0] == 1
    assert not pg.in_transaction


def test_a_regex_postgresql_refuses_is_said_as_such(pg):
    with pytest.raises(PatternRefused, match="invalid regular expression"):
        with POSTGRES.time_limit(pg, 5):
            pg.execute("SELECT 'a' ~ ?", ("(",))
    assert pg.execute("SELECT 1").fetchone()[0] == 1
