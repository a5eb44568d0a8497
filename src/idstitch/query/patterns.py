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
"""

from __future__ import annotations

import re
import time
from functools import lru_cache

try:  # the parser behind `re`; private, so the structural checks are skipped if it moves
    from re import _constants as _sre_constants  # type: ignore[attr-defined]
    from re import _parser as _sre_parser  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    _sre_parser = _sre_constants = None

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

    def install(self, conn: object) -> None:
        """Register this guard's function on a connection (replacing the previous query's)."""
        conn.create_function("idstitch_regex", 2, self.match, deterministic=True)  # type: ignore[attr-defined]
