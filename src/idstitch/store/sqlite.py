"""The embedded store: one SQLite file in WAL mode, one writer connection, read-only readers.

`open_database` applies the migrations; `SQLitePersons` is the engine's `PersonStore` over one
open transaction of the writer connection; `SQLiteWriteSession` is how the writer
(ingest/pipeline.py) starts, commits and checkpoints its transactions on this file.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from idstitch.clock import Now
from idstitch.errors import StoreFull, StoreUnavailable
from idstitch.store.dialects import SQLITE
from idstitch.store.persons import EVENT_COLUMNS, SQLPersons
from idstitch.store.schema import MIGRATIONS
from idstitch.store.transactions import Claims

log = logging.getLogger(__name__)

DATABASE_FILE = "idstitch.db"
# After a checkpoint has copied the WAL back, SQLite truncates the WAL file to this size, so one
# burst of writes does not keep its disk space for good.
JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024

class SQLiteConnection(sqlite3.Connection):
    """`sqlite3.Connection` with the store's `dialect` (store/connection.py); nothing else added."""

    dialect = SQLITE


def open_database(path: Path | str, *, read_only: bool = False) -> SQLiteConnection:
    """Open (and for the writer, create and migrate) the database at `path`; a full disk or a
    write error is `StoreFull` or `StoreUnavailable` (opening needs the `-shm` file)."""
    try:
        return _open(path, read_only)
    except sqlite3.Error as error:
        fault = store_fault(error, path)
        if fault is None:
            raise
        raise fault from error


def _open(path: Path | str, read_only: bool) -> SQLiteConnection:
    conn: SQLiteConnection
    if read_only:
        conn = sqlite3.connect(  # type: ignore[assignment]
            f"file:{path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None, factory=SQLiteConnection
        )
        conn.execute("PRAGMA query_only = ON")
    else:
        conn = sqlite3.connect(  # type: ignore[assignment]
            path, check_same_thread=False, isolation_level=None, factory=SQLiteConnection
        )
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit is on disk before the request that caused it is answered (§8 of the rules).
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT_BYTES}")
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA cache_size = -65536")
    conn.row_factory = sqlite3.Row
    if not read_only:
        migrate(conn)
    return conn


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply the migrations not applied yet, each in its own transaction; returns their names."""
    conn.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {row[0] for row in conn.execute("SELECT name FROM migrations")}
    applied = []
    for name, sql in MIGRATIONS:
        if name in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(sql):
                conn.execute(statement)
            conn.execute("INSERT INTO migrations VALUES (?, datetime('now'))", (name,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied


def _statements(sql: str) -> Iterator[str]:
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer.strip()
            buffer = ""
    if buffer.strip():
        yield buffer.strip()


def max_seq(conn: sqlite3.Connection) -> int:
    """The last seq taken: by an event, by a link-log entry without one (an admin action), by an
    expired event retention kept (store/retention.py keeps the last event it expires), or by an
    event erased since (store/feed.py `event_changes`): so that no later event shares its place in
    history (history.py) nor takes a seq the analytics copy has read past."""
    return int(
        conn.execute(
            "SELECT max(coalesce((SELECT max(seq) FROM events), 0), coalesce((SELECT max(seq) FROM links), 0),"
            " coalesce((SELECT max(seq) FROM retired_events), 0), coalesce((SELECT max(seq) FROM event_changes), 0))"
        ).fetchone()[0]
    )


class SQLitePersons(SQLPersons):
    """The engine's `PersonStore` for one project, inside an open write transaction."""

    def write_events(self, rows: list[tuple[Any, ...]]) -> None:
        self.conn.executemany(f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def upsert_sessions(self, rows: list[tuple[Any, ...]]) -> None:
        self.conn.executemany(_UPSERT_SESSION, rows)


# One row per session, kept at ingest so session lists never aggregate events (query/sessions.py).
# The distinct ids are a JSON list; persons are resolved from them at read time, like events.
_UPSERT_SESSION = (
    "INSERT INTO sessions (project_id, session_id, first_at, last_at, event_count, identifies, entry_at, entry_url,"
    " distinct_ids, last_distinct_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (project_id, session_id) DO UPDATE SET"
    " first_at = min(first_at, excluded.first_at),"
    " last_at = max(last_at, excluded.last_at),"
    " last_distinct_id = CASE WHEN excluded.last_at >= last_at THEN excluded.last_distinct_id ELSE last_distinct_id END,"
    " event_count = event_count + excluded.event_count,"
    " identifies = identifies + excluded.identifies,"
    " entry_url = CASE WHEN excluded.entry_at < coalesce(entry_at, '~') THEN excluded.entry_url ELSE entry_url END,"
    " entry_at = CASE WHEN excluded.entry_at < coalesce(entry_at, '~') THEN excluded.entry_at ELSE entry_at END,"
    " distinct_ids = CASE WHEN distinct_ids = excluded.distinct_ids THEN distinct_ids ELSE ("
    "SELECT json_group_array(value) FROM (SELECT value FROM json_each(sessions.distinct_ids)"
    " UNION SELECT value FROM json_each(excluded.distinct_ids))) END"
)

# Under load, the WAL is copied back into the database at least this often (and whenever the
# writer is idle). Counting commits instead let a stream of large ones grow the WAL past a
# gigabyte before the first checkpoint; time bounds it by what the writer can commit meanwhile.
BUSY_CHECKPOINT_SECONDS = 0.2
# A checkpoint lets the next commit write the WAL from its start again only if no reader is then
# reading from the WAL (the analytics feeder reads each commit's events right after it); when one
# is, the WAL file grows past its size. Past this size, a group that grew it checkpoints at once,
# so that large commits grow the file by a group at a time, not by 0.2 s of them.
WAL_GROWTH_CHECKPOINT_BYTES = 4 * 1024 * 1024


_SYNCHRONOUS = {0: "off", 1: "normal", 2: "full", 3: "extra"}


class SQLiteWriteSession:
    """The writer's transactions on one SQLite file (store/transactions.py `WriteSession`).

    SQLite has one writer at a time, so a group needs no locks of its own: `BEGIN IMMEDIATE`
    takes the file's write lock. The writer's person cache stays true until another connection
    commits, which `PRAGMA data_version` tells.
    """

    serialises_everything = True

    def __init__(self, path: Path, now: Now) -> None:
        self.path = path
        self.now = now
        self.conn = open_database(path)
        # Checkpoints run between groups, instead of inside whichever commit crosses the WAL
        # size threshold (that made one request in every few pay for copying the WAL back).
        self.conn.execute("PRAGMA wal_autocheckpoint = 0")
        # Read back, not assumed: what `/api/status` shows and the durability tests check.
        synchronous = self.conn.execute("PRAGMA synchronous").fetchone()[0]
        self.durability = {
            "journal_mode": self.conn.execute("PRAGMA journal_mode").fetchone()[0],
            "synchronous": _SYNCHRONOUS.get(synchronous, str(synchronous)),
        }
        self._seq = 0
        self._data_version: int | None = None
        self._commits_since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self._wal = path.with_name(path.name + "-wal")
        self._wal_bytes = 0  # the WAL file's size after the last group

    def begin(self, claims: Sequence[Claims | None]) -> bool:
        self.conn.execute("BEGIN IMMEDIATE")
        # Read under the write lock, so another process writing the same file (the CLI) is safe.
        version = self.conn.execute("PRAGMA data_version").fetchone()[0]
        self._seq = max_seq(self.conn)
        return version == self._data_version

    def take_seq(self) -> int:
        self._seq += 1
        return self._seq

    def persons(self, project_id: int) -> SQLitePersons:
        return SQLitePersons(self.conn, project_id, self.now, self.take_seq)

    def savepoint(self) -> None:
        self.conn.execute("SAVEPOINT work")

    def release_savepoint(self) -> None:
        self.conn.execute("RELEASE work")

    def rollback_to_savepoint(self) -> None:
        self.conn.execute("ROLLBACK TO work")
        self.conn.execute("RELEASE work")

    def commit(self) -> None:
        self.conn.execute("COMMIT")
        self._data_version = self.conn.execute("PRAGMA data_version").fetchone()[0]
        self._commits_since_checkpoint += 1

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def retry_after(self, error: BaseException, attempt: int) -> float | None:
        return None  # one writer: nothing to race, nothing to wait for

    def store_fault(self, error: BaseException) -> StoreUnavailable | None:
        return store_fault(error, self.path)

    def between_groups(self, *, idle: bool) -> None:
        if not self._commits_since_checkpoint:
            return
        wal_bytes, self._wal_bytes = self._wal_bytes, _size(self._wal)
        grew = self._wal_bytes > max(wal_bytes, WAL_GROWTH_CHECKPOINT_BYTES)
        if idle or grew or time.monotonic() - self._last_checkpoint >= BUSY_CHECKPOINT_SECONDS:
            # The writer is the only one that commits, so between its groups a passive checkpoint
            # copies every frame that no reader still needs, and the next commit restarts the WAL.
            self._last_checkpoint = time.monotonic()
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._commits_since_checkpoint = 0

    def close(self) -> None:
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as error:  # a full disk: the WAL stays, and the next start reads it
            log.warning("could not checkpoint %s at close: %s", self.path, error)
        self.conn.close()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def store_fault(error: BaseException, path: Path | str) -> StoreUnavailable | None:
    """`error` as a fault of the file at `path` as a whole (a full disk, a write error), or None
    when it is one write's own. Nothing of a transaction that failed so is stored."""
    code = getattr(error, "sqlite_errorcode", None)
    if not isinstance(error, sqlite3.Error) or code is None:
        return None
    primary = code & 0xFF
    # Growing the `-shm` file on a full disk is an I/O error to SQLite, not SQLITE_FULL.
    if primary == sqlite3.SQLITE_FULL or (primary == sqlite3.SQLITE_IOERR and _disk_full(path)):
        return StoreFull("the disk holding the database is full: nothing was stored; try again once space is freed")
    if primary in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN):
        return StoreUnavailable(f"the database file cannot be written ({error}): nothing was stored")
    return None


def _disk_full(path: Path | str) -> bool:
    try:
        return os.statvfs(Path(path).parent).f_bavail == 0
    except OSError:
        return False


def file_sizes(path: Path) -> dict[str, int]:
    """The database file and its WAL, in bytes (0 for a file that is not there)."""
    sizes: dict[str, int] = {}
    for name, file in (("database_bytes", path), ("wal_bytes", path.with_name(path.name + "-wal"))):
        try:
            sizes[name] = file.stat().st_size
        except FileNotFoundError:
            sizes[name] = 0
    return sizes


def truncate_wal(path: Path, wait: float = 1.0) -> bool:
    """Copy the WAL into the database file and empty it, so erased rows' old page images leave
    the WAL too (with `secure_delete` the freed pages are zeros). A reader on an older snapshot,
    or a long write, holds it up: it waits for them up to `wait` seconds, then gives up (False).
    The writer's own periodic checkpoint makes a concurrent one answer busy at once, without
    waiting: so busy answers are retried until the deadline."""
    deadline = time.monotonic() + wait
    conn = sqlite3.connect(path, timeout=wait, isolation_level=None)
    try:
        while True:
            try:
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.OperationalError:
                busy = 1
            if busy == 0:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
    finally:
        conn.close()
