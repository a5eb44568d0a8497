"""Regular expressions in filters, with a size guard and a time guard.

Python's `re` backtracks and cannot be interrupted from another thread, so a pattern is checked
before it runs (`check_pattern`) and every query gets a time budget (`PatternGuard`):

* a pattern is at most `MAX_PATTERN_LENGTH` characters; back-references, nested quantifiers like
  `(a+)+` and alternatives under a quantifier like `(a|ab)*` are refused (they are what makes a
  backtracking engine take exponential time), and so are more than `MAX_UNBOUNDED` unbounded
  quantifiers (each one multiplies the worst case by the length of the value);
* a value longer than `MAX_SUBJECT_LENGTH` characters never matches;
* the calls of one query share `budget_seconds`; past it the query stops with an error that names
  the pattern, instead of holding a reader thread.

On PostgreSQL the database's own engine runs the pattern (`~`), and the same budget bounds each
statement of the query (`Dialect.time_limit`). Its syntax is not Python's, so a checked pattern
is rewritten (`to_postgresql`) from the tree Python's parser makes of it, keeping Python's
meaning: `.` stops at a newline, `$` also matches before a final newline, and `\\d`, `\\w`,
`\\s`, `\\b` and case-insensitive letters become explicit sets of characters (Python's Unicode
ones, whatever PostgreSQL's locale). What PostgreSQL cannot say is refused, saying why: atomic
groups and possessive quantifiers, and repetition counts above 255.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterable
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from idstitch.store.connection import Connection

try:  # the parser behind `re`; private, so the structural checks are skipped if it moves
    from re import _constants as _sre_constants  # type: ignore[attr-defined]
    from re import _parser as _sre_parser  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    _sre_parser = _sre_constants = None
try:  # how `re` folds case: its lowercase mapping and the extra equivalences (i and dotless i, ...)
    from _sre import unicode_tolower as _tolower
    from re._casefix import _EXTRA_CASES  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    _tolower = None
    _EXTRA_CASES = {}

MAX_PATTERN_LENGTH = 200
MAX_SUBJECT_LENGTH = 2000
MAX_UNBOUNDED = 2
DEFAULT_BUDGET_SECONDS = 2.0


class PatternTooSlow(Exception):
    """A query spent its whole regex time budget."""


@lru_cache(maxsize=256)
def compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def check_pattern(pattern: str) -> str | None:
    """Why `pattern` is refused, or None if it may run."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"a regex is at most {MAX_PATTERN_LENGTH} characters; this one has {len(pattern)}"
    try:
        compiled(pattern)
    except re.error as error:
        return f"regex {pattern!r} does not compile: {error}"
    if _sre_parser is None:
        return None
    try:
        parsed = _sre_parser.parse(pattern)
    except Exception:  # noqa: BLE001 - compiled above, so this is only a private API that moved
        return None
    unbounded = [0]
    problem = _walk(list(parsed), inside_repeat=False, unbounded=unbounded)
    if problem:
        return f"regex {pattern!r} is refused: {problem}"
    if unbounded[0] > MAX_UNBOUNDED:
        return (
            f"regex {pattern!r} is refused: it has {unbounded[0]} unbounded quantifiers (*, +, {{n,}}); "
            f"at most {MAX_UNBOUNDED} are allowed"
        )
    return None


def _walk(items: list, *, inside_repeat: bool, unbounded: list[int]) -> str | None:  # type: ignore[type-arg]
    c = _sre_constants
    repeats = {c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", c.MAX_REPEAT)}
    for op, av in items:
        if op in (c.GROUPREF, c.GROUPREF_EXISTS):
            return "back-references are not supported"
        if op in repeats:
            low, high, body = av
            is_repeat = high is c.MAXREPEAT or high > 1
            if high is c.MAXREPEAT or high > 100:
                unbounded[0] += 1
            if is_repeat and inside_repeat:
                return "nested quantifiers such as (a+)+ can take exponential time"
            problem = _walk(list(body), inside_repeat=inside_repeat or is_repeat, unbounded=unbounded)
            if problem:
                return problem
        elif op == c.SUBPATTERN:
            problem = _walk(list(av[-1]), inside_repeat=inside_repeat, unbounded=unbounded)
            if problem:
                return problem
        elif op == c.BRANCH:
            if inside_repeat:
                return "alternatives under a quantifier such as (a|ab)* can take exponential time"
            for branch in av[1]:
                problem = _walk(list(branch), inside_repeat=inside_repeat, unbounded=unbounded)
                if problem:
                    return problem
        elif op in (c.ASSERT, c.ASSERT_NOT):
            problem = _walk(list(av[1]), inside_repeat=inside_repeat, unbounded=unbounded)
            if problem:
                return problem
        elif op == getattr(c, "ATOMIC_GROUP", None):
            problem = _walk(list(av), inside_repeat=inside_repeat, unbounded=unbounded)
            if problem:
                return problem
    return None


class PatternGuard:
    """The `idstitch_regex(pattern, value)` SQL function of one query, with its time budget."""

    def __init__(self, budget_seconds: float | None = None) -> None:
        self.budget = DEFAULT_BUDGET_SECONDS if budget_seconds is None else budget_seconds
        self.spent = 0.0
        self.exhausted_by: str | None = None

    def match(self, pattern: str, value: object) -> int:
        if not isinstance(value, str) or len(value) > MAX_SUBJECT_LENGTH:
            return 0
        if self.exhausted_by is not None:
            raise PatternTooSlow(self.exhausted_by)
        start = time.perf_counter()
        found = compiled(pattern).search(value) is not None
        self.spent += time.perf_counter() - start
        if self.spent > self.budget:
            self.exhausted_by = pattern
            raise PatternTooSlow(pattern)
        return int(found)

    def install(self, conn: Connection) -> None:
        """Register this guard's function on a connection that needs one (replacing the previous
        query's); PostgreSQL runs its own `~` instead."""
        conn.dialect.register_regex(conn, self.match)



# -- the pattern each engine reads -----------------------------------------------------------------


def pattern_for(syntax: str, pattern: str) -> str:
    """A checked pattern as the engine of a dialect's `regex_syntax` reads it; ValueError says
    why that engine cannot run it."""
    return _REWRITES[syntax](pattern)


_Ranges = tuple[tuple[int, int], ...]
_LAST = sys.maxunicode
_SURROGATES = (0xD800, 0xDFFF)
_WHOLE: _Ranges = ((0, _LAST),)
_PG_MAX_REPEAT = 255  # PostgreSQL's DUPMAX


def _ranges(codes: Iterable[int]) -> _Ranges:
    out: list[list[int]] = []
    for code in sorted(set(codes)):
        if out and code == out[-1][1] + 1:
            out[-1][1] = code
        else:
            out.append([code, code])
    return tuple((lo, hi) for lo, hi in out)


def _union(*sets: _Ranges) -> _Ranges:
    merged: list[list[int]] = []
    for lo, hi in sorted(r for s in sets for r in s):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return tuple((lo, hi) for lo, hi in merged)


def _complement(ranges: _Ranges) -> _Ranges:
    out, start = [], 0
    for lo, hi in ranges:
        if lo > start:
            out.append((start, lo - 1))
        start = hi + 1
    if start <= _LAST:
        out.append((start, _LAST))
    return tuple(out)


@cache
def _category(name: str, ascii_only: bool) -> _Ranges:
    """Python's `\\d`, `\\s` or `\\w` for str patterns (str.isdecimal, isspace, isalnum or `_`:
    what `re` itself tests), or their ASCII forms under re.ASCII."""
    tests: dict[str, Callable[[str], bool]] = {
        "digit": str.isdecimal, "space": str.isspace, "word": lambda ch: ch.isalnum() or ch == "_",
    }
    test = tests[name]
    top = 0x7F if ascii_only else _LAST
    return _ranges(code for code in range(top + 1) if test(chr(code)))


@cache
def _by_lower() -> dict[int, tuple[int, ...]]:
    """Every character, by its lowercase in `re`'s case folding (only characters with a case)."""
    assert _tolower is not None
    groups: dict[int, list[int]] = {}
    for code in range(_LAST + 1):
        lower = _tolower(code)
        if lower != code or chr(code).upper() != chr(code):
            groups.setdefault(lower, [lower]).append(code)
    return {lower: tuple(sorted(set(codes))) for lower, codes in groups.items()}


def _folded(ranges: _Ranges) -> _Ranges:
    """The characters `re.IGNORECASE` takes as one of `ranges`: the same lowercase, or one of
    its extra equivalences (`re._casefix`)."""
    if _tolower is None:  # pragma: no cover
        raise ValueError("case-insensitive regexes on PostgreSQL need Python's case tables (_sre)")
    lowers = {_tolower(code) for lo, hi in ranges for code in range(lo, hi + 1)} if _size(ranges) < 200_000 else None
    if lowers is None:  # a range this wide already holds nearly every cased character
        lowers = {lower for lower in _by_lower()}
    lowers |= {extra for lower in list(lowers) for extra in _EXTRA_CASES.get(lower, ())}
    groups = _by_lower()
    return _union(ranges, _ranges(code for lower in lowers for code in groups.get(lower, (lower,))))


def _size(ranges: _Ranges) -> int:
    return sum(hi - lo + 1 for lo, hi in ranges)


def _char(code: int) -> str:
    if chr(code).isascii() and chr(code).isalnum():
        return chr(code)
    return f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}"


def _storable(ranges: _Ranges) -> _Ranges:
    """What PostgreSQL text can hold of `ranges`: no surrogates, and U+FFFD for NUL (PostgreSQL
    stores none; the migration and the writer keep U+FFFD in its place)."""
    out = []
    for lo, hi in ranges:
        if lo == 0:
            out.append((0xFFFD, 0xFFFD))
            lo = 1
        if hi < _SURROGATES[0] or lo > _SURROGATES[1]:
            out.append((lo, hi))
            continue
        if lo < _SURROGATES[0]:
            out.append((lo, _SURROGATES[0] - 1))
        if hi > _SURROGATES[1]:
            out.append((_SURROGATES[1] + 1, hi))
    return _union(tuple(r for r in out if r[0] <= r[1]))


def _bracket(ranges: _Ranges, *, negate: bool = False) -> str:
    ranges = _storable(ranges)
    if not ranges:
        # Nothing PostgreSQL can store: never matches (or, negated, matches any character).
        return "[\\u0001-\\U0010FFFF]" if negate else "[^\\u0001-\\U0010FFFF]"
    if not negate and len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
        return _char(ranges[0][0])
    body = "".join(_char(lo) if lo == hi else f"{_char(lo)}-{_char(hi)}" for lo, hi in ranges)
    return f"[{'^' if negate else ''}{body}]"


class _PostgresRewrite:
    """One pattern's tree (re._parser) as a PostgreSQL ARE with Python's meaning."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern

    def refuse(self, why: str) -> ValueError:
        return ValueError(f"regex {self.pattern!r} cannot run on PostgreSQL: {why}")

    def sequence(self, items: Iterable[tuple[Any, Any]], flags: int) -> str:
        return "".join(self.item(op, av, flags) for op, av in items)

    def item(self, op: Any, av: Any, flags: int) -> str:  # noqa: C901 - one case per opcode
        c = _sre_constants
        if op == c.LITERAL:
            return self.chars(((av, av),), flags)
        if op == c.NOT_LITERAL:
            return self.chars(((av, av),), flags, negate=True)
        if op == c.ANY:
            return "." if flags & re.DOTALL else _bracket(((10, 10),), negate=True)
        if op == c.IN:
            return self.charset(av, flags)
        if op == c.AT:
            return self.at(av, flags)
        if op == c.BRANCH:
            return "(?:" + "|".join(self.sequence(branch, flags) for branch in av[1]) + ")"
        if op == c.SUBPATTERN:
            _, add, remove, body = av
            return "(?:" + self.sequence(body, (flags | add) & ~remove) + ")"
        if op in (c.MAX_REPEAT, c.MIN_REPEAT):
            # Lazy or greedy finds the same "is there a match", which is all a filter asks.
            low, high, body = av
            return self.repeat(low, high, body, flags)
        if op in (c.ASSERT, c.ASSERT_NOT):
            direction, body = av
            kind = ("=" if op == c.ASSERT else "!") if direction == 1 else ("<=" if op == c.ASSERT else "<!")
            return f"(?{kind}{self.sequence(body, flags)})"
        if op in (c.GROUPREF, c.GROUPREF_EXISTS):
            raise self.refuse("back-references are not supported")
        if op == getattr(c, "POSSESSIVE_REPEAT", None) or op == getattr(c, "ATOMIC_GROUP", None):
            raise self.refuse("atomic groups (?>...) and possessive quantifiers (*+, ++, ?+) are not supported")
        raise self.refuse(f"{op} is not supported")  # pragma: no cover - every opcode the parser makes is above

    def chars(self, ranges: _Ranges, flags: int, *, negate: bool = False) -> str:
        if flags & re.IGNORECASE:
            ranges = _folded(ranges)
        if not negate and any(lo <= _SURROGATES[1] and hi >= _SURROGATES[0] for lo, hi in ranges) and _size(ranges) == 1:
            raise self.refuse(f"PostgreSQL text holds no lone surrogate (U+{ranges[0][0]:04X})")
        return _bracket(ranges, negate=negate)

    def category(self, code: Any, flags: int) -> _Ranges:
        c = _sre_constants
        names = {
            c.CATEGORY_DIGIT: ("digit", False), c.CATEGORY_NOT_DIGIT: ("digit", True),
            c.CATEGORY_SPACE: ("space", False), c.CATEGORY_NOT_SPACE: ("space", True),
            c.CATEGORY_WORD: ("word", False), c.CATEGORY_NOT_WORD: ("word", True),
        }
        if code not in names:  # pragma: no cover - the parser makes only these
            raise self.refuse(f"{code} is not supported")
        name, negated = names[code]
        ranges = _category(name, bool(flags & re.ASCII))
        return _complement(ranges) if negated else ranges

    def charset(self, items: list[tuple[Any, Any]], flags: int) -> str:
        c = _sre_constants
        negate = bool(items) and items[0][0] == c.NEGATE
        cased: list[_Ranges] = []  # letters and ranges, which IGNORECASE folds
        fixed: list[_Ranges] = []  # \d \s \w and their negations, which it leaves
        for op, av in items[1:] if negate else items:
            if op == c.LITERAL:
                cased.append(((av, av),))
            elif op == c.RANGE:
                cased.append((av,))
            elif op == c.CATEGORY:
                fixed.append(self.category(av, flags))
            else:  # pragma: no cover - the parser puts only these in a set
                raise self.refuse(f"{op} in a character set is not supported")
        letters = _union(*cased)
        if flags & re.IGNORECASE:
            letters = _folded(letters)
        return _bracket(_union(letters, *fixed), negate=negate)

    def at(self, code: Any, flags: int) -> str:
        c = _sre_constants
        if code == c.AT_BEGINNING:
            return "(?:^|(?<=\\u000A))" if flags & re.MULTILINE else "^"
        if code == c.AT_BEGINNING_STRING:
            return "^"
        if code == c.AT_END:  # Python's $ also matches before a newline that ends the text
            return "(?=\\u000A|$)" if flags & re.MULTILINE else "(?=\\u000A?$)"
        if code == c.AT_END_STRING:
            return "$"
        if code in (c.AT_BOUNDARY, c.AT_NON_BOUNDARY):
            word = _bracket(_category("word", bool(flags & re.ASCII)))
            if code == c.AT_BOUNDARY:
                return f"(?:(?<={word})(?!{word})|(?<!{word})(?={word}))"
            return f"(?:(?<={word})(?={word})|(?<!{word})(?!{word}))"
        raise self.refuse(f"{code} is not supported")  # pragma: no cover

    def repeat(self, low: int, high: Any, body: Iterable[tuple[Any, Any]], flags: int) -> str:
        items = list(body)
        inner = self.sequence(items, flags)
        if _zero_width(items):
            # PostgreSQL refuses to repeat an assertion; once means the same, or nothing at all.
            return inner if low else ""
        unbounded = high is _sre_constants.MAXREPEAT
        if low > _PG_MAX_REPEAT or (not unbounded and high > _PG_MAX_REPEAT):
            raise self.refuse(f"PostgreSQL repeats at most {_PG_MAX_REPEAT} times ({{{low},{'' if unbounded else high}}})")
        if unbounded:
            quantifier = {0: "*", 1: "+"}.get(low, f"{{{low},}}")
        else:
            quantifier = "?" if (low, high) == (0, 1) else f"{{{low}}}" if low == high else f"{{{low},{high}}}"
        return f"(?:{inner}){quantifier}"


def _zero_width(items: list[tuple[Any, Any]]) -> bool:
    c = _sre_constants
    for op, av in items:
        if op in (c.AT, c.ASSERT, c.ASSERT_NOT):
            continue
        if op == c.SUBPATTERN and _zero_width(list(av[-1])):
            continue
        if op == c.BRANCH and all(_zero_width(list(b)) for b in av[1]):
            continue
        if op in (c.MAX_REPEAT, c.MIN_REPEAT) and _zero_width(list(av[2])):
            continue
        return False
    return True


@lru_cache(maxsize=256)
def to_postgresql(pattern: str) -> str:
    """A pattern check_pattern let through, as a PostgreSQL regex with the same matches."""
    if _sre_parser is None:  # pragma: no cover
        raise ValueError("regexes on PostgreSQL need Python's regex parser (re._parser), which this Python lacks")
    parsed = _sre_parser.parse(pattern)
    return _PostgresRewrite(pattern).sequence(list(parsed), parsed.state.flags)


_REWRITES: dict[str, Callable[[str], str]] = {"python": lambda pattern: pattern, "postgresql": to_postgresql}
