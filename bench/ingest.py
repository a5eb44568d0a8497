"""End-to-end ingest benchmark: a real `idstitch serve` process, PostHog batches over HTTP.

    .venv/bin/python bench/ingest.py                    # 200,000 events, 4 client connections
    .venv/bin/python bench/ingest.py --events 50000 --clients 8
    .venv/bin/python bench/ingest.py --profile          # sample the server with py-spy, print hot spots
    .venv/bin/python bench/ingest.py --postgres --repeat 3   # 1, 2 and 4 servers on one PostgreSQL

The server starts on a fresh temporary data directory and a free loopback port. The events look
like posthog-js traffic ($pageview, $autocapture, $pageleave, a few custom events, with the
browser, page, referrer and session properties posthog-js sends); one event in ten is an
`$identify` with `$anon_distinct_id` and a `$set`, a fifth of them a returning user on a new
device (a merge). The request bodies are encoded before the clock starts, and each client is a
keep-alive `http.client` connection, so the client costs little of the two cores.

The baseline inserts the same rows straight into a fresh database made by the server's own
`open_database` (same table, indexes and WAL/synchronous pragmas) with `executemany`, one
100-row transaction at a time. The last line is always

    ingest: <N> events/s, <R> of raw SQLite insert rate

With `--database postgresql://...` (an existing cluster; its role needs CREATEDB) or
`--postgres` (the bench starts a throwaway PostgreSQL of its own, tests/postgres_server.py),
it measures 1, 2 and 4 servers sharing one PostgreSQL database instead (`--servers 1,2,4`),
each configuration `--repeat` times on a fresh database, the clients spreading their requests
over the servers round robin, like a load balancer. The baseline COPYs the rows the server
writes (decoded and encoded by the server's own code) into `events` and `event_uuids` of a fresh
database prepared by `PostgresStore.prepare()`, durably, as many rows per transaction as the
servers' transactions held on average in the run just before (bench/postgres.py). After each
run it checks that every event was stored once and reads PostgreSQL's deadlock counter; each
run's lines also say who used the CPU (PostgreSQL, the servers, the clients, other work on the
machine) and what the servers' PostgreSQL sessions were doing (sampled `pg_stat_activity`:
executing, waiting on a lock, or idle in a transaction while the server works). The last line
is then

    ingest-postgres: <N1>/<N2>/<N4> events/s with 1/2/4 servers, <R> of raw COPY

with the median of each configuration, and R the best configuration's median over its raw
COPY median.

`--profile` needs py-spy (`.venv/bin/pip install py-spy`; a tool for investigation, not a
dependency): it records the server while the clients send and prints the functions that take
the most samples, per thread. (cProfile would only see the event loop thread: most of the work
is on the writer thread.)
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec

from idstitch.store.sqlite import open_database

INGEST_TOKEN = "phc_bench_token"
SECRET_KEY = "sk_bench_secret"
START_TIMEOUT = 20.0
REQUEST_TIMEOUT = 60.0

_encode = msgspec.json.Encoder().encode


# -- workload ----------------------------------------------------------------------------------

PAGES = ["/", "/pricing", "/docs", "/docs/getting-started", "/blog", "/blog/launch", "/product/42",
         "/product/7", "/cart", "/checkout", "/account", "/settings", "/search?q=shoes"]
REFERRERS = [("$direct", "$direct"), ("https://www.google.com/", "www.google.com"),
             ("https://news.ycombinator.com/", "news.ycombinator.com"), ("https://t.co/abc", "t.co")]
BROWSERS = [("Chrome", 131, "Mac OS X", "10.15.7", "Desktop"), ("Safari", 18, "iOS", "18.1", "Mobile"),
            ("Firefox", 133, "Windows", "10", "Desktop"), ("Chrome", 130, "Android", "14", "Mobile")]
USER_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36"
)
# Event names of the non-identify events, with their weights.
EVENT_MIX = [("$pageview", 45), ("$autocapture", 25), ("$pageleave", 12), ("product_viewed", 8),
             ("added_to_cart", 5), ("$web_vitals", 5)]


@dataclass
class Visitor:
    anon_id: str
    session_id: str
    window_id: str
    browser: tuple[str, int, str, str, str]
    referrer: tuple[str, str]
    budget: int
    user_id: str | None = None
    utm: dict[str, str] = field(default_factory=dict)

    @property
    def distinct_id(self) -> str:
        return self.user_id or self.anon_id


@dataclass(frozen=True)
class Workload:
    bodies: list[bytes]
    rows: list[tuple[Any, ...]]  # the same events as rows of the `events` table, for the baseline
    visitors: int
    identifies: int
    returning: int


def _uuid7(rng: random.Random, moment: datetime) -> str:
    """A UUIDv7 (48-bit Unix milliseconds, then random bits), as posthog-js makes event and device ids."""
    value = (int(moment.timestamp() * 1000) << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64)
    return str(uuid.UUID(int=value | (0b10 << 62) | rng.getrandbits(62)))


def build_workload(events: int, batch_size: int, seed: int = 1) -> Workload:
    """`events` posthog-js-like events from many visitors, in `batch_size`-event request bodies."""
    rng = random.Random(seed)
    names = [name for name, _ in EVENT_MIX]
    weights = [weight for _, weight in EVENT_MIX]
    start = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)
    users: list[str] = []
    counts = Counter[str]()

    def new_visitor(moment: datetime) -> Visitor:
        counts["visitors"] += 1
        visitor = Visitor(
            anon_id=_uuid7(rng, moment),
            session_id=_uuid7(rng, moment),
            window_id=_uuid7(rng, moment),
            browser=rng.choice(BROWSERS),
            referrer=rng.choice(REFERRERS),
            budget=rng.randint(4, 16),
        )
        if rng.random() < 0.3:
            visitor.utm = {"utm_source": rng.choice(["newsletter", "google", "twitter"]), "utm_medium": "cpc",
                           "utm_campaign": f"spring-{rng.randint(1, 9)}"}
        return visitor

    pool = [new_visitor(start - timedelta(minutes=rng.randint(1, 600))) for _ in range(2000)]
    stream: list[dict[str, Any]] = []
    for index in range(events):
        identify = index % 10 == 9
        moment = start + timedelta(milliseconds=index * 37)
        if identify:
            # An anonymous visitor of the pool logs in; if none is at hand, a new one lands on /login.
            slots = [s for s in rng.sample(range(len(pool)), 20) if pool[s].user_id is None]
            slot = slots[0] if slots else rng.randrange(len(pool))
            if not slots:
                pool[slot] = new_visitor(moment)
        else:
            slot = rng.randrange(len(pool))
        visitor = pool[slot]
        browser, browser_version, os_name, os_version, device = visitor.browser
        path = rng.choice(PAGES)
        properties: dict[str, Any] = {
            "$os": os_name, "$os_version": os_version, "$browser": browser, "$device_type": device,
            "$current_url": f"https://shop.example.com{path}", "$host": "shop.example.com", "$pathname": path,
            "$raw_user_agent": USER_AGENT, "$browser_version": browser_version, "$browser_language": "en-US",
            "$browser_language_prefix": "en", "$screen_height": 1117, "$screen_width": 1728,
            "$viewport_height": 959, "$viewport_width": 1728, "$lib": "web", "$lib_version": "1.194.1",
            "$insert_id": f"{rng.getrandbits(64):016x}", "$time": moment.timestamp(),
            "distinct_id": visitor.distinct_id, "$device_id": visitor.anon_id,
            "$referrer": visitor.referrer[0], "$referring_domain": visitor.referrer[1],
            "$session_id": visitor.session_id, "$window_id": visitor.window_id,
            "$is_identified": visitor.user_id is not None, "$process_person_profile": True,
            "$configured_session_timeout_ms": 1800000, "token": INGEST_TOKEN, **visitor.utm,
        }
        event: dict[str, Any] = {"uuid": _uuid7(rng, moment), "timestamp": moment.isoformat().replace("+00:00", "Z")}
        if identify:
            counts["identifies"] += 1
            if users and rng.random() < 0.2:
                visitor.user_id = rng.choice(users)  # a returning user on a new device: a merge
                counts["returning"] += 1
            else:
                visitor.user_id = f"user-{len(users):06d}"
                users.append(visitor.user_id)
            properties["distinct_id"] = visitor.user_id
            properties["$anon_distinct_id"] = visitor.anon_id
            event.update(
                event="$identify",
                distinct_id=visitor.user_id,
                properties=properties,
                **{"$set": {"email": f"{visitor.user_id}@example.com", "name": f"User {visitor.user_id[5:]}",
                            "plan": rng.choice(["free", "pro", "team"])}},
            )
        else:
            name = rng.choices(names, weights)[0]
            if name == "$autocapture":
                properties.update({"$event_type": "click", "$ce_version": 1,
                                   "$elements_chain": 'button.btn.btn-primary:nth-child="2"text="Add to cart"'})
            elif name in ("product_viewed", "added_to_cart"):
                properties.update({"product_id": rng.randint(1, 500), "price": round(rng.uniform(5, 200), 2)})
            event.update(event=name, distinct_id=visitor.distinct_id, properties=properties)
        stream.append(event)
        visitor.budget -= 1
        if visitor.budget <= 0:  # the visitor leaves; a new one arrives
            pool[slot] = new_visitor(moment)

    bodies = []
    for first in range(0, len(stream), batch_size):
        batch = stream[first : first + batch_size]
        bodies.append(_encode({"api_key": INGEST_TOKEN, "batch": batch, "sent_at": batch[-1]["timestamp"]}))
    received_at = datetime.now(timezone.utc).isoformat()
    stripped = {"distinct_id", "token", "$set"}
    rows = [
        (
            seq, 1, e["uuid"], e["distinct_id"], e["event"], e["timestamp"], received_at,
            e["properties"]["$session_id"], 1,
            _encode({k: v for k, v in e["properties"].items() if k not in stripped}).decode(),
            _encode({"set": e["$set"]}).decode() if "$set" in e else None,
        )
        for seq, e in enumerate(stream, start=1)
    ]
    return Workload(bodies, rows, counts["visitors"], counts["identifies"], counts["returning"])


# -- the server --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`idstitch serve` from this interpreter's environment; stopped by its pid."""

    def __init__(self, data_dir: Path, database: str | None = None, log: Path | None = None) -> None:
        self.data_dir = data_dir
        self.port = _free_port()
        self.log = log or data_dir.parent / "server.log"
        script = Path(sys.executable).parent / "idstitch"
        command = [str(script)] if script.exists() else [sys.executable, "-m", "idstitch.cli"]
        # The ingest rate limit off: this measures the pipeline, not the limiter.
        env = {**os.environ, "IDSTITCH_INGEST_TOKEN": INGEST_TOKEN, "IDSTITCH_SECRET_KEY": SECRET_KEY,
               "IDSTITCH_INGEST_RATE_LIMIT": "0"}
        store = ["--database", database] if database else []
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [*command, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", str(data_dir), *store],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            )
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"idstitch serve exited with {self.process.returncode}:\n{self.log.read_text()}")
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
            try:
                conn.request("GET", "/_health")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            finally:
                conn.close()
            time.sleep(0.05)
        raise RuntimeError(f"idstitch serve did not answer /_health in {START_TIMEOUT}s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


# -- clients -----------------------------------------------------------------------------------


@dataclass
class Run:
    elapsed: float
    latencies: list[float]
    failures: list[str]
    reconnects: int = 0


def send_all(port: int | list[int], bodies: list[bytes], clients: int) -> Run:
    """Send every body once from `clients` clients; each waits for its answer. With several
    ports, body i goes to port i % len(ports) (a round-robin load balancer), and each client
    keeps one keep-alive connection per port."""
    ports = [port] if isinstance(port, int) else port
    lock = threading.Lock()
    next_index = iter(range(len(bodies)))
    latencies: list[float] = []
    failures: list[str] = []
    reconnects = [0]
    headers = {"Content-Type": "application/json"}

    def client() -> None:
        conns = [http.client.HTTPConnection("127.0.0.1", p, timeout=REQUEST_TIMEOUT) for p in ports]
        mine: list[float] = []
        try:
            while True:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                conn = conns[index % len(conns)]
                began = time.perf_counter()
                try:
                    conn.request("POST", "/batch/", bodies[index], headers)
                    response = conn.getresponse()
                except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                    # The server closed this keep-alive connection while it sat idle (uvicorn
                    # does after 5 s, which happens with several servers when a client's turns
                    # keep falling on the others): open another and send again, as a load
                    # balancer does. A request lost for another reason fails the same way twice.
                    conn.close()
                    with lock:
                        reconnects[0] += 1
                    conn.request("POST", "/batch/", bodies[index], headers)
                    response = conn.getresponse()
                answer = response.read()
                mine.append(time.perf_counter() - began)
                if response.status != 200 or answer != b'{"status":1}':
                    with lock:
                        failures.append(f"batch {index}: {response.status} {answer[:300]!r}")
        except OSError as error:
            with lock:
                failures.append(f"client stopped: {error!r}")
        finally:
            for conn in conns:
                conn.close()
            with lock:
                latencies.extend(mine)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(REQUEST_TIMEOUT * len(bodies))
    return Run(time.perf_counter() - began, latencies, failures, reconnects[0])


def stored_events(database: Path) -> tuple[int, int]:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*), count(DISTINCT uuid) FROM events").fetchone()
    finally:
        conn.close()


# -- baseline ----------------------------------------------------------------------------------

INSERT_EVENT = (
    "INSERT INTO events (seq, project_id, uuid, distinct_id, event, timestamp, received_at,"
    " session_id, process_person, properties, ops) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def raw_sqlite_rate(database: Path, rows: list[tuple[Any, ...]], chunk: int = 100) -> float:
    """Rows per second into the server's own schema and pragmas, `chunk` rows per transaction."""
    conn = open_database(database)
    try:
        began = time.perf_counter()
        for first in range(0, len(rows), chunk):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(INSERT_EVENT, rows[first : first + chunk])
            conn.execute("COMMIT")
        return len(rows) / (time.perf_counter() - began)
    finally:
        conn.close()


# -- profile -----------------------------------------------------------------------------------


class Profiler:
    """py-spy recording the server's threads as collapsed stacks, stopped with SIGINT."""

    def __init__(self, pid: int, output: Path, rate: int) -> None:
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
        if spy is None:
            raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy (for investigation only)")
        self.output = output
        self.process = subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw", "--threads",
             "--nonblocking", "--output", str(output)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        time.sleep(1.0)  # let it attach before the clock starts
        if self.process.poll() is not None:
            raise SystemExit(f"py-spy could not attach: {self.process.stderr.read().decode()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _frame(frame: str) -> str:
    """`fn (path/to/module.py:123)` -> `fn (module.py)`, so a function's lines add up."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(where).parts
    short = "/".join(parts[parts.index("site-packages") + 1 :]) if "site-packages" in parts else "/".join(parts[-2:])
    return f"{name} ({short})"


def _is_ours(name: str) -> bool:
    where = name.rpartition(" (")[2]
    return where.startswith(("idstitch/", "ingest/", "server/", "store/"))


def hot_spots(collapsed: Path, top: int) -> str:
    """Self and inclusive shares of samples per function, for the writer thread and the others."""
    by_thread: dict[str, tuple[Counter[str], Counter[str], list[int]]] = {}
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        # py-spy --threads roots each stack at `thread (TID): NAME`.
        root = frames[0].partition("): ")[2] if frames[0].startswith("thread (") else "?"
        thread = {"MainThread": "event loop thread", "idstitch-writer": "writer thread"}.get(root, f"thread {root}")
        frames = [_frame(f) for f in frames if " (" in f and not f.startswith(("thread (", "process "))]
        if not frames:
            continue
        own, inclusive, total = by_thread.setdefault(thread, (Counter(), Counter(), [0]))
        count = int(count_text)
        total[0] += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    every = sum(total[0] for _, _, total in by_thread.values()) or 1
    out = []
    for thread, (own, inclusive, total) in sorted(by_thread.items(), key=lambda item: -item[1][2][0]):
        out.append(f"\n{thread}: {total[0] / every:.0%} of the server's samples")
        out.append(f"  {'self':>6} {'total':>6}  function (file)")
        for name, count in own.most_common(top):
            out.append(f"  {count / every:6.1%} {inclusive[name] / every:6.1%}  {name}")
        out.append("  -- largest inclusive (idstitch code) --")
        ours = [(n, c) for n, c in inclusive.most_common() if _is_ours(n)]
        for name, count in ours[:top]:
            out.append(f"  {own[name] / every:6.1%} {count / every:6.1%}  {name}")
    return "\n".join(out)


# -- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events to send (default 200,000)")
    parser.add_argument("--batch-size", type=int, default=100, help="events per request (default 100)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client connections (default 4)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="record the server with py-spy and print hot spots")
    parser.add_argument("--profile-rate", type=int, default=100, help="py-spy samples per second (default 100)")
    parser.add_argument("--profile-output", type=Path, help="keep py-spy's collapsed stacks in this file")
    parser.add_argument("--top", type=int, default=15, help="functions to list per thread with --profile")
    store = parser.add_argument_group("PostgreSQL (instead of the SQLite data directory)")
    store.add_argument("--database", metavar="URL",
                       help="a PostgreSQL cluster (postgresql://...) to make fresh databases on; needs CREATEDB")
    store.add_argument("--postgres", action="store_true", help="start a throwaway PostgreSQL for the run")
    store.add_argument("--servers", type=_counts, help="server processes per configuration (default 1,2,4)")
    store.add_argument("--repeat", type=int, help="runs of each configuration (default 3)")
    args = parser.parse_args(argv)
    postgres_mode = bool(args.database or args.postgres)
    if args.database and args.postgres:
        parser.error("give --database or --postgres, not both")
    if not postgres_mode and (args.servers or args.repeat):
        parser.error("--servers and --repeat measure PostgreSQL: add --postgres or --database")
    if args.database and not args.database.startswith(("postgresql://", "postgres://")):
        parser.error(f"--database {args.database!r} is not a PostgreSQL URL (postgresql://user@host/db)")

    began = time.perf_counter()
    workload = build_workload(args.events, args.batch_size, args.seed)
    size = sum(len(b) for b in workload.bodies)
    kib = size / len(workload.bodies) / 1024
    print(f"workload: {args.events} events in {len(workload.bodies)} requests ({kib:.0f} KiB each),"
          f" {workload.visitors} visitors, {workload.identifies} $identify ({workload.returning} returning users),"
          f" built in {time.perf_counter() - began:.1f}s", flush=True)
    if postgres_mode:
        return main_postgres(args, workload)

    scratch = Path(tempfile.mkdtemp(prefix="idstitch-bench-"))
    try:
        server = Server(scratch / "data")
        profiler = None
        try:
            if args.profile:
                output = args.profile_output or scratch / "profile.txt"
                profiler = Profiler(server.process.pid, output, args.profile_rate)
            run = send_all(server.port, workload.bodies, args.clients)
            if profiler is not None:
                profiler.stop()
        finally:
            if profiler is not None:
                profiler.stop()
            server.stop()
        if run.failures:
            print(f"{len(run.failures)} failures, the first: {run.failures[0]}", file=sys.stderr)
            return 1
        count, distinct = stored_events(scratch / "data" / "idstitch.db")
        if (count, distinct) != (args.events, args.events):
            print(f"stored {count} events ({distinct} distinct), expected {args.events}", file=sys.stderr)
            return 1
        raw_rate = raw_sqlite_rate(scratch / "raw.db", workload.rows)
        if args.profile:
            print(hot_spots(profiler.output, args.top) if profiler else "")
            if args.profile_output:
                print(f"\ncollapsed stacks: {args.profile_output} (flamegraph.pl or speedscope.app read them)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    rate = args.events / run.elapsed
    latencies = sorted(run.latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print()
    print(f"{'measure':<34} {'value':>14}")
    print(f"{'events sent and stored':<34} {args.events:>14,}")
    print(f"{'clients x events per request':<34} {f'{args.clients} x {args.batch_size}':>14}")
    print(f"{'wall time (s)':<34} {run.elapsed:>14.2f}")
    print(f"{'requests/s':<34} {len(workload.bodies) / run.elapsed:>14,.0f}")
    p50 = statistics.median(latencies)
    print(f"{'request latency p50 / p99 (ms)':<34} {f'{p50 * 1000:.0f} / {p99 * 1000:.0f}':>14}")
    print(f"{'idstitch ingest (events/s)':<34} {rate:>14,.0f}")
    print(f"{'raw SQLite insert (rows/s)':<34} {raw_rate:>14,.0f}")
    print(f"ingest: {rate:.0f} events/s, {rate / raw_rate:.2f} of raw SQLite insert rate")
    return 0



# -- PostgreSQL --------------------------------------------------------------------------------


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected server counts like 1,2,4, not {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"server counts must be 1 or more, not {text!r}")
    return counts


@dataclass
class Measured:
    """One run of one configuration: idstitch on `servers` servers, then its raw COPY baseline."""

    servers: int
    rate: float
    p50: float
    p99: float
    events_per_commit: float
    commit_spread: tuple[int, int, int]
    raw_chunk: int
    raw_rate: float
    deadlocks: int
    reconnects: int
    cpu: Any
    raw_cpu: Any
    waits: Any

    def postgres_ms_per_1000(self) -> tuple[float, float] | None:
        """PostgreSQL's CPU milliseconds per 1,000 events: idstitch's run, and raw COPY's."""
        if self.cpu.postgres is None or self.raw_cpu is None or self.raw_cpu.postgres is None:
            return None
        return self.cpu.postgres / self.rate * 1e6, self.raw_cpu.postgres / self.raw_rate * 1e6


def _run_servers(pg: Any, cluster: Any, workload: Workload, rows: list[tuple[Any, ...]], servers: int,
                 args: argparse.Namespace, scratch: Path, profile_into: Path | None) -> Measured:
    """idstitch on `servers` servers sharing a fresh database, checked, then raw COPY into another."""
    name, dsn = cluster.fresh_database(f"{servers}s")
    try:
        running: list[Server] = []
        profilers: list[Profiler] = []
        try:
            for k in range(servers):
                # One at a time: the first creates the schema and the default project.
                running.append(Server(scratch / f"data-{k}", database=dsn, log=scratch / f"server-{servers}-{k}.log"))
            if profile_into is not None:
                profilers = [Profiler(s.process.pid, profile_into.with_suffix(f".{k}"), args.profile_rate)
                             for k, s in enumerate(running)]
            meter = pg.CpuMeter(cluster.process_ids, [s.process.pid for s in running])
            sampler = pg.WaitSampler(dsn)
            sampler.start()
            meter.start()
            run = send_all([s.port for s in running], workload.bodies, args.clients)
            cpu = meter.stop()
            waits = sampler.stop()
        finally:
            for profiler in profilers:
                profiler.stop()
            for server in running:
                server.stop()
        if run.failures:
            raise RuntimeError(f"{len(run.failures)} failures, the first: {run.failures[0]}")
        stored = pg.stored_events(dsn)
        if (stored.events, stored.distinct_uuids, stored.uuid_rows) != (args.events,) * 3:
            raise RuntimeError(f"stored {stored.events} events ({stored.distinct_uuids} distinct uuids,"
                               f" {stored.uuid_rows} in event_uuids), expected {args.events}")
        matching, sampled = pg.sample_matches(dsn, rows)
        if matching != sampled:
            raise RuntimeError(f"only {matching} of {sampled} sampled baseline rows equal the stored ones")
        deadlocks = cluster.deadlocks(name)
    finally:
        cluster.drop_database(name)
    if profile_into is not None:
        # All servers' stacks in one file: their threads add up by name.
        parts = sorted(profile_into.parent.glob(profile_into.name + ".*"))
        profile_into.write_text("".join(part.read_text() for part in parts))
        for part in parts:
            part.unlink()
    chunk = max(1, round(stored.events_per_transaction))
    raw_name, raw_dsn = cluster.fresh_database(f"raw{servers}s")
    try:
        raw_rate, raw_cpu = pg.raw_copy_rate(raw_dsn, rows, chunk, pg.CpuMeter(cluster.process_ids, []))
    finally:
        cluster.drop_database(raw_name)
    latencies = sorted(run.latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return Measured(servers, args.events / run.elapsed, statistics.median(latencies), p99,
                    stored.events_per_transaction, stored.per_transaction, chunk, raw_rate, deadlocks, run.reconnects, cpu, raw_cpu, waits)


def main_postgres(args: argparse.Namespace, workload: Workload) -> int:
    import postgres as pg  # bench/postgres.py: imports psycopg, so only in this mode

    counts = args.servers or [1, 2, 4]
    repeat = args.repeat or 3
    rows = pg.event_rows(workload.bodies, datetime.now(timezone.utc))
    for servers in counts:
        if servers > 1:
            across, returning = pg.identities_across_servers(workload.bodies, servers)
            print(f"{servers} servers: {across} of the {returning} users identified more than once"
                  f" were identified on more than one server", flush=True)
    cluster = pg.Cluster.start_own() if args.postgres else pg.Cluster(args.database)
    scratch = Path(tempfile.mkdtemp(prefix="idstitch-bench-"))
    measured: dict[int, list[Measured]] = {servers: [] for servers in counts}
    failed = False
    try:
        print(cluster.describe(), flush=True)
        for attempt in range(1, repeat + 1):
            for servers in counts:
                profile_into = scratch / f"profile-{servers}" if args.profile and attempt == 1 else None
                m = _run_servers(pg, cluster, workload, rows, servers, args, scratch, profile_into)
                measured[servers].append(m)
                print(f"run {attempt}/{repeat}, {servers} server{'s' if servers > 1 else ' '}: {m.rate:8,.0f} events/s"
                      f" (p50/p99 {m.p50 * 1000:.0f}/{m.p99 * 1000:.0f} ms, {m.events_per_commit:.0f} events/commit,"
                      f" p10/p50/p90 {'/'.join(map(str, m.commit_spread))}),"
                      f" raw COPY {m.raw_rate:8,.0f} rows/s ({m.raw_chunk} rows/commit), deadlocks {m.deadlocks},"
                      f" reconnects {m.reconnects};\n    cores: {m.cpu};\n    sessions: {m.waits}", flush=True)
                if profile_into is not None:
                    print(f"\nprofile, {servers} server(s), all servers' samples together (this run's rate is perturbed):")
                    print(hot_spots(profile_into, args.top) + "\n", flush=True)
                    if args.profile_output:
                        target = args.profile_output.with_name(f"{args.profile_output.name}.{servers}")
                        shutil.copyfile(profile_into, target)
                        print(f"collapsed stacks: {target}")
    except RuntimeError as error:
        failed = True
        print(f"{error}\n(the servers' logs: {scratch}/server-*.log)", file=sys.stderr)
        return 1
    finally:
        if not failed:
            shutil.rmtree(scratch, ignore_errors=True)
        cluster.stop()

    medians = {servers: statistics.median(m.rate for m in runs) for servers, runs in measured.items()}
    raw_medians = {servers: statistics.median(m.raw_rate for m in runs) for servers, runs in measured.items()}
    deadlocks = sum(m.deadlocks for runs in measured.values() for m in runs)
    print()
    print(f"{args.events:,} events, {args.clients} clients x {args.batch_size} events per request, {repeat} runs each;"
          " rates min / median / max")
    print(f"{'servers':>7} {'idstitch events/s':>27} {'vs 1':>5} {'events/commit':>13} {'raw COPY rows/s':>27}"
          f" {'of raw':>6}  cores: postgres/servers/clients/other (median)")
    for servers, runs in measured.items():
        low, mid, high = pg.spread([m.rate for m in runs])
        raw_low, raw_mid, raw_high = pg.spread([m.raw_rate for m in runs])
        cores = "/".join(
            "n/a" if any(getattr(m.cpu, part) is None for m in runs)
            else f"{statistics.median(getattr(m.cpu, part) for m in runs):.2f}"
            for part in ("postgres", "servers", "clients", "other")
        )
        speedup = f"{mid / medians[counts[0]]:.2f}" if counts[0] == 1 else "-"
        print(f"{servers:>7} {f'{low:,.0f} / {mid:,.0f} / {high:,.0f}':>27} {speedup:>5}"
              f" {statistics.median(m.events_per_commit for m in runs):>13.0f}"
              f" {f'{raw_low:,.0f} / {raw_mid:,.0f} / {raw_high:,.0f}':>27} {mid / raw_mid:>6.2f}  {cores}")
    costs = {servers: [c for m in runs if (c := m.postgres_ms_per_1000())] for servers, runs in measured.items()}
    if all(costs.values()):
        print("PostgreSQL CPU ms per 1,000 events (median), idstitch vs raw COPY: " + ", ".join(
            f"{servers} server{'s' if servers > 1 else ''} {statistics.median(c[0] for c in found):.0f}"
            f" vs {statistics.median(c[1] for c in found):.0f}" for servers, found in costs.items()))
    print(f"deadlocks detected by PostgreSQL: {deadlocks}")
    best = max(medians, key=lambda servers: medians[servers])
    rates = "/".join(f"{medians[servers]:.0f}" for servers in counts)
    print(f"ingest-postgres: {rates} events/s with {'/'.join(map(str, counts))} servers,"
          f" {medians[best] / raw_medians[best]:.2f} of raw COPY")
    return 1 if deadlocks else 0

if __name__ == "__main__":
    sys.exit(main())
