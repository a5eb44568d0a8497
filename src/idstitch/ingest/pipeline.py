"""Group commit: one writer thread per server applies its writes, many requests per transaction.

Request handlers parse and validate on the event loop, then hand the writer a function of the
store (and, for ingest, the claims of what it may change). The writer takes all the work that
is waiting, runs each piece inside its own savepoint (a failing request rolls back alone),
commits once, and only then answers every request of the group. This is how one SQLite file
takes tens of thousands of events per second durably (Datasette's write thread, grown).

How a transaction starts, and what it locks, is the store's (store/transactions.py): on SQLite
this writer is the only one; on PostgreSQL the store locks the claims of the whole group in one
order, so that several servers' writers equal one (docs/concurrency.md). A group that fails for a
passing reason (a race lost to another server, a database restart) is run again.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from idstitch.clock import Now
from idstitch.commands import Command, ImportPerson
from idstitch.engine import Batch, CommandResult, PersonCache, PersonStore
from idstitch.errors import IdstitchError, StoreUnavailable
from idstitch.ingest.messages import RejectedEvent
from idstitch.settings import ProjectSettings
from idstitch.store.connection import Connection
from idstitch.store.persons import insert_dead_letter
from idstitch.store.privacy import SUPPRESSED, drop_suppressed
from idstitch.store.transactions import Claims, WriteSession

log = logging.getLogger(__name__)

T = TypeVar("T")

# Work pieces taken into one transaction at most; bounds the latency of the first one.
MAX_GROUP = 256
# Housekeeping (SQLite's checkpoint) runs when the writer has been idle this long.
IDLE_SECONDS = 0.5
# How often a group whose transaction failed for a passing reason (a lock lost to another
# server, a database restart) is run again before its requests get the error.
MAX_ATTEMPTS = 12


@dataclass(slots=True)
class _Work:
    fn: Callable[[WriteContext], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    keeps_cache: bool
    claims: Claims | None


@dataclass(slots=True)
class WriteContext:
    """What a write function gets: the connection (inside a savepoint) and the store's persons."""

    session: WriteSession
    now: Now
    cache: PersonCache

    @property
    def conn(self) -> Connection:
        return self.session.conn

    def take_seq(self) -> int:
        return self.session.take_seq()

    def persons(self, project_id: int) -> PersonStore:
        return self.session.persons(project_id)


class Writer:
    """The writer of a store in this process. Start it, `await write(fn)` from handlers,
    `close()` at exit. `session` is the store's side (store/transactions.py).

    A failing write, transaction or housekeeping step never ends the writer's thread: its
    requests get the error and the next group runs. Should the thread end all the same, every
    waiting and later write fails at once with `StoreUnavailable`, and `stopped` says why
    (the server's health check reports it).
    """

    def __init__(self, session: WriteSession, now: Now) -> None:
        self.session = session
        self.now = now
        self._queue: queue.Queue[_Work | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="idstitch-writer", daemon=True)
        self._cache = PersonCache()
        self._running: list[_Work] = []
        self._housekeeping_failed = False
        # Why the thread ended, when it ended other than by close().
        self.stopped: StoreUnavailable | None = None
        # The store fault (full disk, write error) that failed the last transaction; None once one commits.
        self.fault: StoreUnavailable | None = None
        self._thread.start()

    async def write(
        self, fn: Callable[[WriteContext], T], *, keeps_cache: bool = False, claims: Claims | None = None
    ) -> T:
        """Run `fn` in the writer's next transaction and return its result once committed.

        `keeps_cache`: `fn` changes persons only through a `Batch` on `context.cache`. Any other
        write may change what the cache holds, so the cache is dropped after it.
        `claims`: what `fn` may change (store/transactions.py); without them, on a store with
        several writers, `fn` runs alone.
        """
        if self.stopped is not None:
            raise self.stopped
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Work(fn, loop, future, keeps_cache, claims))
        if self.stopped is not None:  # it stopped while this was queued: nobody else will answer it
            self._fail_waiting(self.stopped)
        return await future

    def write_now(self, fn: Callable[[WriteContext], T], *, claims: Claims | None = None) -> T:
        """Run a write from synchronous code (CLI, start-up) through the same writer."""
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(self.write(fn, claims=claims))
        finally:
            loop.close()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self.session.close()

    def _run(self) -> None:
        try:
            self._serve()
        except BaseException as error:
            self.stopped = StoreUnavailable(f"the writer stopped ({type(error).__name__}: {error}); restart the server")
            log.critical("the writer stopped: every write fails until the server is restarted", exc_info=True)
            self._fail_waiting(self.stopped)

    def _serve(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                self._between_groups(idle=True)
                continue
            if first is None:
                return
            group = self._running = [first]
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
            for transaction in self._transactions(group):
                try:
                    self._commit(transaction)
                except Exception as error:  # noqa: BLE001 - a bug of the writer itself: its requests get it
                    log.exception("write group failed")
                    for work in transaction:
                        work.loop.call_soon_threadsafe(_settle, work.future, False, error)
            self._running = []
            self._between_groups(idle=False)
            if stop:
                return

    def _fail_waiting(self, error: BaseException) -> None:
        """Answer every write this thread holds or that still waits in the queue with `error`."""
        waiting, self._running = self._running, []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                waiting.append(item)
        for work in waiting:
            work.loop.call_soon_threadsafe(_settle, work.future, False, error)

    def _transactions(self, group: list[_Work]) -> list[list[_Work]]:
        """One transaction for the whole group, unless the store has several writers: then the
        writes with claims share one and each write without claims runs alone."""
        if self.session.serialises_everything:
            return [group]
        claimed = [work for work in group if work.claims is not None]
        alone = [[work] for work in group if work.claims is None]
        return ([claimed] if claimed else []) + alone

    def _between_groups(self, *, idle: bool) -> None:
        try:
            self.session.between_groups(idle=idle)
        except Exception as error:  # housekeeping only: the next group tries again
            if not self._housekeeping_failed:  # once, not every idle half second of a full disk
                log.error("store housekeeping failed (tried again between writes): %s", error)
            self._housekeeping_failed = True
        else:
            if self._housekeeping_failed:
                log.warning("store housekeeping works again")
            self._housekeeping_failed = False

    def _commit(self, group: list[_Work]) -> None:
        attempt = 0
        while True:
            attempt += 1
            outcomes, error = self._attempt(group)
            if error is None:
                self.fault = None
                break
            wait = self.session.retry_after(error, attempt)
            if wait is None or attempt >= MAX_ATTEMPTS:
                fault = self.session.store_fault(error)
                if fault is not None:
                    error = self.fault = fault
                elif wait is not None:  # a passing fault that did not pass: the client may retry
                    error = StoreUnavailable(f"the store did not take the write after {attempt} attempts: {error}")
                log.error("write transaction failed: %s", error)
                outcomes = [(work, False, error) for work in group]
                break
            time.sleep(wait)
        for work, ok, value in outcomes:
            work.loop.call_soon_threadsafe(_settle, work.future, ok, value)

    def _attempt(self, group: list[_Work]) -> tuple[list[tuple[_Work, bool, Any]], BaseException | None]:
        """Run the group in one transaction. Returns each work's outcome, or the error that
        failed the transaction as a whole (nobody's work is then stored)."""
        session = self.session
        cache = self._cache
        outcomes: list[tuple[_Work, bool, Any]] = []
        try:
            if not session.begin([work.claims for work in group]):
                cache.clear()  # another writer committed since our last transaction
            for work in group:
                context = WriteContext(session, self.now, cache)
                session.savepoint()
                try:
                    result = work.fn(context)
                except Exception as error:  # noqa: BLE001 - handed to the waiting request
                    if session.retry_after(error, 1) is not None or session.store_fault(error) is not None:
                        raise  # a race with another writer, or a full disk: not this request's fault
                    session.rollback_to_savepoint()
                    cache.clear()
                    outcomes.append((work, False, error))
                    continue
                session.release_savepoint()
                if not work.keeps_cache:
                    cache.clear()
                outcomes.append((work, True, result))
            session.commit()
            cache.trim()
        except Exception as error:  # noqa: BLE001 - the transaction as a whole failed
            try:
                session.rollback()
            except Exception:  # the connection itself is gone; the session reconnects on begin
                log.debug("rollback failed", exc_info=True)
            cache.clear()
            return [], error
        return outcomes, None


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
            warnings = [{"type": w.type.value, "details": w.details} for w in outcome.warnings]
            results.append({"index": index, "person_id": outcome.person_id, "warnings": warnings})
        context.conn.execute("RELEASE person")
    return {"imported": sum(1 for r in results if r.get("person_id")), "results": results}
