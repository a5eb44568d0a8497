"""The one regular-expression language of a project: illegal-id patterns and `regex` filters.

Both are written in Python's `re` syntax, checked by one function (`check_pattern`) when they are
saved or sent, and *searched*: a pattern matches a value if it matches anywhere in it (use `^`
and `$` to anchor). Every pattern runs on a linear-time engine or under a deadline, never on a
backtracking engine that one crafted value could hold for minutes:

* in the server (illegal ids on the ingest path, filters on SQLite) on RE2 (`google-re2`),
  which takes time linear in the value whatever the pattern;
* on PostgreSQL by the database's own `~`, under the query's statement_timeout.

Neither engine reads Python's syntax, so a checked pattern is rewritten (`pattern_for`) from the
tree Python's parser makes of it, keeping Python's meaning: `.` stops at a newline, `\\d`, `\\w`,
`\\s` and case-insensitive letters become explicit sets of characters (Python's Unicode ones,
whatever the engine's own tables say). Two things differ from Python, the same way on every
engine: `\\b` and `\\B` take only ASCII letters, digits and `_` as word characters (RE2 has no
other word boundary), and `$` ends the match (it matches at the end of the value or before a
final newline, as in Python, and nothing after it matches more characters).

What a linear engine cannot run is refused, saying why: back-references, lookahead and
lookbehind, atomic groups and possessive quantifiers, repetition counts above 255 (PostgreSQL's
limit), and lone surrogates. So are shapes PostgreSQL's engine may take exponential time on:
nested quantifiers like `(a+)+`, alternatives under a quantifier like `(a|ab)*`, and more than
`MAX_UNBOUNDED` unbounded quantifiers.

Pure: no I/O; RE2 is a library that only computes.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable
from functools import cache, lru_cache
from typing import Any

import re2

try:  # the parser behind `re`; private, so patterns are refused if it moves (see _tree)
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
MAX_UNBOUNDED = 2
MAX_REPEAT = 255  # PostgreSQL's DUPMAX; RE2 allows 1000, but a pattern must mean one thing everywhere

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is an answer, not a line on stderr
_RE2_OPTIONS.never_capture = True  # only "is there a match" is ever asked


def check_pattern(pattern: str) -> str | None:
    """Why `pattern` is refused (a sentence naming it), or None if it may be saved and run."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"a regex is at most {MAX_PATTERN_LENGTH} characters; this one has {len(pattern)}"
    try:
        re.compile(pattern)
    except re.error as error:
        return f"regex {pattern!r} does not compile: {error}"
    except (OverflowError, RecursionError):
        return f"regex {pattern!r} does not compile: it is nested or repeated too deeply"
    try:
        tree = _tree(pattern)
        unbounded = [0]
        problem = _walk(list(tree), inside_repeat=False, unbounded=unbounded)
        if problem:
            return f"regex {pattern!r} is refused: {problem}"
        if unbounded[0] > MAX_UNBOUNDED:
            return (
                f"regex {pattern!r} is refused: it has {unbounded[0]} unbounded quantifiers (*, +, {{n,}}); "
                f"at most {MAX_UNBOUNDED} are allowed"
            )
        for syntax in _REWRITES:
            pattern_for(syntax, pattern)
        _re2_compiled(pattern)
    except ValueError as refused:
        return str(refused)
    return None


def searches(pattern: str, value: str) -> bool:
    """Whether a checked `pattern` matches anywhere in `value`, in time linear in `value`."""
    try:
        subject = value.encode()
    except UnicodeEncodeError:  # a lone surrogate, which no stored text holds: U+FFFD stands in
        subject = "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in value).encode()
    return _re2_compiled(pattern).search(subject) is not None


@lru_cache(maxsize=512)
def _re2_compiled(pattern: str) -> Any:
    try:
        return re2.compile(pattern_for("re2", pattern).encode(), _RE2_OPTIONS)
    except re2.error as error:
        message = error.args[0].decode(errors="replace") if error.args and isinstance(error.args[0], bytes) else str(error)
        raise ValueError(f"regex {pattern!r} is refused: {message}") from None


def pattern_for(syntax: str, pattern: str) -> str:
    """A checked pattern as the engine named by `syntax` (a dialect's `regex_syntax`: `python`
    for `searches` itself, `re2` or `postgresql`) reads it; ValueError says why it cannot run."""
    return _REWRITES[syntax](pattern)


@lru_cache(maxsize=512)
def _tree(pattern: str) -> Any:
    if _sre_parser is None:  # pragma: no cover
        raise ValueError("regexes need Python's regex parser (re._parser), which this Python lacks")
    return _sre_parser.parse(pattern)


def _walk(items: list, *, inside_repeat: bool, unbounded: list[int]) -> str | None:  # type: ignore[type-arg]
    """The shapes that can take exponential time on a backtracking engine (PostgreSQL's, for
    some patterns), found in the parsed tree."""
    c = _sre_constants
    repeats = {c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", c.MAX_REPEAT)}
    for op, av in items:
        if op in repeats:
            low, high, body = av
            is_repeat = high is c.MAXREPEAT or high > 1
            if high is c.MAXREPEAT or high > 100:
                unbounded[0] += 1
            if is_repeat and inside_repeat:
                return "nested quantifiers such as (a+)+ can take exponential time"
            problem = _walk(list(body), inside_repeat=inside_repeat or is_repeat, unbounded=unbounded)
        elif op == c.SUBPATTERN:
            problem = _walk(list(av[-1]), inside_repeat=inside_repeat, unbounded=unbounded)
        elif op == c.BRANCH:
            if inside_repeat:
                return "alternatives under a quantifier such as (a|ab)* can take exponential time"
            problem = next(
                (p for b in av[1] if (p := _walk(list(b), inside_repeat=False, unbounded=unbounded))), None
            )
        else:
            problem = None
        if problem:
            return problem
    return None


# -- the rewrites -----------------------------------------------------------------------------

_Ranges = tuple[tuple[int, int], ...]
_LAST = sys.maxunicode
_SURROGATES = (0xD800, 0xDFFF)
_ASCII_WORD: _Ranges = ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))


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


def _without_surrogates(ranges: _Ranges) -> _Ranges:
    out = []
    for lo, hi in ranges:
        if hi < _SURROGATES[0] or lo > _SURROGATES[1]:
            out.append((lo, hi))
            continue
        if lo < _SURROGATES[0]:
            out.append((lo, _SURROGATES[0] - 1))
        if hi > _SURROGATES[1]:
            out.append((_SURROGATES[1] + 1, hi))
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
        raise ValueError("case-insensitive regexes need Python's case tables (_sre)")
    lowers = {_tolower(code) for lo, hi in ranges for code in range(lo, hi + 1)} if _size(ranges) < 200_000 else None
    if lowers is None:  # a range this wide already holds nearly every cased character
        lowers = {lower for lower in _by_lower()}
    lowers |= {extra for lower in list(lowers) for extra in _EXTRA_CASES.get(lower, ())}
    groups = _by_lower()
    return _union(ranges, _ranges(code for lower in lowers for code in groups.get(lower, (lower,))))


def _size(ranges: _Ranges) -> int:
    return sum(hi - lo + 1 for lo, hi in ranges)


def _zero_width(items: list[tuple[Any, Any]]) -> bool:
    c = _sre_constants
    for op, av in items:
        if op == c.AT:
            continue
        if op == c.SUBPATTERN and _zero_width(list(av[-1])):
            continue
        if op == c.BRANCH and all(_zero_width(list(b)) for b in av[1]):
            continue
        if op in (c.MAX_REPEAT, c.MIN_REPEAT) and _zero_width(list(av[2])):
            continue
        return False
    return True


class _Rewrite:
    """One pattern's tree (re._parser) in an engine's syntax, with Python's meaning. Subclasses
    say how the engine writes a character, a set and an anchor."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern

    def refuse(self, why: str) -> ValueError:
        return ValueError(f"regex {self.pattern!r} is refused: {why}")

    def __call__(self) -> str:
        tree = _tree(self.pattern)
        return self.sequence(list(tree), tree.state.flags)

    # what an engine says its own way
    def char(self, code: int) -> str:
        raise NotImplementedError

    def storable(self, ranges: _Ranges) -> _Ranges:
        return _without_surrogates(ranges)

    any_char: str  # any character, newlines included
    never: str  # a set no character is in
    anchors: dict[tuple[str, bool], str]  # (anchor, multiline) -> the engine's text
    boundaries: tuple[str, str]  # ASCII \b and \B

    def sequence(self, items: Iterable[tuple[Any, Any]], flags: int) -> str:
        return "".join(self.item(op, av, flags) for op, av in items)

    def item(self, op: Any, av: Any, flags: int) -> str:  # noqa: C901 - one case per opcode
        c = _sre_constants
        if op == c.LITERAL:
            return self.chars(((av, av),), flags)
        if op == c.NOT_LITERAL:
            return self.chars(((av, av),), flags, negate=True)
        if op == c.ANY:
            return self.any_char if flags & re.DOTALL else self.bracket(((10, 10),), negate=True)
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
            # Lazy or greedy finds the same "is there a match", which is all anyone asks.
            low, high, body = av
            return self.repeat(low, high, body, flags)
        if op in (c.ASSERT, c.ASSERT_NOT):
            raise self.refuse("lookahead and lookbehind assertions ((?=...), (?!...), (?<=...), (?<!...)) are not supported")
        if op in (c.GROUPREF, c.GROUPREF_EXISTS):
            raise self.refuse("back-references are not supported")
        if op == getattr(c, "POSSESSIVE_REPEAT", None) or op == getattr(c, "ATOMIC_GROUP", None):
            raise self.refuse("atomic groups (?>...) and possessive quantifiers (*+, ++, ?+) are not supported")
        raise self.refuse(f"{op} is not supported")  # pragma: no cover - every opcode the parser makes is above

    def bracket(self, ranges: _Ranges, *, negate: bool = False) -> str:
        ranges = _union(self.storable(ranges))
        if not ranges:
            # Nothing a stored text can hold: never matches (or, negated, matches any character).
            return self.any_char if negate else self.never
        if not negate and len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
            return self.char(ranges[0][0])
        body = "".join(self.char(lo) if lo == hi else f"{self.char(lo)}-{self.char(hi)}" for lo, hi in ranges)
        return f"[{'^' if negate else ''}{body}]"

    def chars(self, ranges: _Ranges, flags: int, *, negate: bool = False) -> str:
        if flags & re.IGNORECASE:
            ranges = _folded(ranges)
        if not negate and any(lo <= _SURROGATES[1] and hi >= _SURROGATES[0] for lo, hi in ranges) and _size(ranges) == 1:
            raise self.refuse(f"no stored text holds a lone surrogate (U+{ranges[0][0]:04X})")
        return self.bracket(ranges, negate=negate)

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
        return self.bracket(_union(letters, *fixed), negate=negate)

    def at(self, code: Any, flags: int) -> str:
        c = _sre_constants
        multiline = bool(flags & re.MULTILINE)
        if code == c.AT_BEGINNING:
            return self.anchors[("^", multiline)]
        if code == c.AT_BEGINNING_STRING:
            return self.anchors[("^", False)]
        if code == c.AT_END:
            return self.anchors[("$", multiline)]
        if code == c.AT_END_STRING:
            return self.anchors[("\\Z", False)]
        if code == c.AT_BOUNDARY:
            return self.boundaries[0]
        if code == c.AT_NON_BOUNDARY:
            return self.boundaries[1]
        raise self.refuse(f"{code} is not supported")  # pragma: no cover

    def repeat(self, low: int, high: Any, body: Iterable[tuple[Any, Any]], flags: int) -> str:
        items = list(body)
        inner = self.sequence(items, flags)
        if _zero_width(items):
            # Neither engine repeats an anchor; once means the same, or nothing at all.
            return inner if low else ""
        unbounded = high is _sre_constants.MAXREPEAT
        if low > MAX_REPEAT or (not unbounded and high > MAX_REPEAT):
            raise self.refuse(f"a repetition is at most {MAX_REPEAT} times ({{{low},{'' if unbounded else high}}})")
        if unbounded:
            quantifier = {0: "*", 1: "+"}.get(low, f"{{{low},}}")
        else:
            quantifier = "?" if (low, high) == (0, 1) else f"{{{low}}}" if low == high else f"{{{low},{high}}}"
        return f"(?:{inner}){quantifier}"


class _Re2Rewrite(_Rewrite):
    """RE2's syntax, matched against UTF-8 text (so no surrogates; NUL is a character)."""

    any_char = "(?s:.)"
    never = "[^\\x{0}-\\x{10FFFF}]"
    anchors = {
        ("^", False): "\\A", ("^", True): "(?m:^)",
        ("$", False): "(?:\\n?\\z)", ("$", True): "(?m:$)", ("\\Z", False): "\\z",
    }
    boundaries = ("\\b", "\\B")

    def char(self, code: int) -> str:
        if chr(code).isascii() and chr(code).isalnum():
            return chr(code)
        return f"\\x{{{code:X}}}"


class _PostgresRewrite(_Rewrite):
    """A PostgreSQL ARE (not newline-sensitive, so `.` and `[^a]` take newlines, `^` and `$` are
    the ends of the text)."""

    any_char = "."
    never = "[^\\u0001-\\U0010FFFF]"
    _newline = "\\u000A"
    anchors = {
        ("^", False): "^", ("^", True): f"(?:^|(?<={_newline}))",
        ("$", False): f"(?:{_newline}?$)", ("$", True): f"(?={_newline}|$)", ("\\Z", False): "$",
    }
    _word = "[0-9A-Z_a-z]"
    boundaries = (
        f"(?:(?<={_word})(?!{_word})|(?<!{_word})(?={_word}))",
        f"(?:(?<={_word})(?={_word})|(?<!{_word})(?!{_word}))",
    )

    def char(self, code: int) -> str:
        if chr(code).isascii() and chr(code).isalnum():
            return chr(code)
        return f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}"

    def storable(self, ranges: _Ranges) -> _Ranges:
        """No surrogates, and U+FFFD for NUL: PostgreSQL text holds no NUL, and the writer and
        the migration keep U+FFFD in its place."""
        kept = _without_surrogates(ranges)
        if kept and kept[0][0] == 0:
            kept = ((0xFFFD, 0xFFFD), *(((1, kept[0][1]),) if kept[0][1] >= 1 else ()), *kept[1:])
        return kept


@lru_cache(maxsize=512)
def _rewritten(kind: type[_Rewrite], pattern: str) -> str:
    return kind(pattern)()


_REWRITES: dict[str, Callable[[str], str]] = {
    "python": lambda pattern: pattern,  # as written: what `searches` takes
    "re2": lambda pattern: _rewritten(_Re2Rewrite, pattern),
    "postgresql": lambda pattern: _rewritten(_PostgresRewrite, pattern),
}
