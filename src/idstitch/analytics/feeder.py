"""The feeder: keeps the analytics copy up with the store, step by step (store/feed.py says what
a step reads and why it never skips an uncommitted change).

A step reads the store's horizon, then up to `STEP_EVENTS` events after the copy's position,
the persons changed since (their rows now), and the events an erasure touched, and applies all
of it with the new position in one transaction of the engine: a step is applied whole or not
at all, so a restart resumes where the copy's position says, storing nothing twice.

The first step of an empty copy (or of a copy of another store) copies every person first:
the copy's person position starts at the journal's horizon read before that walk, so a change
made during it is applied again after.

`Feeder.run` loops in a thread of its own; `catch_up` lets a query wait for the copy to reach the
store (a merge made a moment ago shows in the next answer), and tells how far behind it is.

Servers that share a store (PostgreSQL) share its ClickHouse copy too, and one feeds it at a time:
a step ships only under the feed's lease (store/feed.py `take_lease`, held by the feeder's own
store session until it ends). The others read the copy's position for their lag and wait; when
the holder stops, crashes or loses its connection, the next to ask takes the lease over, and
ships `lease_grace` seconds later, once a step the old holder was still applying has ended.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from idstitch.analytics.engine import AnalyticsEngine, FeedBatch
from idstitch.clock import Now, format_time
from idstitch.store import feed
from idstitch.store.connection import Connection
from idstitch.store.feed import FeedPosition

log = logging.getLogger("idstitch.analytics")

STEP_EVENTS = 50_000
STEP_PERSONS = 20_000
IDLE_SECONDS = 0.5
# A query waits for the copy to catch up only when this little is left; farther behind, it is
# answered from the store and says so.
CATCH_UP_EVENTS = 200_000
CATCH_UP_SECONDS = 2.0
EXPIRY_SECONDS = 60.0
# Longer than a step takes to apply (seconds): a holder that lost its session mid-step finishes it
# unaware, so the next holder waits this long before its first step.
LEASE_GRACE_SECONDS = 5.0
# How often a query waiting for another server's feeder reads the copy's position.
WAIT_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class Lag:
    """How far the copy is behind the store, as of the last look."""

    position: FeedPosition
    horizon: FeedPosition
    checked_at: float  # time.monotonic()
    error: str | None = None
    feeding: bool = True  # False: another server holds the feed's lease (this one only reads)

    @property
    def behind(self) -> FeedPosition:
        return self.position.behind(self.horizon)

    @property
    def caught_up(self) -> bool:
        return self.error is None and self.behind.caught_up

    def to_json(self) -> dict[str, Any]:
        behind = self.behind
        return {
            "caught_up": self.caught_up,
            "events_behind": behind.seq,
            "person_changes_behind": behind.person_change,
            "event_changes_behind": behind.event_change,
            "seq": self.position.seq,
            "store_seq": self.horizon.seq,
            "error": self.error,
            "feeding": self.feeding,
        }


@dataclass(slots=True)
class _Walk:
    """The first copy's walk of every person: how far it is, and the store's position it began at."""

    horizon: FeedPosition
    after: str = ""
    copied: int = 0


class Feeder:
    """Feeds one engine from one store; `step` is safe from any thread (one runs at a time)."""

    def __init__(
        self,
        connect: Callable[[], Connection],
        engine: AnalyticsEngine,
        *,
        now: Now,
        retention_days: Callable[[], dict[int, int]] = dict,
        lease_grace: float = LEASE_GRACE_SECONDS,
    ) -> None:
        self._connect = connect
        self.engine = engine
        self.now = now
        self._retention_days = retention_days
        self._conn: Connection | None = None
        self._step_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._expired_at = -EXPIRY_SECONDS
        self._lease_grace = lease_grace
        self._leased_at: float | None = None  # time.monotonic() when this feeder took the lease
        self._walk: _Walk | None = None  # the first copy's walk of every person, while it runs
        state = engine.state()
        # The journal position up to which erasures have left the copy's files.
        self.erasures_forgotten = state.position.event_change
        self.lag = Lag(state.position, state.position, time.monotonic(), "not fed yet")

    # -- one step ------------------------------------------------------------------------------

    def _store(self) -> Connection:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def step(self) -> int:
        """Apply one step; the number of events, persons and event changes it applied."""
        with self._step_lock:
            try:
                applied = self._step()
            except Exception as error:
                self.lag = Lag(self.lag.position, self.lag.horizon, time.monotonic(), f"{type(error).__name__}: {error}")
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                raise
            return applied

    def _step(self) -> int:
        conn = self._store()
        if not self._may_ship(conn):
            # Another server feeds the copy (or one may still be finishing a step): read how far.
            self._walk = None  # and makes the first copy, if one is being made
            state = self.engine.state()
            self.lag = Lag(state.position, feed.horizon(conn), time.monotonic(), feeding=False)
            return 0
        store_id = feed.store_identity(conn)
        state = self.engine.state()
        horizon = feed.horizon(conn)
        # A copy of another store, or one whose first walk of every person never ended (its
        # position stays at nothing until the walk's end): made again from nothing.
        restart = state.position == FeedPosition() and horizon != FeedPosition() and self._walk is None
        if state.store_id != store_id or restart:
            self.engine.start_over(store_id)
            self._walk = _Walk(horizon)
        if self._walk is not None:
            walked = self._walk_persons(conn, self._walk)
            if walked:
                return walked
            state = self.engine.state()  # every person copied: on to the events, in this step
        at = state.position
        events = feed.events_after(conn, at.seq, horizon.seq, STEP_EVENTS)
        # With a full step of events, the position goes only as far as the last one read.
        seq = events[-1][0] if len(events) == STEP_EVENTS else max(at.seq, horizon.seq)
        changes = feed.person_changes_after(conn, at.person_change, horizon.person_change, STEP_PERSONS)
        person_change = changes[-1][0] if len(changes) == STEP_PERSONS else max(at.person_change, horizon.person_change)
        touched = feed.event_changes_after(conn, at.event_change, horizon.event_change, STEP_PERSONS)
        event_change = touched[-1][0] if len(touched) == STEP_PERSONS else max(at.event_change, horizon.event_change)
        batch = FeedBatch(FeedPosition(seq, person_change, event_change), events=events)
        if touched:
            # Deleted or rewritten: out of the copy, and back as stored now if the copy had reached it.
            removed = sorted({s for _, _, s in touched if s is not None and s <= seq})
            batch.removed_events = removed
            fresh = {row[0]: row for row in events}
            fresh.update((row[0], row) for row in feed.events_by_seq(conn, removed))
            batch.events = sorted(fresh.values())
        if changes:
            batch.changed_persons = sorted({p for _, _, p in changes})
            batch.persons = feed.person_rows(conn, batch.changed_persons)
        erased = sorted({project for _, project, s in touched if s is None})
        batch.persons_kept = {project: feed.person_ids_of(conn, project) for project in erased}
        batch.expired = self._expired()
        if batch.empty and batch.position == at:
            self.lag = Lag(at, horizon, time.monotonic())
            return 0
        if not self._may_ship(conn):  # the session (and the lease with it) was lost while reading
            self.lag = Lag(at, horizon, time.monotonic(), feeding=False)
            return 0
        self.engine.apply(batch)
        if erased:
            self.engine.forget_deleted()
            self.erasures_forgotten = batch.position.event_change
        self.lag = Lag(batch.position, horizon, time.monotonic())
        return len(batch.events) + len(batch.changed_persons) + len(batch.removed_events)

    def _may_ship(self, conn: Connection) -> bool:
        lease = feed.take_lease(conn)
        if lease is feed.Lease.ELSEWHERE:
            self._leased_at = None
            return False
        if lease is feed.Lease.TAKEN or self._leased_at is None:
            self._leased_at = time.monotonic()
            if lease is not feed.Lease.ALONE:
                log.info("this server feeds the analytics copy now (in %g s)", self._lease_grace)
        return lease is feed.Lease.ALONE or time.monotonic() - self._leased_at >= self._lease_grace

    def _walk_persons(self, conn: Connection, walk: _Walk) -> int:
        """One page of the first copy's walk of every person, a step of its own, so that reads
        never wait for the whole walk; at its end (0 persons), the position the walk began at.
        The walk's end and the first events are one step: a copy whose position is still
        nothing after it would be walked again."""
        ids = feed.all_person_ids(conn, walk.after, STEP_PERSONS)
        if ids:
            self.engine.apply(FeedBatch(FeedPosition(), changed_persons=ids, persons=feed.person_rows(conn, ids)))
            walk.after, walk.copied = ids[-1], walk.copied + len(ids)
            self.lag = Lag(FeedPosition(), walk.horizon, time.monotonic(), f"making the first copy: {walk.copied:,} persons so far")
            return len(ids)
        # Events are read as stored now: the erasures and rewrites before the walk are in them.
        position = FeedPosition(0, walk.horizon.person_change, walk.horizon.event_change)
        self.engine.apply(FeedBatch(position))
        self.erasures_forgotten = position.event_change
        self._walk = None
        return 0

    def _expired(self) -> dict[int, str]:
        """Retention, at most once a minute: per project, the time before which events go."""
        if time.monotonic() - self._expired_at < EXPIRY_SECONDS:
            return {}
        self._expired_at = time.monotonic()
        now: datetime = self.now()
        return {project: format_time(now - timedelta(days=days)) for project, days in self._retention_days().items()}

    # -- for queries ---------------------------------------------------------------------------

    def catch_up(self, *, most_events: int | None = None, seconds: float | None = None) -> Lag:
        """Step until the copy reaches the store's horizon of now, unless it is more than
        `most_events` behind or it takes longer than `seconds` (by default CATCH_UP_EVENTS and
        CATCH_UP_SECONDS); the lag it ends at."""
        most_events = CATCH_UP_EVENTS if most_events is None else most_events
        deadline = time.monotonic() + (CATCH_UP_SECONDS if seconds is None else seconds)
        with self._step_lock:
            horizon = feed.horizon(self._store())
        if horizon.seq - self.lag.position.seq > most_events:
            self.lag = Lag(self.lag.position, horizon, time.monotonic(), self.lag.error)
            return self.lag
        while True:
            try:
                self.step()
            except Exception:
                log.exception("the analytics copy could not be fed")
                return self.lag
            if self.lag.position.reached(horizon) or time.monotonic() > deadline:
                return self.lag
            if not self.lag.feeding:
                time.sleep(WAIT_SECONDS)

    def status(self) -> dict[str, Any]:
        """The copy as `/api/status` and the settings page show it (its size read from disk)."""
        return {"engine": self.engine.name, "location": self.engine.description,
                "bytes": self.engine.size_bytes(), "lag": self.lag.to_json()}

    def forget_erased(self, wait: float) -> str | None:
        """After an erasure in the store: catch up so that it leaves the copy and its files,
        waiting up to `wait` seconds. None when done, else what still holds the data."""
        with self._step_lock:
            wanted = feed.horizon(self._store()).event_change
        self.catch_up(most_events=2**62, seconds=wait)
        if self.erasures_forgotten >= wanted:
            return None
        reason = f": {self.lag.error}" if self.lag.error else ""
        return f"the analytics copy ({self.engine.description}) has not yet dropped the erased rows{reason}"

    # -- in the background ---------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="idstitch-analytics-feeder", daemon=True)
        self._thread.start()

    def run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                applied = self.step()
                failures = 0
            except Exception:
                failures += 1
                if failures == 1 or failures % 60 == 0:
                    log.exception("the analytics copy could not be fed (attempt %d); answers come from the store", failures)
                self._stop.wait(min(30.0, IDLE_SECONDS * 2**min(failures, 6)))
                continue
            if not applied:
                self._stop.wait(IDLE_SECONDS)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._step_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
