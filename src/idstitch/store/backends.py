"""Which store a server, the CLI or a test uses: `open_store(database, data_dir)`.

A `Store` hands out connections (`connect`) and the writer's side of transactions
(`write_session`); nothing above it asks which database it is.

    SQLiteStore     one file in the data directory, one server process at a time
    PostgresStore   one database shared by any number of server processes
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from idstitch.clock import Now
from idstitch.errors import InvalidSetting, StoreInUse
from idstitch.store import postgres, sqlite
from idstitch.store.connection import Connection
from idstitch.store.rate_buckets import SharedRateBuckets
from idstitch.store.transactions import WriteSession


class Store(Protocol):
    @property
    def description(self) -> str:
        """What to print at start: the file, or the database URL without its password."""
        ...

    @property
    def several_servers(self) -> bool:
        """Whether several server processes may share this store."""
        ...

    def prepare(self) -> None:
        """Create the database or migrate it to this version's schema."""
        ...

    def exists(self) -> bool:
        """Whether there is a database to open (a server has started on it once)."""
        ...

    def connect(self, *, read_only: bool = False) -> Connection: ...

    def write_session(self, now: Now) -> WriteSession: ...

    def claim_for_server(self) -> None:
        """Refuse to serve when another server process would write without coordination."""
        ...

    def forget_erased(self, wait: float) -> str | None:
        """After an erasure: make the store drop its own copies of the erased rows (SQLite: the
        WAL, checkpointed into the file and emptied; PostgreSQL: the dead row versions, vacuumed),
        waiting up to `wait` seconds for readers whose snapshots still hold them. None when done;
        else what still holds them (call again later)."""
        ...

    @property
    def erasure_remains(self) -> tuple[str, ...]:
        """Copies of erased data beyond the store's reach, after `forget_erased`: where, and how they go."""
        ...

    def shared_rate_buckets(self) -> SharedRateBuckets | None:
        """Rate-limit buckets all servers share, or None where one server serves the store."""
        ...

    def sizes(self) -> dict[str, int | None]:
        """`database_bytes` and `wal_bytes` on disk (None where the store cannot tell)."""
        ...

    def release(self) -> None: ...


READER_HOLDS_WAL = (
    "a read transaction open since before the erasure keeps the WAL from being copied into the database"
    " file and emptied, so the erased bytes are still in the files"
)
POSTGRES_REMAINS = (
    "the bytes of vacuumed rows stay in the tables' free space until new rows overwrite it"
    " (VACUUM FULL rewrites a table at once, locking it)",
    "PostgreSQL's WAL holds them until it is recycled, and WAL archives and backups until they expire",
)


@dataclass
class SQLiteStore:
    path: Path
    _lock: IO[str] | None = field(default=None, repr=False)
    several_servers = False

    @property
    def description(self) -> str:
        return str(self.path)

    def prepare(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        sqlite.open_database(self.path).close()

    def exists(self) -> bool:
        return self.path.exists()

    def connect(self, *, read_only: bool = False) -> Connection:
        return sqlite.open_database(self.path, read_only=read_only)

    def write_session(self, now: Now) -> sqlite.SQLiteWriteSession:
        return sqlite.SQLiteWriteSession(self.path, now)

    def claim_for_server(self) -> None:
        """An exclusive lock on `<file>.server` while this process serves the file.

        A second server on the same file would keep its own caches of settings and persons and
        diverge from the first; the CLI's short writes are safe (the writer re-checks
        `PRAGMA data_version`), so only servers take this lock. The kernel drops the lock when
        the process dies, so a killed server never leaves a stale one behind.
        """
        if self._lock is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        held = take_server_lock(self.path)
        if isinstance(held, str):
            raise StoreInUse(
                f"Another idstitch server (pid {held}) is serving {self.path}; two servers on one SQLite file"
                " would diverge. Stop it, or use PostgreSQL (--database postgresql://...) to run several servers."
            )
        self._lock = held

    def forget_erased(self, wait: float) -> str | None:
        return None if sqlite.truncate_wal(self.path, wait) else READER_HOLDS_WAL

    @property
    def erasure_remains(self) -> tuple[str, ...]:
        return ()  # secure_delete zeroed the freed space; the emptied WAL held the rest

    def shared_rate_buckets(self) -> None:
        return None  # one server: its buckets stay in its memory

    def sizes(self) -> dict[str, int | None]:
        return {**sqlite.file_sizes(self.path)}

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


@dataclass
class PostgresStore:
    dsn: str
    several_servers = True

    @property
    def description(self) -> str:
        return postgres.redacted_url(self.dsn)

    def prepare(self) -> None:
        postgres.open_database(self.dsn).close()

    def exists(self) -> bool:
        return True  # its administrator created it; a missing one is a connection error

    def connect(self, *, read_only: bool = False) -> Connection:
        return postgres.connect(self.dsn)

    def write_session(self, now: Now) -> postgres.PostgresWriteSession:
        return postgres.PostgresWriteSession(self.dsn, now)

    def claim_for_server(self) -> None:
        pass  # any number of servers: the database serialises what must be serial

    def forget_erased(self, wait: float) -> str | None:
        return postgres.vacuum_erased(self.dsn, wait)

    @property
    def erasure_remains(self) -> tuple[str, ...]:
        return POSTGRES_REMAINS

    def shared_rate_buckets(self) -> SharedRateBuckets:
        return SharedRateBuckets(self.connect)

    def sizes(self) -> dict[str, int | None]:
        conn = postgres.connect(self.dsn)
        try:
            return postgres.sizes(conn)
        finally:
            conn.close()

    def release(self) -> None:
        pass


def take_server_lock(path: Path) -> IO[str] | str:
    """The exclusive lock on `<file>.server`, holding this process's pid; or, when another
    process holds it, that process's pid as written in the file."""
    handle = open(path.with_name(path.name + ".server"), "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        return holder
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def open_store(database: str | None, data_dir: Path) -> Store:
    """The store named by `--database` (a PostgreSQL URL), else the SQLite file in `data_dir`."""
    if not database:
        return SQLiteStore(data_dir / sqlite.DATABASE_FILE)
    if postgres.is_postgres_url(database):
        return PostgresStore(database)
    raise InvalidSetting(
        f"database {database!r} is not a PostgreSQL URL (postgresql://user@host/db);"
        " leave it unset for the SQLite file in the data directory"
    )
