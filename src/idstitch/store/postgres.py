"""The scale-out store: PostgreSQL, shared by several idstitch servers.

`PostgresConnection` lets the store's SQL (written with `?` marks) run unchanged; the SQL that
differs is here (`POSTGRES`, `PostgresPersons`). `PostgresWriteSession` is each server's writer:
it takes the locks of a whole group of writes in one global order before any of them runs,
which makes the servers' transactions equal to a serial order and free of deadlocks
(docs/concurrency.md).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import re
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.types.string import TextLoader

from idstitch.clock import Now
from idstitch.errors import StoreFull, StoreUnavailable
from idstitch.store.connection import to_pyformat
from idstitch.store.dialects import MIGRATIONS_LOCK, POSTGRES, WRITES_LOCK
from idstitch.store.persons import EVENT_COLUMNS, SQLPersons
from idstitch.store.postgres_schema import MIGRATIONS
from idstitch.store.transactions import Claims

log = logging.getLogger(__name__)


CONNECT_TIMEOUT_SECONDS = 5


def is_postgres_url(location: str) -> bool:
    return location.startswith(("postgresql://", "postgres://"))


def redacted_url(dsn: str) -> str:
    """The URL without its password, for messages and logs."""
    scheme, _, rest = dsn.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return dsn
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


@functools.lru_cache(maxsize=1024)
def _row_class(names: tuple[str, ...]) -> type[tuple[Any, ...]]:
    index = {name: i for i, name in enumerate(names)}

    class PostgresRow(tuple):  # type: ignore[type-arg]
        """A row by position or by column name, as `sqlite3.Row`."""

        __slots__ = ()

        def __getitem__(self, key: Any) -> Any:
            if isinstance(key, str):
                return tuple.__getitem__(self, index[key])
            return tuple.__getitem__(self, key)

        def keys(self) -> list[str]:
            return list(names)

    return PostgresRow


def _rows(cursor: psycopg.Cursor[Any]) -> Any:
    description = cursor.description
    if description is None:
        return tuple
    return _row_class(tuple(column.name for column in description))


class PostgresConnection:
    """One PostgreSQL session with the `Connection` shape of store/connection.py.

    Autocommit, so that transactions are explicit `BEGIN` ... `COMMIT` as on the SQLite
    connections; a connection found broken (the database restarted) is replaced before the
    next statement outside a transaction.
    """

    dialect = POSTGRES

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.raw = self._connect()

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            raw = psycopg.connect(self.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS, row_factory=_rows)
        except psycopg.OperationalError as error:
            raise StoreUnavailable(f"cannot connect to PostgreSQL at {redacted_url(self.dsn)}: {error}") from error
        # JSON reads back as its text, as from SQLite; the callers decode it.
        raw.adapters.register_loader("jsonb", TextLoader)
        raw.adapters.register_loader("json", TextLoader)
        return raw

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def reconnect_if_broken(self) -> None:
        if self.raw.broken or self.raw.closed:
            try:
                self.raw.close()
            finally:
                self.raw = self._connect()

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        if self.raw.broken or self.raw.closed:
            self.reconnect_if_broken()
        outside_transaction = not self.in_transaction
        try:
            return self._execute(sql, parameters)
        except StoreUnavailable:
            if not outside_transaction:
                raise
            # A statement of its own on a connection the database dropped: once more on a new one.
            self.reconnect_if_broken()
            return self._execute(sql, parameters)

    def _execute(self, sql: str, parameters: Sequence[Any]) -> psycopg.Cursor[Any]:
        with _unavailable_when_dropped(self):
            return self.raw.execute(to_pyformat(sql), storable(parameters))  # type: ignore[arg-type]

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> None:
        with _unavailable_when_dropped(self), self.raw.cursor() as cursor:
            cursor.executemany(to_pyformat(sql), [storable(row) for row in rows])  # type: ignore[arg-type]

    def close(self) -> None:
        self.raw.close()


# A JSON `\u0000` escape that is not itself an escaped backslash followed by "u0000".
_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def storable(values: Sequence[Any]) -> Sequence[Any]:
    """`values` with each NUL character, raw or as a JSON `\\u0000` escape, replaced by U+FFFD.

    PostgreSQL text cannot hold NUL and jsonb refuses `\\u0000`, where SQLite stores both (an
    event name or a property value may carry one from public ingest); lists (text arrays, as
    in `= ANY(?)` over claimed uuids or session ids) are replaced in the same way. Values without
    one, nearly all, are passed on as they are.
    """
    if not any(_holds_nul(v) for v in values):
        return values
    return [_without_nul(v) for v in values]


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value or "\\u0000" in value
    return isinstance(value, list) and any(_holds_nul(item) for item in value)


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return _JSON_NUL.sub(r"\1\\ufffd", value.replace("\x00", "\ufffd"))
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    return value


@contextlib.contextmanager
def _unavailable_when_dropped(conn: PostgresConnection) -> Iterator[None]:
    """A connection the database dropped (restart, crash, network) is `StoreUnavailable`;
    any other error (a timeout, a constraint) stays what it is."""
    try:
        yield
    except psycopg.OperationalError as error:
        if conn.raw.broken or isinstance(error, _DATABASE_GOING_AWAY):
            raise StoreUnavailable(f"PostgreSQL connection lost: {error}") from error
        raise


_DATABASE_GOING_AWAY = (pg_errors.AdminShutdown, pg_errors.CannotConnectNow, pg_errors.CrashShutdown)


def sizes(conn: PostgresConnection) -> dict[str, int | None]:
    """The database's size, and the server's WAL where this role may list it (pg_monitor)."""
    [database] = conn.execute("SELECT pg_database_size(current_database())").fetchall()[0]
    try:
        [wal] = conn.execute("SELECT coalesce(sum(size), 0) FROM pg_ls_waldir()").fetchall()[0]
    except pg_errors.InsufficientPrivilege:
        wal = None
    return {"database_bytes": int(database), "wal_bytes": None if wal is None else int(wal)}


def open_database(dsn: str) -> PostgresConnection:
    """Connect, and create or migrate the schema (once, when several servers start together)."""
    conn = PostgresConnection(dsn)
    migrate(conn)
    return conn


def connect(dsn: str) -> PostgresConnection:
    return PostgresConnection(dsn)


def migrate(conn: PostgresConnection) -> list[str]:
    """Apply the migrations not applied yet, under an advisory lock, each in its own transaction."""
    raw = conn.raw
    applied: list[str] = []
    raw.execute("SELECT pg_advisory_lock(%s)", (MIGRATIONS_LOCK,))
    try:
        raw.execute("CREATE TABLE IF NOT EXISTS migrations (name text PRIMARY KEY, applied_at text NOT NULL)")
        done = {row[0] for row in raw.execute("SELECT name FROM migrations")}
        for name, sql in MIGRATIONS:
            if name in done:
                continue
            with raw.transaction():
                raw.execute(sql)  # type: ignore[arg-type]  # several statements, no parameters
                raw.execute("INSERT INTO migrations VALUES (%s, now()::text)", (name,))
            applied.append(name)
        ensure_event_partitions(conn, datetime.now(timezone.utc))
    finally:
        raw.execute("SELECT pg_advisory_unlock(%s)", (MIGRATIONS_LOCK,))
    return applied


def _month(year: int, month: int) -> tuple[int, int]:
    return (year + (month - 1) // 12, (month - 1) % 12 + 1)


def ensure_event_partitions(conn: PostgresConnection, now: datetime, *, months: Iterable[str] = ()) -> None:
    """Monthly partitions of `events`: this month, the next three, and each `YYYY-MM` in `months`.

    Created ahead of time, because creating one locks the whole table: ingest never does it.
    A month that already has rows in the default partition is left there (PostgreSQL would
    refuse the new partition).
    """
    wanted = {_month(now.year, now.month + i) for i in range(4)}
    wanted |= {(int(m[:4]), int(m[5:7])) for m in months}
    for year, month in sorted(wanted):
        start = f"{year:04d}-{month:02d}"
        ny, nm = _month(year, month + 1)
        end = f"{ny:04d}-{nm:02d}"
        name = f"events_{year:04d}_{month:02d}"
        exists = conn.raw.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
        if exists and exists[0]:
            continue
        stranded = conn.raw.execute(
            "SELECT 1 FROM events_default WHERE timestamp >= %s AND timestamp < %s LIMIT 1", (start, end)
        ).fetchone()
        if stranded:
            continue
        conn.raw.execute(
            f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF events FOR VALUES FROM ('{start}') TO ('{end}')"
        )


# Session ids and distinct ids share the key space; a NUL cannot start a distinct id.
SESSION_LOCK_PREFIX = "\x00session\x00"


def lock_key(project_id: int, name: str) -> int:
    """A signed 64-bit advisory lock key for an id (or an event uuid) of one project."""
    digest = hashlib.blake2b(f"{project_id}\x00{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class IdentitiesMoved(Exception):
    """Another server changed what this transaction read before its locks were all taken
    (an id's person, an event uuid no claim named); the transaction starts over."""


class PostgresPersons(SQLPersons):
    """The engine's `PersonStore` on PostgreSQL, inside a `PostgresWriteSession` transaction."""

    conn: PostgresConnection
    session: PostgresWriteSession

    def owners_of(self, distinct_ids: Iterable[str]) -> dict[str, str]:
        return dict(
            self.conn.execute(
                "SELECT distinct_id, person_id FROM distinct_ids WHERE project_id = ? AND distinct_id = ANY(?)",
                (self.project_id, list(distinct_ids)),
            ).fetchall()
        )

    def existing_event_uuids(self, uuids: list[str]) -> set[str]:
        return self.session.stored_uuids(self.project_id, uuids)

    def write_events(self, rows: list[tuple[Any, ...]]) -> None:
        self.session.record_events(self.project_id, [row[2] for row in rows])
        with self.conn.raw.cursor().copy(f"COPY events ({EVENT_COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(storable(row))

    def upsert_sessions(self, rows: list[tuple[Any, ...]]) -> None:
        self.conn.executemany(_UPSERT_SESSION, rows)


# The SQLite upsert of store/sqlite.py, in PostgreSQL's words (distinct ids: a jsonb array).
_UPSERT_SESSION = (
    "INSERT INTO sessions AS s (project_id, session_id, first_at, last_at, event_count, identifies, entry_at, entry_url,"
    " distinct_ids, last_distinct_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (project_id, session_id) DO UPDATE SET"
    " first_at = least(s.first_at, excluded.first_at),"
    " last_at = greatest(s.last_at, excluded.last_at),"
    " last_distinct_id = CASE WHEN excluded.last_at >= s.last_at THEN excluded.last_distinct_id ELSE s.last_distinct_id END,"
    " event_count = s.event_count + excluded.event_count,"
    " identifies = s.identifies + excluded.identifies,"
    " entry_url = CASE WHEN excluded.entry_at < coalesce(s.entry_at, '~') THEN excluded.entry_url ELSE s.entry_url END,"
    " entry_at = CASE WHEN excluded.entry_at < coalesce(s.entry_at, '~') THEN excluded.entry_at ELSE s.entry_at END,"
    " distinct_ids = CASE WHEN s.distinct_ids = excluded.distinct_ids THEN s.distinct_ids ELSE ("
    "SELECT jsonb_agg(value ORDER BY first) FROM (SELECT value, min(n) AS first FROM ("
    "SELECT value, n FROM jsonb_array_elements(s.distinct_ids) WITH ORDINALITY AS a(value, n)"
    " UNION ALL SELECT value, n + 1000000 FROM jsonb_array_elements(excluded.distinct_ids) WITH ORDINALITY AS b(value, n)"
    ") AS both_lists GROUP BY value) AS merged) END"
)


class PostgresWriteSession:
    """One server's writer on a shared PostgreSQL (store/transactions.py `WriteSession`).

    `begin` takes, in this order and each kind sorted: the writes lock (shared; exclusive for a
    write without claims), transaction-scoped advisory locks on the hashed ids that may be
    created, attached or moved, the rows of the persons owning the claimed ids (`FOR UPDATE`),
    and the claimed event uuids (inserted into `event_uuids`). It then re-reads the mapping: if
    another server moved an id to a person not locked here, it starts over. Every change to the
    mapping is made under the lock of the id (new ids) or of its person (moves), so what was
    read stays true until this transaction commits.
    """

    serialises_everything = False

    def __init__(self, dsn: str, now: Now) -> None:
        self.now = now
        self.conn = open_database(dsn)
        # Read back, not assumed: what `/api/status` shows.
        self.durability = {
            name: str(row[0]) for name in ("fsync", "synchronous_commit")
            for row in self.conn.execute(f"SHOW {name}").fetchall()
        }
        self._seqs: deque[int] = deque()
        self._claimed_new: dict[int, set[str]] = {}
        self._preexisting: dict[int, set[str]] = {}
        self._stored: dict[int, set[str]] = {}

    # -- the transaction ------------------------------------------------------------------

    def begin(self, claims: Sequence[Claims | None]) -> bool:
        self.conn.reconnect_if_broken()
        self._seqs.clear()
        self._claimed_new, self._preexisting, self._stored = {}, {}, {}
        self.conn.execute("BEGIN")
        if any(c is None for c in claims):
            self.conn.execute("SELECT pg_advisory_xact_lock(?)", (WRITES_LOCK,))
            return False
        self.conn.execute("SELECT pg_advisory_xact_lock_shared(?)", (WRITES_LOCK,))
        given = [c for c in claims if c is not None]
        self._lock_identities(given)
        self._claim_uuids(given)
        wanted = sum(c.events for c in given)
        if wanted:
            self._seqs.extend(
                row[0] for row in self.conn.execute("SELECT nextval('events_seq') FROM generate_series(1, ?)", (wanted,))
            )
        # Another server may have changed any person since our last transaction.
        return False

    def _lock_identities(self, claims: list[Claims]) -> None:
        by_project: dict[int, tuple[set[str], set[str]]] = {}
        for claim in claims:
            ids, identity = by_project.setdefault(claim.project_id, (set(), set()))
            ids |= claim.distinct_ids
            identity |= claim.identity_ids
        owners = {project: self._owners(project, ids) for project, (ids, _) in by_project.items()}
        keys = sorted(
            {
                lock_key(project, d)
                for project, (ids, identity) in by_project.items()
                for d in identity | (ids - owners[project].keys())
            }
            # A session's summary row is updated by every write with its events: locked here,
            # in the order, so that two servers never wait on each other's session rows later.
            | {lock_key(claim.project_id, SESSION_LOCK_PREFIX + s) for claim in claims for s in claim.session_ids}
        )
        if keys:
            # unnest keeps the array's (sorted) order, so the locks are taken in that order.
            self.conn.execute("SELECT pg_advisory_xact_lock(k) FROM unnest(?::bigint[]) AS k", (keys,)).fetchall()
        owners = {project: self._owners(project, ids) for project, (ids, _) in by_project.items()}
        person_ids = sorted({p for found in owners.values() for p in found.values()})
        locked: set[str] = set()
        if person_ids:
            locked = {
                row[0]
                for row in self.conn.execute(
                    "SELECT id FROM persons WHERE id = ANY(?) ORDER BY id FOR UPDATE", (person_ids,)
                )
            }
        key_set = set(keys)
        for project, (ids, _) in by_project.items():
            now_owners = self._owners(project, ids)
            for d in ids:
                owner = now_owners.get(d)
                if (owner is None and lock_key(project, d) not in key_set) or (owner is not None and owner not in locked):
                    raise IdentitiesMoved(f"distinct id {d!r} changed person while its locks were taken")

    def _owners(self, project_id: int, distinct_ids: set[str]) -> dict[str, str]:
        if not distinct_ids:
            return {}
        return dict(
            self.conn.execute(
                "SELECT distinct_id, person_id FROM distinct_ids WHERE project_id = ? AND distinct_id = ANY(?)",
                (project_id, sorted(distinct_ids)),
            ).fetchall()
        )

    def _claim_uuids(self, claims: list[Claims]) -> None:
        """Insert the group's event uuids, sorted: one that another server holds uncommitted
        waits here, in the lock order, instead of failing a write later."""
        by_project: dict[int, set[str]] = {}
        for claim in claims:
            by_project.setdefault(claim.project_id, set()).update(claim.event_uuids)
        for project, uuids in sorted(by_project.items()):  # projects in order too
            if not uuids:
                continue
            new = {
                row[0]
                for row in self.conn.execute(
                    "INSERT INTO event_uuids (project_id, uuid) SELECT ?, u FROM unnest(?::text[]) AS u ORDER BY u"
                    " ON CONFLICT DO NOTHING RETURNING uuid",
                    (project, sorted(uuids)),
                )
            }
            self._claimed_new[project] = new
            self._preexisting[project] = uuids - new

    def take_seq(self) -> int:
        if not self._seqs:
            self._seqs.extend(
                row[0] for row in self.conn.execute("SELECT nextval('events_seq') FROM generate_series(1, 64)")
            )
        return self._seqs.popleft()

    def persons(self, project_id: int) -> PostgresPersons:
        persons = PostgresPersons(self.conn, project_id, self.now, self.take_seq)
        persons.session = self
        return persons

    def savepoint(self) -> None:
        self._saved = {project: set(uuids) for project, uuids in self._stored.items()}
        self.conn.execute("SAVEPOINT work")

    def release_savepoint(self) -> None:
        self.conn.execute("RELEASE work")

    def rollback_to_savepoint(self) -> None:
        self.conn.execute("ROLLBACK TO work")
        self.conn.execute("RELEASE work")
        self._stored = self._saved

    def commit(self) -> None:
        for project, claimed in self._claimed_new.items():
            unstored = claimed - self._stored.get(project, set())
            if unstored:
                # Claimed for events that were not stored (rejected, or their request failed).
                self.conn.execute(
                    "DELETE FROM event_uuids WHERE project_id = ? AND uuid = ANY(?)", (project, sorted(unstored))
                )
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if not (self.conn.raw.broken or self.conn.raw.closed) and self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def retry_after(self, error: BaseException, attempt: int) -> float | None:
        if isinstance(error, (IdentitiesMoved, pg_errors.SerializationFailure)):
            return 0.005 * attempt  # lost a race with another server: at once, a little later each time
        if isinstance(error, pg_errors.DeadlockDetected):
            log.error("deadlock detected: the lock order of docs/concurrency.md was broken: %s", error)
            return 0.05 * attempt
        if isinstance(error, (StoreUnavailable, *_DATABASE_GOING_AWAY)) or (
            isinstance(error, psycopg.OperationalError) and self.conn.raw.broken
        ):
            return min(0.1 * 2**attempt, 2.0)  # the database is restarting: reconnect on begin
        return None

    def store_fault(self, error: BaseException) -> StoreUnavailable | None:
        """A full disk, an I/O error, a database that turned read-only (a standby after a
        failover): none is the request's fault, and each passes without this server's help."""
        sqlstate = getattr(error, "sqlstate", None) or ""
        if sqlstate == pg_errors.DiskFull.sqlstate:
            return StoreFull(f"PostgreSQL's disk is full: nothing was stored; try again once space is freed ({error})")
        if sqlstate.startswith(("53", "58")) or sqlstate == pg_errors.ReadOnlySqlTransaction.sqlstate:
            return StoreUnavailable(f"PostgreSQL cannot write now: nothing was stored; try again later ({error})")
        return None

    def between_groups(self, *, idle: bool) -> None:
        pass  # PostgreSQL checkpoints by itself

    def close(self) -> None:
        self.conn.close()

    # -- what PostgresPersons asks ----------------------------------------------------------

    def stored_uuids(self, project_id: int, uuids: list[str]) -> set[str]:
        """Which of `uuids` are stored already: before this transaction, or by it."""
        known = self._preexisting.get(project_id, set()) | self._stored.get(project_id, set())
        found = {u for u in uuids if u in known}
        claimed = self._claimed_new.get(project_id, set())
        unclaimed = [u for u in uuids if u not in known and u not in claimed]
        if unclaimed:
            # Uuids no claim named (a write that runs alone, an import's own event).
            found.update(
                row[0]
                for row in self.conn.execute(
                    "SELECT uuid FROM event_uuids WHERE project_id = ? AND uuid = ANY(?)", (project_id, unclaimed)
                )
            )
        return found

    def record_events(self, project_id: int, uuids: list[str]) -> None:
        claimed = self._claimed_new.get(project_id, set())
        unclaimed = sorted({u for u in uuids if u not in claimed})
        if unclaimed:
            taken = self.conn.execute(
                "INSERT INTO event_uuids (project_id, uuid) SELECT ?, u FROM unnest(?::text[]) AS u"
                " ON CONFLICT DO NOTHING RETURNING uuid",
                (project_id, unclaimed),
            ).fetchall()
            if len(taken) != len(unclaimed):
                raise IdentitiesMoved("an event uuid no claim named was stored by another write meanwhile")
        self._stored.setdefault(project_id, set()).update(uuids)


# The tables an erasure deletes from or rewrites (store/privacy.py `erase`).
ERASED_TABLES = (
    "persons", "distinct_ids", "person_attributes", "events", "event_uuids", "retired_events", "links", "warnings",
    "dead_letters", "sessions", "segments", "audit_log",
)


def vacuum_erased(dsn: str, wait: float) -> str | None:
    """VACUUM the tables an erasure touched, once no transaction older than this call can still
    see the erased rows (VACUUM keeps what an open snapshot sees). None when vacuumed; else which
    sessions hold it up, after waiting up to `wait` seconds for them to end."""
    conn = psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS)
    try:
        deadline = time.monotonic() + wait
        # Transactions begun since need not end: their snapshots no longer see the erased rows.
        row = conn.execute("SELECT statement_timestamp()").fetchone()
        assert row is not None
        since = row[0]
        while True:
            holders = [
                r[0]
                for r in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND backend_type = 'client backend' AND backend_xmin IS NOT NULL AND xact_start < %s",
                    (since,),
                )
            ]
            if not holders:
                conn.execute(f"VACUUM {', '.join(ERASED_TABLES)}")
                return None
            if time.monotonic() >= deadline:
                return (
                    f"PostgreSQL sessions {', '.join(map(str, sorted(holders)))} hold transactions open since before the"
                    " erasure, which still see the erased rows, so VACUUM cannot remove them yet"
                )
            time.sleep(0.1)
    except psycopg.OperationalError as error:
        return f"VACUUM of the erased rows failed ({error}); they are removed by the next (auto)vacuum"
    finally:
        conn.close()
