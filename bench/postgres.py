"""The PostgreSQL side of bench/ingest.py: databases, the raw COPY baseline, checks, CPU shares.

    .venv/bin/python bench/ingest.py --postgres                     # a throwaway PostgreSQL of its own
    .venv/bin/python bench/ingest.py --database postgresql://u@host/postgres --servers 1,2 --repeat 5

Every measured configuration gets a fresh database (`CREATE DATABASE` on the cluster the DSN
names, so its role needs CREATEDB), prepared by the servers themselves; the raw COPY baseline
gets one too, prepared by `PostgresStore(dsn).prepare()`: the same partitions and indexes.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec
import psycopg
from psycopg import sql

from idstitch.engine import StoredEvent
from idstitch.ingest import posthog
from idstitch.store.backends import PostgresStore
from idstitch.store.persons import EVENT_COLUMNS
from idstitch.store.postgres import PostgresPersons, storable

REPO = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- the cluster -------------------------------------------------------------------------------


class Cluster:
    """A PostgreSQL server to make fresh databases on: one the bench started, or the `--database` one."""

    def __init__(self, dsn: str, own: Any = None) -> None:
        self.dsn = dsn
        self.own = own  # tests.postgres_server.PostgresServer when the bench started it
        self._made = 0

    @classmethod
    def start_own(cls) -> Cluster:
        # bench/ is sys.path[0] when the bench runs as a script; the harness lives in tests/.
        if str(REPO) not in sys.path:
            sys.path.insert(0, str(REPO))
        from tests.postgres_server import PostgresServer

        server = PostgresServer()
        server.start()
        return cls(server.dsn, server)

    def stop(self) -> None:
        if self.own is not None:
            self.own.stop()

    def _admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn, autocommit=True)

    def fresh_database(self, label: str) -> tuple[str, str]:
        """A new empty database (a copy of template0); its name and its DSN."""
        self._made += 1
        name = f"idstitch_bench_{os.getpid()}_{self._made}_{label}"
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
        parts = urlsplit(self.dsn)
        return name, urlunsplit(parts._replace(path=f"/{name}"))

    def drop_database(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def deadlocks(self, name: str) -> int:
        """Deadlocks PostgreSQL detected in that database. A session reports its counts when it
        ends, so this waits (up to 10 s) for the database's sessions to be gone."""
        with self._admin() as conn:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
            ).fetchone()[0]:
                time.sleep(0.05)
            row = conn.execute("SELECT coalesce(deadlocks, 0) FROM pg_stat_database WHERE datname = %s", (name,)).fetchone()
        return int(row[0]) if row else 0

    def describe(self) -> str:
        with self._admin() as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            shown = {
                setting: conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(setting))).fetchone()[0]
                for setting in ("fsync", "synchronous_commit", "shared_buffers", "max_wal_size")
            }
        where = "started by the bench" if self.own is not None else _without_password(self.dsn)
        return f"PostgreSQL {version} ({where}): " + ", ".join(f"{k}={v}" for k, v in shown.items())

    def process_ids(self) -> list[int]:
        """The postmaster and its children (backends, WAL writer, checkpointer...), when it runs here."""
        if self.own is None:
            return []
        try:
            postmaster = int((self.own.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        return [postmaster, *_children(postmaster)]


def _without_password(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


# -- the rows the server writes ----------------------------------------------------------------


def event_rows(bodies: Sequence[bytes], received_at: datetime, project_id: int = 1) -> list[tuple[Any, ...]]:
    """The `events` rows the server stores for these PostHog bodies: decoded by the server's own
    decoder, encoded by its own `PostgresPersons.event_rows` and `storable` (the columns and text
    `PostgresPersons.write_events` COPYs)."""
    decode = msgspec.json.Decoder().decode
    persons = PostgresPersons(None, project_id, lambda: received_at, lambda: 0)  # type: ignore[arg-type]
    stored: list[StoredEvent] = []
    for body in bodies:
        decoded = posthog.decode_request(decode(body), received_at)
        if decoded.rejected:
            raise RuntimeError(f"the workload has events the server rejects: {decoded.rejected[0]}")
        stored.extend(StoredEvent(len(stored) + 1, command.event) for command in decoded.commands)  # type: ignore[attr-defined]
    return [tuple(storable(row)) for row in persons.event_rows(stored)]


# -- checks after a run ------------------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    events: int
    distinct_uuids: int
    uuid_rows: int
    transactions: int  # writer transactions that stored events (distinct xmin of event_uuids)
    per_transaction: tuple[int, int, int]  # events per transaction: 10th percentile, median, 90th

    @property
    def events_per_transaction(self) -> float:
        return self.events / self.transactions if self.transactions else 0.0


def stored_events(dsn: str) -> Stored:
    """Count what the servers stored. The writer inserts a transaction's claimed uuids into
    `event_uuids` before any savepoint, so those rows carry the transaction's own xid: the
    distinct `xmin`s are the transactions that stored events (exact, unlike the lagging stats)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        events, distinct = conn.execute("SELECT count(*), count(DISTINCT uuid) FROM events").fetchone()
        uuid_rows = conn.execute("SELECT count(*) FROM event_uuids").fetchone()[0]
        sizes = [r[0] for r in conn.execute("SELECT count(*) FROM event_uuids GROUP BY xmin::text ORDER BY 1")]
    spread = (0, 0, 0)
    if sizes:
        spread = (sizes[len(sizes) // 10], int(statistics.median(sizes)), sizes[len(sizes) * 9 // 10])
    return Stored(events, distinct, uuid_rows, len(sizes), spread)


def sample_matches(dsn: str, rows: Sequence[tuple[Any, ...]], every: int = 997) -> tuple[int, int]:
    """Compare a sample of the baseline's rows with what the server stored (all but seq and the
    times, which depend on when it ran): (matching, sampled)."""
    decode = msgspec.json.Decoder().decode
    sample = {row[2]: row for row in rows[::every]}
    with psycopg.connect(dsn, autocommit=True) as conn:
        found = conn.execute(
            "SELECT uuid, distinct_id, event, session_id, process_person, properties::text, ops::text"
            " FROM events WHERE uuid = ANY(%s)",
            (list(sample),),
        ).fetchall()
    matching = 0
    for uuid, distinct_id, event, session_id, process_person, properties, ops in found:
        row = sample[uuid]
        if (
            (distinct_id, event, session_id, process_person) == (row[3], row[4], row[7], row[8])
            and decode(properties) == decode(row[9])
            and (ops is None) == (row[10] is None)
            and (ops is None or decode(ops) == decode(row[10]))
        ):
            matching += 1
    return matching, len(sample)


# -- baseline ----------------------------------------------------------------------------------


def raw_copy_rate(
    dsn: str, rows: Sequence[tuple[Any, ...]], chunk: int, meter: CpuMeter | None = None
) -> tuple[float, CpuShares | None]:
    """Rows per second COPYed into a fresh idstitch schema, `chunk` rows a transaction: the
    rows into `event_uuids` (project, uuid) and into `events`, as the server's writer does, then
    a durable COMMIT. One connection; no locks, no sessions, no persons. With `meter`, also the
    CPU it took (the bench process is the `clients` share)."""
    PostgresStore(dsn).prepare()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = on")  # whatever the cluster's default: durable
        uuids = [(row[1], row[2]) for row in rows]
        if meter is not None:
            meter.start()
        began = time.perf_counter()
        for first in range(0, len(rows), chunk):
            with conn.transaction(), conn.cursor() as cursor:
                with cursor.copy("COPY event_uuids (project_id, uuid) FROM STDIN") as copy:
                    for row in uuids[first : first + chunk]:
                        copy.write_row(row)
                with cursor.copy(f"COPY events ({EVENT_COLUMNS}) FROM STDIN") as copy:
                    for row in rows[first : first + chunk]:
                        copy.write_row(row)
        elapsed = time.perf_counter() - began
        cpu = meter.stop() if meter is not None else None
        stored = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    if stored != len(rows):
        raise RuntimeError(f"raw COPY stored {stored} rows, expected {len(rows)}")
    return len(rows) / elapsed, cpu


# -- CPU shares --------------------------------------------------------------------------------


def _children(parent: int) -> Iterator[int]:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == parent:
            yield int(entry)


def process_cpu(pids: Sequence[int], *, reaped: Sequence[int] = ()) -> float:
    """User + system seconds of these processes (all their threads), those still running, plus
    what the children of `reaped` that have exited used (autovacuum workers of the postmaster)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
        if pid in reaped:
            total += int(fields[13]) + int(fields[14])  # cutime, cstime
    return total / CLOCK_TICKS


def machine_cpu() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields) - idle) / CLOCK_TICKS, sum(fields) / CLOCK_TICKS


@dataclass(frozen=True)
class CpuShares:
    """Cores busy on average during a run, by whom (2.0 = both cores of this machine)."""

    postgres: float | None
    servers: float
    clients: float
    other: float
    idle: float

    def __str__(self) -> str:
        pg = "n/a" if self.postgres is None else f"{self.postgres:.2f}"
        return (f"postgres {pg}, servers {self.servers:.2f}, clients {self.clients:.2f},"
                f" other {self.other:.2f}, idle {self.idle:.2f}")


class CpuMeter:
    """CPU used between `start()` and `stop()` by PostgreSQL, the idstitch servers, this process
    (the clients) and everything else on the machine (other work sharing it).

    `postgres_pids` is asked at each reading, so that backends started meanwhile count; its
    first pid (the postmaster) also counts its children that exited. With no pids (a cluster on
    another machine, or not readable), PostgreSQL's share is n/a and lands in `other` if local.
    """

    def __init__(self, postgres_pids: Callable[[], list[int]], server_pids: Sequence[int]) -> None:
        self.postgres_pids = postgres_pids
        self.server_pids = list(server_pids)

    def _read(self) -> tuple[float, ...]:
        own = os.times()
        busy, _ = machine_cpu()
        pids = self.postgres_pids()
        pg = process_cpu(pids, reaped=pids[:1])
        return (time.perf_counter(), pg, process_cpu(self.server_pids), own.user + own.system, busy, float(bool(pids)))

    def start(self) -> None:
        self._began = self._read()

    def stop(self) -> CpuShares:
        end = self._read()
        wall, pg, servers, clients, busy, _ = (b - a for a, b in zip(self._began, end))
        known = bool(end[5])
        other = busy - (pg if known else 0.0) - servers - clients
        return CpuShares(
            pg / wall if known else None, servers / wall, clients / wall, max(other, 0.0) / wall,
            max((os.cpu_count() or 1) - busy / wall, 0.0),
        )


# -- where the sessions wait ---------------------------------------------------------------------


@dataclass(frozen=True)
class Waits:
    """The servers' PostgreSQL sessions during a run, averaged over samples: how many (0 to the
    number of servers x their connections) were in each state at a time."""

    samples: int
    executing: float  # running a statement
    io: float  # waiting on disk: the WAL flush of a commit, mostly
    locks: dict[str, float]  # waiting on another session's lock, by lock type (advisory, tuple...)
    on_server: float  # inside a transaction, waiting for the idstitch server's next statement

    def __str__(self) -> str:
        locks = ", ".join(f"{kind} {n:.2f}" for kind, n in sorted(self.locks.items(), key=lambda kv: -kv[1]) if n >= 0.005)
        return (f"executing {self.executing:.2f}, disk {self.io:.2f}, lock waits {sum(self.locks.values()):.2f}"
                f"{f' ({locks})' if locks else ''}, waiting for the server in a transaction {self.on_server:.2f}")


class WaitSampler:
    """Samples `pg_stat_activity` of one database every `interval` seconds from its own
    connection (about 50 cheap queries a second), on a thread, between `start()` and `stop()`."""

    def __init__(self, dsn: str, interval: float = 0.02) -> None:
        self.dsn = dsn
        self.interval = interval
        self._stop = threading.Event()
        self._counts: Counter[str] = Counter()
        self._samples = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="wait-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._stop.is_set():
                for state, kind, event in conn.execute(
                    "SELECT state, wait_event_type, wait_event FROM pg_stat_activity WHERE datname = current_database()"
                    " AND backend_type = 'client backend' AND pid <> pg_backend_pid() AND state <> 'idle'"
                ):
                    if state != "active" or kind == "Client":  # idle in transaction, or between pipeline parts
                        self._counts["server"] += 1
                    elif kind == "Lock":
                        self._counts[f"lock {event}"] += 1
                    elif kind == "IO":
                        self._counts["io"] += 1
                    else:  # on CPU, or an LWLock / IPC wait inside PostgreSQL
                        self._counts["executing"] += 1
                self._samples += 1
                self._stop.wait(self.interval)

    def stop(self) -> Waits:
        self._stop.set()
        self._thread.join()
        n = max(self._samples, 1)
        counts = self._counts
        locks = {key[5:]: value / n for key, value in counts.items() if key.startswith("lock ")}
        return Waits(self._samples, counts["executing"] / n, counts["io"] / n, locks, counts["server"] / n)


# -- the workload over the servers ---------------------------------------------------------------


def identities_across_servers(bodies: Sequence[bytes], servers: int) -> tuple[int, int]:
    """With request i sent to server i % `servers`: of the users identified more than once (a
    returning user on a new device: a merge), how many were identified on more than one server.
    Returns (on several servers, identified more than once)."""
    decode = msgspec.json.Decoder().decode
    seen: dict[str, list[int]] = {}
    for index, body in enumerate(bodies):
        for event in decode(body)["batch"]:
            if event["event"] == "$identify":
                seen.setdefault(event["distinct_id"], []).append(index % servers)
    again = [on for on in seen.values() if len(on) > 1]
    return sum(1 for on in again if len(set(on)) > 1), len(again)


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)
