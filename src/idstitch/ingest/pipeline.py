"""Group commit: one writer thread applies every write in order, many requests per transaction.

Request handlers parse and validate on the event loop, then hand the writer a function of the
store. The writer takes all the work that is waiting, runs each piece inside its own savepoint
(a failing request rolls back alone), commits once, and only then answers every request of the
group. This is how one SQLite file takes tens of thousands of events per second durably, and
why identity operations are applied in one order (Datasette's write thread, grown).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from idstitch.clock import Now, utc_now
from idstitch.commands import Command, ImportPerson
from idstitch.errors import IdstitchError
from idstitch.engine import Batch, CommandResult, PersonCache
from idstitch.ingest.messages import RejectedEvent
from idstitch.settings import ProjectSettings
from idstitch.store.privacy import SUPPRESSED, drop_suppressed
from idstitch.store.sqlite import SQLitePersons, insert_dead_letter, open_database

log = logging.getLogger(__name__)

T = TypeVar("T")

# Work pieces taken into one transaction at most; bounds the latency of the first one.
MAX_GROUP = 256
# The WAL is copied back into the database when the writer has been idle this long, or after
# this many commits in a row under load.
IDLE_CHECKPOINT_SECONDS = 0.5
BUSY_CHECKPOINT_COMMITS = 200


@dataclass(slots=True)
class _Work:
    fn: Callable[[WriteContext], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    keeps_cache: bool


@dataclass(slots=True)
class WriteContext:
    """What a write function gets: the connection (inside a savepoint) and the event sequence."""

    conn: sqlite3.Connection
    now: Now
    seq: int
    cache: PersonCache

    def take_seq(self) -> int:
        """The next event sequence number (arrival order, the tie-breaker of attribute times)."""
        self.seq += 1
        return self.seq

    def persons(self, project_id: int) -> SQLitePersons:
        return SQLitePersons(self.conn, project_id, self.now, self.take_seq)


class Writer:
    """The one writer of a store. Start it, `await write(fn)` from handlers, `close()` at exit."""

    def __init__(self, path: Path, now: Now = utc_now) -> None:
        self.path = path
        self.now = now
        self._queue: queue.Queue[_Work | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="idstitch-writer", daemon=True)
        self._conn = open_database(path)
        # Checkpoints run here, between groups, instead of inside whichever commit crosses the
        # WAL size threshold (that made one request in every few pay for copying the WAL back).
        self._conn.execute("PRAGMA wal_autocheckpoint = 0")
        self._seq = 0
        self._cache = PersonCache()
        self._data_version: int | None = None
        self._commits_since_checkpoint = 0
        self._thread.start()

    async def write(self, fn: Callable[[WriteContext], T], *, keeps_cache: bool = False) -> T:
        """Run `fn` in the writer's next transaction and return its result once committed.

        `keeps_cache`: `fn` changes persons only through a `Batch` on `context.cache`. Any other
        write may change what the cache holds, so the cache is dropped after it.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Work(fn, loop, future, keeps_cache))
        return await future

    def write_now(self, fn: Callable[[WriteContext], T]) -> T:
        """Run a write from synchronous code (CLI, start-up) through the same writer."""
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(self.write(fn))
        finally:
            loop.close()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._conn.close()

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=IDLE_CHECKPOINT_SECONDS)
            except queue.Empty:
                self._checkpoint()
                continue
            if first is None:
                return
            group = [first]
            stop = False
            while len(group) < MAX_GROUP:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                group.append(item)
            self._commit(group)
            if self._commits_since_checkpoint >= BUSY_CHECKPOINT_COMMITS:
                self._checkpoint()
            if stop:
                return

    def _checkpoint(self) -> None:
        if self._commits_since_checkpoint:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._commits_since_checkpoint = 0

    def _commit(self, group: list[_Work]) -> None:
        conn = self._conn
        cache = self._cache
        outcomes: list[tuple[_Work, bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            # Read under the write lock, so another process writing the same file (the CLI) is safe.
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            if version != self._data_version:
                cache.clear()  # another connection committed since our last transaction
            self._seq = SQLitePersons.max_seq(conn)
            for work in group:
                context = WriteContext(conn, self.now, self._seq, cache)
                conn.execute("SAVEPOINT work")
                try:
                    result = work.fn(context)
                except Exception as error:  # noqa: BLE001 - handed to the waiting request
                    conn.execute("ROLLBACK TO work")
                    conn.execute("RELEASE work")
                    cache.clear()
                    outcomes.append((work, False, error))
                    continue
                conn.execute("RELEASE work")
                if not work.keeps_cache:
                    cache.clear()
                self._seq = context.seq
                outcomes.append((work, True, result))
            conn.execute("COMMIT")
            self._data_version = conn.execute("PRAGMA data_version").fetchone()[0]
            self._commits_since_checkpoint += 1
            cache.trim()
        except Exception as error:  # the transaction as a whole failed: nobody's work is stored
            log.exception("write transaction failed")
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            cache.clear()
            outcomes = [(work, False, error) for work in group]
        for work, ok, value in outcomes:
            work.loop.call_soon_threadsafe(_settle, work.future, ok, value)


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def ingest_function(
    project_id: int,
    settings: ProjectSettings,
    commands: list[Command],
    rejected: list[RejectedEvent],
) -> Callable[[WriteContext], list[CommandResult]]:
    """The write function for one ingest request: apply its commands, dead-letter its rejects."""

    def apply(context: WriteContext) -> list[CommandResult]:
        store = context.persons(project_id)
        # Ids of persons erased with suppression: their events are dropped and only counted.
        dropped, dropped_rejects = drop_suppressed(
            context.conn, project_id, commands, [item.payload for item in rejected], context.now()
        )
        batch = Batch(store, project_id, settings, context.now, context.cache)
        batch.prefetch(commands)
        results = [
            CommandResult(rejection=SUPPRESSED) if i in dropped else batch.apply(command)
            for i, command in enumerate(commands)
        ]
        batch.flush()
        for i, item in enumerate(rejected):
            if i not in dropped_rejects:
                insert_dead_letter(context.conn, project_id, item.rejection.reason, item.payload, context.now())
        return results

    return apply


def apply_imports(
    context: WriteContext, project_id: int, settings: ProjectSettings, commands: list[ImportPerson | str]
) -> dict[str, Any]:
    """Import each person in a savepoint of its own, so one conflict refuses only that person.

    A `str` in `commands` is an item the caller already found invalid; it is reported as is.
    """
    results: list[dict[str, Any]] = []
    for index, command in enumerate(commands):
        if isinstance(command, str):
            results.append({"index": index, "error": command})
            continue
        if drop_suppressed(context.conn, project_id, [command], [], context.now())[0]:
            # An old backup must not bring back a person erased with suppression.
            results.append({"index": index, "error": SUPPRESSED.reason})
            continue
        context.conn.execute("SAVEPOINT person")
        try:
            batch = Batch(context.persons(project_id), project_id, settings, context.now)
            outcome = batch.apply(command)
            batch.flush()
        except IdstitchError as error:
            context.conn.execute("ROLLBACK TO person")
            results.append({"index": index, "error": str(error)})
        else:
            results.append({"index": index, "person_id": outcome.person_id})
        context.conn.execute("RELEASE person")
    return {"imported": sum(1 for r in results if r.get("person_id")), "results": results}
