"""How the writer (ingest/pipeline.py) runs its transactions on whichever store it has.

A write declares, before its transaction starts, what it may change (`Claims`): the project,
the distinct ids its commands name, which of them an identity operation may create, attach or
move, and how many events it may store. A store with several writers (PostgreSQL: several
servers) takes its locks from the claims of a whole group at once, in one global order, before
any write runs; a write without claims runs alone, under an exclusive lock. SQLite, with one
writer, needs none of it. docs/concurrency.md says why this is a serial order and cannot
deadlock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from idstitch.commands import Alias, Command, Identify, ImportPerson, Merge
from idstitch.engine import PersonStore
from idstitch.errors import StoreUnavailable
from idstitch.store.connection import Connection


@dataclass(frozen=True, slots=True)
class Claims:
    """What one write may change, declared before its transaction starts."""

    project_id: int
    # Every distinct id the write's commands name (their events' ids included).
    distinct_ids: frozenset[str]
    # The ids an identity operation (identify, alias, merge, import) may create, attach or move.
    identity_ids: frozenset[str]
    # The uuids of the events it may store (sequence numbers are drawn for as many).
    event_uuids: frozenset[str]
    # The sessions its events belong to (each session's summary row is updated).
    session_ids: frozenset[str] = frozenset()

    @property
    def events(self) -> int:
        return len(self.event_uuids)


def claims_for(project_id: int, commands: Iterable[Command]) -> Claims:
    """The claims of an ingest write: the ids, event uuids and sessions of its commands;
    identity ids from identify, alias, merge and import commands (a plain event's id may still
    be created, which the store finds out when it reads the mapping)."""
    distinct_ids: set[str] = set()
    identity_ids: set[str] = set()
    uuids: set[str] = set()
    sessions: set[str] = set()
    for command in commands:
        event = getattr(command, "event", None)
        if event is not None:
            distinct_ids.add(event.distinct_id)
            uuids.add(event.uuid)
            if event.session_id is not None:
                sessions.add(event.session_id)
        if isinstance(command, Identify):
            named = {command.user_id, command.anonymous_id} - {None}
            identity_ids.update(named)  # type: ignore[arg-type]
        elif isinstance(command, (Alias, Merge)):
            identity_ids.update((command.target, command.source))
        elif isinstance(command, ImportPerson):
            identity_ids.update(command.distinct_ids)
    distinct_ids |= identity_ids
    return Claims(project_id, frozenset(distinct_ids), frozenset(identity_ids), frozenset(uuids), frozenset(sessions))


class WriteSession(Protocol):
    """One store's side of the writer: its connection and how its transactions start and end."""

    @property
    def conn(self) -> Connection: ...

    @property
    def durability(self) -> Mapping[str, str]:
        """The writer connection's durability settings, as the database reports them."""
        ...

    @property
    def serialises_everything(self) -> bool:
        """True when the store has one writer, so that every write of a group can share a transaction."""
        ...

    def begin(self, claims: Sequence[Claims | None]) -> bool:
        """Start a transaction for writes with these claims (None: a write that runs alone) and
        take the locks they need. Returns whether the writer's person cache is still true."""
        ...

    def take_seq(self) -> int:
        """The next event sequence number (arrival order, the tie-breaker of attribute times)."""
        ...

    def persons(self, project_id: int) -> PersonStore: ...

    def savepoint(self) -> None:
        """Each write of a group runs in a savepoint, so that a failing one rolls back alone."""
        ...

    def release_savepoint(self) -> None: ...

    def rollback_to_savepoint(self) -> None:
        """Undo the current write (and end its savepoint)."""
        ...

    def commit(self) -> None: ...

    def rollback(self) -> None:
        """End the transaction without its changes; safe to call when none is open."""
        ...

    def retry_after(self, error: BaseException, attempt: int) -> float | None:
        """Seconds to wait before running the failed group again, or None when `error` is final."""
        ...

    def store_fault(self, error: BaseException) -> StoreUnavailable | None:
        """`error` as a fault of the store as a whole (its disk full, a write error, read-only),
        or None when it is one write's own. A fault fails the whole transaction."""
        ...

    def between_groups(self, *, idle: bool) -> None:
        """Housekeeping when no transaction is open (SQLite checkpoints its WAL here)."""
        ...

    def close(self) -> None: ...
