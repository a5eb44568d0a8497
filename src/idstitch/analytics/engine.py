"""What an analytics engine is to the rest of idstitch: a columnar copy of the store's events and
of the person side queries join them with, fed in batches, read through a `Connection` whose
dialect compiles the same filters and counts as the store's.

    AnalyticsEngine   the interface (duckdb_engine.DuckDBEngine, clickhouse_engine.ClickHouseEngine)
    FeedBatch         one step of the feed, applied in one transaction with the position it reaches

The copy holds, with the store's column names so the query layer's SQL reads both:

    events             seq, project_id, distinct_id, event, timestamp, session_id, properties
    distinct_ids       project_id, distinct_id, person_id      the mapping now (never baked into events)
    persons            id, project_id, created_at, is_identified
    person_attributes  person_id, key, value, kind

but for the distinct id of events and of the mapping, which a copy may hold as a number of its
own (the dialect's `distinct_id_key` and `same_distinct_id` say how to group and join by it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from idstitch.store.connection import Connection
from idstitch.store.dialects import Dialect
from idstitch.store.feed import FeedPosition, PersonRows


class CopyDialect(Dialect):
    """What the copies' SQL dialects share: plain joins and EXISTS (no planner to steer), RE2
    regexes, GROUPING SETS; and none of the store's write pieces, which fail loudly if used:
    only the feeder writes a copy, through its engine."""

    insert_ignore_prefix = insert_ignore_suffix = begin_exclusive = next_person_change = "NOT ON THE ANALYTICS COPY"
    greatest = "greatest"
    least = "least"
    is_distinct_from = "IS DISTINCT FROM"
    regex_syntax = "re2"
    grouping_sets = True

    def join_each(self, table: str, alias: str, on: str, *, outer: bool = False) -> str:
        return f"{'LEFT ' if outer else ''}JOIN {table} {alias} ON {on}"

    def exists_per_row(self, select: str) -> str:
        return f"EXISTS ({select})"

    def indexed_by(self, index: str) -> str:
        return ""


class Rows:
    """A whole result, read at once, as the query layer reads a cursor."""

    def __init__(self, rows: Sequence[Any]) -> None:
        self._rows = list(rows)

    @property
    def rowcount(self) -> int:
        return -1

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Any]:
        return self._rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)


def refuse_writes() -> Rows:
    """What a copy's read connection answers `executemany`: only its feeder writes the copy."""
    raise TypeError("the analytics copy is written by its feeder only")


@dataclass(slots=True)
class FeedBatch:
    """One step: events to append, events to delete (and write again, if still stored), persons
    to replace by their rows now, and the position the copy reaches with them."""

    position: FeedPosition
    events: list[tuple[Any, ...]] = field(default_factory=list)
    removed_events: list[int] = field(default_factory=list)
    changed_persons: list[str] = field(default_factory=list)
    persons: PersonRows = field(default_factory=lambda: PersonRows([], [], []))
    # Retention: per project, events before this time (a timestamp text) leave the copy.
    expired: dict[int, str] = field(default_factory=dict)
    # After an erasure: per project, every person the store still has; the copy drops the others.
    persons_kept: dict[int, list[str]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.events or self.removed_events or self.changed_persons or self.expired or self.persons_kept)


@dataclass(frozen=True, slots=True)
class CopyState:
    """Which store the copy was made from, and how far it has read."""

    store_id: str | None
    position: FeedPosition


class AnalyticsEngine(Protocol):
    @property
    def name(self) -> str:
        """`duckdb` or `clickhouse`: what `/api/status` and the answers say they ran on."""
        ...

    @property
    def description(self) -> str:
        """Where the copy is: its file, or the server without its password."""
        ...

    def prepare(self) -> None:
        """Create the tables if they are not there."""
        ...

    def state(self) -> CopyState: ...

    def start_over(self, store_id: str) -> None:
        """Empty the copy and make it the copy of `store_id`, at position 0."""
        ...

    def apply(self, batch: FeedBatch) -> None:
        """Apply one step, and its position, in one transaction: all of it or nothing."""
        ...

    def forget_deleted(self) -> None:
        """After an erasure: drop the copy's own traces of deleted rows (free pages, old parts),
        so that the erased bytes leave its files too."""
        ...

    def reader(self) -> Connection:
        """This thread's read connection."""
        ...

    def size_bytes(self) -> int | None: ...

    def close(self) -> None: ...
