"""Regular expressions in filters: the time budget of one query's matching.

The language (what a pattern may be and what it means) is idstitch/regexes.py, the same for
filters and for a project's illegal-id patterns. On SQLite the matching runs here, on RE2 (linear
in the value); a value longer than `MAX_SUBJECT_LENGTH` characters never matches, and the calls of
one query share `budget_seconds`: past it the query stops with an error that names the pattern.
On PostgreSQL the database's own `~` runs the rewritten pattern, and the same budget bounds each
statement of the query (`Dialect.time_limit`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from idstitch.regexes import searches

if TYPE_CHECKING:
    from idstitch.store.connection import Connection

MAX_SUBJECT_LENGTH = 2000
DEFAULT_BUDGET_SECONDS = 2.0


class PatternTooSlow(Exception):
    """A query spent its whole regex time budget."""


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
        found = searches(pattern, value)
        self.spent += time.perf_counter() - start
        if self.spent > self.budget:
            self.exhausted_by = pattern
            raise PatternTooSlow(pattern)
        return int(found)

    def install(self, conn: Connection) -> None:
        """Register this guard's function on a connection that needs one (replacing the previous
        query's); PostgreSQL runs its own `~` instead."""
        conn.dialect.register_regex(conn, self.match)
