"""Query benchmark: a realistic data set through the real write path, then the read questions.

    .venv/bin/python bench/query.py                      # 1,000,000 events, 100,000 persons
    .venv/bin/python bench/query.py --events 200000      # quicker
    .venv/bin/python bench/query.py --database /tmp/q/idstitch.db  # keep (or reuse) the data

The data: one person per ten events; 30% of persons identify (with `plan`, `email`, `name`,
`total_spend` attributes and a `Signed up` event), a third of them later buy (`Purchase` events
that `add` to `total_spend`); a person has one to three devices, each with its own anonymous id,
and logs in on each device (so devices merge into one person); events come in sessions of 2-8
events with posthog-js-like properties, over 90 days. Events per person have a long tail (Pareto),
so some persons have hundreds of events.

Loading goes through the real write path without HTTP: the wire commands (`Track`, `Identify`)
are applied by `ingest_function` (engine + SQLitePersons, sessions upsert included) in
transactions of about 10,000 events split into 100-event requests, as the group commit does.
Only durability differs: the load runs with `synchronous=OFF` (the server uses FULL), so the load
rate printed is the engine's, not the server's.

The questions run on a read-only connection like the server's readers, calling the same
functions the API routes call (no HTTP: add ~1 ms per request for the ASGI stack):

* person timeline across all its ids (`reads.events_page`, 100 newest events) for random persons
* person lookup by a random distinct id (`GET /api/persons?distinct_id=`)
* filtered person lists (first page of 100), session lists
* counts: new persons per month by `plan` over all persons; unique sign-ups per week by `plan`

Then the analytics questions over HTTP, on the in-process app (`create_app`, as `make serve` runs
it on this data directory, no network): once with the analytics copy off (the store answers: the
baseline) and once with the embedded DuckDB copy, which the app's own feeder fills from nothing
first (timed). Each question is asked `--repeat` times of each side: the `/api/counts` breakdown
(unique sign-ups per day by `plan`), events per day over 30 days, persons who did `$pageview` at
least 5 times, a typed-date plus equality person filter, and two of the UI's segment charts
(`GET /ui/segments`: chart, persons preview and count), of a `did` filter (the heaviest, the one
the last line reports) and of a person attribute. `--no-analytics` skips it.

The last two lines are always

    query: timeline p99 <ms> ms, breakdown <ms> ms at <N> events
    analytics: breakdown <ms> ms, chart <ms> ms at <N> events on duckdb
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from idstitch.analytics.duckdb_engine import ANALYTICS_FILE
from idstitch.attributes import AttributeOps, OperationContext, PersonAttributes
from idstitch.commands import INGEST, Command, Event, Identify, Track
from idstitch.engine import LinkEntry, PersonCache, PersonRow, StoredEvent
from idstitch.first_touch import apply_event_operations, lifted_properties
from idstitch.identity import Action, Holder, LinkKind, decide_link
from idstitch.ids import person_id_for
from idstitch.ingest.pipeline import WriteContext, ingest_function
from idstitch.outcomes import WarningRecord
from idstitch.query import counts, people, sessions
from idstitch.query.compiler import EVENTS, PERSONS, SESSIONS, Compiler, where_clause
from idstitch.query.filters import parse_filter
from idstitch.query.patterns import PatternGuard
from idstitch.server.app import create_app
from idstitch.server.state import ServerConfig
from idstitch.settings import ProjectSettings
from idstitch.store import reads
from idstitch.store.projects import ensure_default_project, project_by_id
from idstitch.store.sqlite import DATABASE_FILE, SQLitePersons, SQLiteWriteSession, max_seq, open_database

with warnings.catch_warnings():  # Starlette's notice that httpx2 will replace httpx under its TestClient
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

START = datetime(2026, 8, 1, tzinfo=timezone.utc)
SPAN_DAYS = 90
NOW = START + timedelta(days=SPAN_DAYS + 1)
PAGES = ["/", "/pricing", "/docs", "/docs/start", "/blog", "/blog/launch", "/product/42", "/product/7", "/cart",
         "/checkout", "/account", "/settings"]
BROWSERS = [("Chrome", "Mac OS X", "Desktop"), ("Safari", "iOS", "Mobile"), ("Firefox", "Windows", "Desktop"),
            ("Chrome", "Android", "Mobile")]
REFERRERS = ["$direct", "https://www.google.com/", "https://news.ycombinator.com/", "https://t.co/x"]
PLANS = [("free", 55), ("pro", 30), ("team", 10), ("enterprise", 5)]
NAMES = [("$pageview", 55), ("$autocapture", 25), ("$pageleave", 15), ("product_viewed", 5)]
REQUEST = 100
TRANSACTION = 10_000
SECRET_KEY = "sk_bench"


# -- the data set ---------------------------------------------------------------------------------

# One event of a person's life; `anonymous_id` is set on `$identify` events (identify(user, anon)).
Step = tuple[Event, "str | None"]


def _pick(rng: random.Random, weighted: list[tuple[str, int]]) -> str:
    roll = rng.random() * sum(w for _, w in weighted)
    for value, weight in weighted:
        roll -= weight
        if roll < 0:
            return value
    return weighted[-1][0]


def person_life(rng: random.Random, index: int, budget: int) -> list[Step]:
    """One person's events in time order: devices, sessions, a login on each device, purchases."""
    devices = []
    for d in range(1 + (rng.random() < 0.35) + (rng.random() < 0.1)):
        devices.append((f"{rng.getrandbits(64):016x}{index:07d}{d}", rng.choice(BROWSERS), rng.choice(REFERRERS)))
    identified = rng.random() < 0.3
    user_id = f"user-{index:07d}"
    buyer = identified and rng.random() < 0.35
    moment = START + timedelta(days=rng.uniform(0, SPAN_DAYS * 0.8))
    login_at = max(1, int(budget * rng.uniform(0.1, 0.6))) if identified else budget + 1
    logged_in: set[int] = set()
    steps: list[Step] = []
    session_no = 0
    while len(steps) < budget:
        device = session_no % len(devices) if session_no < len(devices) else rng.randrange(len(devices))
        anon, (browser, os_name, kind), referrer = devices[device]
        session_id = f"{anon[:16]}-{session_no}"
        session_no += 1
        for _ in range(min(budget - len(steps), rng.randint(2, 8))):
            moment += timedelta(seconds=rng.randint(20, 240))
            properties = {"$current_url": f"https://shop.example.com{rng.choice(PAGES)}", "$browser": browser,
                          "$os": os_name, "$device_type": kind, "$device_id": anon, "$referrer": referrer,
                          "$session_id": session_id}
            uid = f"{rng.getrandbits(128):032x}"
            if len(steps) >= login_at and device not in logged_in:
                ops = AttributeOps()
                if not logged_in:
                    ops = AttributeOps(set={
                        "email": f"{user_id}@example.com", "name": f"Customer {index}", "plan": _pick(rng, PLANS),
                        "signed_up_at": moment.isoformat(), "total_spend": 0,
                    })
                logged_in.add(device)
                steps.append((Event(uid, user_id, "$identify", moment, properties, ops, True, session_id), anon))
                if len(logged_in) == 1 and len(steps) < budget:
                    moment += timedelta(seconds=5)
                    steps.append((Event(f"{uid[:-1]}s", user_id, "Signed up", moment, properties, session_id=session_id), None))
                continue
            name, ops = _pick(rng, NAMES), AttributeOps()
            if buyer and device in logged_in and rng.random() < 0.2:
                amount = round(rng.uniform(5, 120), 2)
                name, properties = "Purchase", {**properties, "amount": amount, "currency": "EUR"}
                ops = AttributeOps(add={"total_spend": amount})
            distinct_id = user_id if device in logged_in else anon
            steps.append((Event(uid, distinct_id, name, moment, properties, ops, True, session_id), None))
        moment += timedelta(hours=rng.expovariate(1 / 40))
    return steps


def lives(events: int, seed: int) -> Iterator[list[list[Step]]]:
    """Chunks of persons' lives, about TRANSACTION events each. Events per person: Pareto, mean 10."""
    rng = random.Random(seed)
    persons = max(1, events // 10)
    budgets = [max(1, min(1500, int(rng.paretovariate(1.5) * 3.4))) for _ in range(persons)]
    scale = events / sum(budgets)
    budgets = [max(1, round(b * scale)) for b in budgets]
    chunk: list[list[Step]] = []
    size = 0
    for index, budget in enumerate(budgets):
        chunk.append(person_life(rng, index, budget))
        size += len(chunk[-1])
        if size >= TRANSACTION:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _project(conn: sqlite3.Connection) -> tuple[int, ProjectSettings]:
    project = ensure_default_project(conn, START, ingest_token="phc_bench", secret_key=SECRET_KEY).project
    found = project_by_id(conn, project.id)
    assert found is not None
    return found.id, found.settings


def engine_load(path: Path, events: int, seed: int) -> int:
    """Apply the lives as wire commands through `ingest_function` (the engine), 100 per request,
    with the lives of a chunk interleaved in time order as concurrent visitors would be."""
    session = SQLiteWriteSession(path, lambda: NOW)
    session.conn.execute("PRAGMA synchronous = OFF")
    project_id, settings = _project(session.conn)
    # The writer keeps one person cache across its transactions (engine.PersonCache).
    cache = PersonCache()
    stored = 0
    for chunk in lives(events, seed):
        steps = sorted((step for life in chunk for step in life), key=lambda step: step[0].timestamp)
        commands: list[Command] = [
            Identify(event, user_id=event.distinct_id, anonymous_id=anon) if anon else Track(event) for event, anon in steps
        ]
        session.begin([])
        context = WriteContext(session, lambda: NOW, cache)
        for start in range(0, len(commands), REQUEST):
            ingest_function(project_id, settings, commands[start : start + REQUEST], [])(context)
        session.commit()
        stored += len(commands)
        _progress(stored)
    session.close()
    return stored


@dataclass
class _Person:
    row: PersonRow
    ids: dict[str, tuple[bool, datetime]]  # distinct id -> (is user id, mapped at)
    attributes: PersonAttributes


def bulk_load(path: Path, events: int, seed: int) -> int:
    """The same rows as `engine_load`, written with the store's own batch functions
    (`SQLitePersons`: events and the sessions upsert, persons, mapping, attributes, links, warnings).

    Identity decisions come from the real rules (`decide_link`), attribute values from the real
    `apply_operations` and `merged_under`; what it skips is the engine's per-event bookkeeping.
    Valid for this workload only: each life's ids are its own and its events come in time order,
    so first-touch attributes need only the first event of each person (a later `set_once`
    never wins). tests/query/test_bench_loader.py checks it writes what the engine writes."""
    conn = open_database(path)
    conn.execute("PRAGMA synchronous = OFF")
    project_id, settings = _project(conn)
    policy = settings.attribute_policy
    counter = [max_seq(conn)]

    def take_seq() -> int:
        counter[0] += 1
        return counter[0]

    stored = 0
    for chunk in lives(events, seed):
        conn.execute("BEGIN IMMEDIATE")
        store = SQLitePersons(conn, project_id, lambda: NOW, take_seq)
        kept: list[StoredEvent] = []
        links: list[LinkEntry] = []
        warnings: list[WarningRecord] = []
        persons: list[_Person] = []
        for life in chunk:
            owner: dict[str, _Person] = {}
            alive: dict[str, _Person] = {}

            def new_person(distinct_id: str, when: datetime, identified: bool, is_user_id: bool) -> _Person:
                person = _Person(PersonRow(person_id_for(project_id, distinct_id), when, identified), {}, PersonAttributes())
                person.ids[distinct_id] = (is_user_id, when)
                owner[distinct_id] = alive[person.row.person_id] = person
                return person

            def holder(distinct_id: str) -> Holder | None:
                person = owner.get(distinct_id)
                if person is None:
                    return None
                user_ids = [d for d, (is_user, _) in person.ids.items() if is_user]
                return Holder(person.row.person_id, person.row.is_identified, len(user_ids), distinct_id in user_ids)

            for event, anon in life:
                seq = take_seq()
                if anon is not None:
                    target, source = event.distinct_id, anon
                    decision = decide_link(LinkKind.IDENTIFY, target, source, holder(target), holder(source),
                                           max_user_ids=settings.max_user_ids, illegal=settings.illegal, event_uuid=event.uuid)
                    warnings += decision.warnings
                    target_person, source_person = owner.get(target), owner.get(source)
                    source_person_id = source_person.row.person_id if source_person else None
                    when = event.timestamp
                    person = target_person
                    if decision.action is Action.CREATE_BOTH:
                        person = new_person(target, when, True, decision.target_becomes_user_id)
                        person.ids[source] = (False, when)
                        owner[source] = person
                    elif decision.action is Action.ATTACH_SOURCE:
                        assert target_person is not None
                        target_person.ids[source] = (False, when)
                        owner[source] = target_person
                    elif decision.action is Action.ATTACH_TARGET:
                        assert source_person is not None
                        person = source_person
                        person.ids[target] = (decision.target_becomes_user_id, when)
                        owner[target] = person
                    elif decision.action is Action.MERGE:
                        assert target_person is not None and source_person is not None
                        target_person.attributes = source_person.attributes.merged_under(target_person.attributes)
                        target_person.row.created_at = min(target_person.row.created_at, source_person.row.created_at)
                        for distinct_id, mapped in source_person.ids.items():
                            target_person.ids[distinct_id] = mapped
                            owner[distinct_id] = target_person
                        del alive[source_person.row.person_id]
                    elif decision.action is Action.CREATE_TARGET_ALONE:
                        person = new_person(target, when, True, decision.target_becomes_user_id)
                    if person is not None and decision.outcome is not None:
                        if decision.mark_identified:
                            person.row.is_identified = True
                        if decision.target_becomes_user_id and owner.get(target) is person:
                            person.ids[target] = (True, person.ids[target][1])
                    if decision.outcome is not None:
                        links.append(LinkEntry(
                            LinkKind.IDENTIFY.value, str(INGEST), target, source,
                            person.row.person_id if person else None, source_person_id, event.uuid,
                            decision.row, decision.outcome, decision.reason,
                        ))
                kept.append(StoredEvent(seq, event))
                person = owner.get(event.distinct_id)
                if person is None:
                    person = new_person(event.distinct_id, event.timestamp, False, False)
                person.row.created_at = min(person.row.created_at, event.timestamp)
                context = OperationContext(event.timestamp, seq, event.uuid, event.distinct_id,
                                           any(is_user for is_user, _ in person.ids.values()))
                lifted = lifted_properties(event.properties, event.name)
                applied = apply_event_operations(person.attributes, event.name, lifted, event.ops, context, policy).explicit
                if applied is not None:
                    warnings += applied.warnings
            persons += alive.values()
        store.insert_events(kept)
        store.save_persons([person.row for person in persons], new=True)
        store.map_distinct_ids([
            (distinct_id, person.row.person_id, is_user_id, mapped_at)
            for person in persons for distinct_id, (is_user_id, mapped_at) in person.ids.items()
        ])
        store.save_attributes([
            (person.row.person_id, key, attribute) for person in persons for key, attribute in person.attributes.items.items()
        ])
        for link in links:
            store.insert_link(link)
        if warnings:
            store.insert_warnings(warnings)
        conn.execute("COMMIT")
        stored += len(kept)
        _progress(stored)
    conn.close()
    return stored


_started = [0.0]


def _progress(stored: int) -> None:
    if not _started[0]:
        _started[0] = time.perf_counter()
    rate = stored / max(1e-9, time.perf_counter() - _started[0])
    print(f"\r  loaded {stored:,} events ({rate:,.0f}/s)   ", end="", file=sys.stderr, flush=True)


# -- the questions ----------------------------------------------------------------------------------


def timed(fn: Callable[[], Any], repeat: int = 1) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def measure(path: Path, samples: int, seed: int) -> tuple[list[tuple[str, str]], float, float]:
    conn = open_database(path, read_only=True)
    PatternGuard().install(conn)
    project_id = conn.execute("SELECT id FROM projects ORDER BY id LIMIT 1").fetchone()[0]
    rng = random.Random(seed)
    rows: list[tuple[str, str]] = []
    stats = conn.execute(
        "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM persons),"
        " (SELECT count(*) FROM persons WHERE is_identified), (SELECT count(*) FROM distinct_ids),"
        " (SELECT count(*) FROM sessions)"
    ).fetchone()
    n_events, n_persons, n_identified, n_ids, n_sessions = stats
    rows += [("events / persons / identified", f"{n_events:,} / {n_persons:,} / {n_identified / max(1, n_persons):.0%}"),
             ("distinct ids / sessions", f"{n_ids:,} / {n_sessions:,}"),
             ("database size", f"{os.path.getsize(path) / 2**20:,.0f} MiB")]

    max_rowid = conn.execute("SELECT max(rowid) FROM persons").fetchone()[0]
    person_ids = [r[0] for r in conn.execute(
        f"SELECT id FROM persons WHERE rowid IN ({','.join('?' * samples)})",
        [rng.randint(1, max_rowid) for _ in range(samples)],
    )]
    timeline = [t for pid in person_ids for t in timed(lambda: reads.events_page(conn, project_id, pid, 100, None))]
    heavy = [r[0] for r in conn.execute(
        "SELECT d.person_id FROM events e JOIN distinct_ids d ON d.project_id = e.project_id AND d.distinct_id = e.distinct_id"
        " GROUP BY d.person_id ORDER BY count(*) DESC LIMIT 20"
    )] if n_events <= 2_000_000 else person_ids[:20]
    heavy_timeline = [t for pid in heavy for t in timed(lambda: reads.events_page(conn, project_id, pid, 100, None))]
    rows.append(("timeline p50 / p99 (ms)", f"{percentile(timeline, 50):.2f} / {percentile(timeline, 99):.2f}"))
    rows.append(("timeline, 20 heaviest persons, max (ms)", f"{max(heavy_timeline):.2f}"))

    max_id = conn.execute("SELECT count(*) FROM distinct_ids").fetchone()[0]
    offsets = [rng.randrange(max_id) for _ in range(samples)]
    distinct = [conn.execute("SELECT distinct_id FROM distinct_ids LIMIT 1 OFFSET ?", (o,)).fetchone()[0] for o in offsets[:200]]

    def lookup(distinct_id: str) -> None:
        person_id = reads.person_id_for_distinct_id(conn, project_id, distinct_id)
        assert person_id is not None
        reads.person(conn, project_id, person_id)

    lookups = [t for d in distinct for t in timed(lambda: lookup(d))]
    rows.append(("lookup by distinct id p50 / p99 (ms)", f"{percentile(lookups, 50):.2f} / {percentile(lookups, 99):.2f}"))

    def person_list(document: dict[str, Any]) -> float:
        node = parse_filter(document)

        def run() -> None:
            where = where_clause(Compiler(conn, project_id, NOW), PERSONS, node, None)
            people.persons_page(conn, project_id, where, 100, None)

        return statistics.median(timed(run, 3))

    spenders = {"and": [{"attribute": "plan", "op": "equals", "value": "pro"},
                        {"attribute": "total_spend", "op": "gt", "value": 100}]}
    recent_buyers = {"did": "Purchase", "after": "-30d"}
    by_email = {"and": [{"attribute": "email", "op": "regex", "value": "^user-00[0-4]"},
                        {"attribute": "signed_up_at", "op": "after", "value": "2026-09-01"}]}
    rows.append(("persons: plan=pro and total_spend>100 (ms)", f"{person_list(spenders):.1f}"))
    rows.append(("persons: did Purchase in last 30 days (ms)", f"{person_list(recent_buyers):.1f}"))
    rows.append(("persons: email regex, signed up after date (ms)", f"{person_list(by_email):.1f}"))

    def session_list(**kwargs: Any) -> float:
        def run() -> None:
            where = where_clause(Compiler(conn, project_id, NOW), SESSIONS, None, None)
            sessions.sessions_page(conn, project_id, where, limit=100, **kwargs)

        return statistics.median(timed(run, 3))

    rows.append(("sessions: newest 100 with flags (ms)", f"{session_list():.1f}"))
    rows.append(("sessions: inferred, newest 100 (ms)", f"{session_list(inferred=True):.1f}"))
    per_person = [t for pid in person_ids[:100] for t in timed(lambda: session_list(person_id=pid))]
    rows.append(("sessions of a person p99 (ms)", f"{percentile(per_person, 99):.1f}"))

    def count(spec: counts.CountSpec) -> float:
        target = PERSONS if spec.measure == "new_persons" else EVENTS

        def run() -> None:
            compiler = Compiler(conn, project_id, NOW)
            counts.count(conn, project_id, spec, compiler.compile(None, target), NOW)

        return statistics.median(timed(run, 3))

    breakdown = count(counts.CountSpec("new_persons", interval="month", breakdown_attribute="plan"))
    rows.append(("new persons per month by plan, all persons (ms)", f"{breakdown:.0f}"))
    signups = counts.CountSpec("persons", events=("Signed up",), interval="week", breakdown_attribute="plan")
    recent = counts.CountSpec("events", interval="day", after=NOW - timedelta(days=30))
    rows.append(("unique sign-ups per week by plan (ms)", f"{count(signups):.0f}"))
    rows.append(("events per day, last 30 days (ms)", f"{count(recent):.0f}"))
    conn.close()
    return rows, percentile(timeline, 99), breakdown


# -- the analytics engine, over HTTP -----------------------------------------------------------------

SIGN_UPS_BY_PLAN = {"measure": "persons", "events": ["Signed up"], "interval": "day", "breakdown": {"attribute": "plan"}}
ANALYTICS_QUESTIONS: dict[str, dict[str, Any]] = {
    "unique sign-ups per day by plan (/api/counts)": SIGN_UPS_BY_PLAN,
    "events per day, last 30 days": {"measure": "events", "interval": "day", "after": "-30d"},
    "persons who did $pageview >= 5 times": {"measure": "persons", "interval": "total",
                                             "filter": {"did": "$pageview", "min_count": 5}},
    "unique users per day, plan=pro and signed up after a date": {
        "measure": "persons", "interval": "day",
        "filter": {"and": [{"attribute": "plan", "op": "equals", "value": "pro"},
                           {"attribute": "signed_up_at", "op": "after", "value": "2026-09-01"}]},
    },
}
# The UI's segment charts (GET /ui/segments: the chart, a preview of the persons and their count).
# The first is the heaviest: unique users per day by plan, of the persons who viewed pages at
# least 5 times; the second a segment of a person attribute, new users per day (the default).
CHARTS: dict[str, dict[str, str]] = {
    "the UI's segment chart, did $pageview >= 5 by plan": {
        "action": "json", "filter_json": json.dumps({"did": "$pageview", "min_count": 5}),
        "measure": "persons", "events": "$pageview", "interval": "day", "after": "-30d", "breakdown": "plan",
    },
    "the UI's segment chart, plan = pro": {
        "action": "json", "filter_json": json.dumps({"attribute": "plan", "op": "equals", "value": "pro"}),
    },
}


@dataclass
class Side:
    """One app's answers: the engine that answered, times (ms) and answers per question."""

    engine: str = ""
    times: dict[str, list[float]] = field(default_factory=dict)
    answers: dict[str, Any] = field(default_factory=dict)


def _signed_in(client: TestClient) -> None:
    page = client.get("/ui/login")
    nonce = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    answer = client.post("/ui/login", data={"csrf_token": nonce, "secret_key": SECRET_KEY}, follow_redirects=False)
    assert answer.status_code == 303, answer.text


def _caught_up(client: TestClient, patience: float = 60) -> float:
    """Seconds until the app's feeder has filled the copy (given up after `patience` seconds
    without progress)."""
    started = moved = time.perf_counter()
    seen: tuple[int, str | None] = (-1, None)
    while True:
        lag = client.get("/api/status").json()["analytics"]["lag"]
        if lag["caught_up"]:
            return time.perf_counter() - started
        if (lag["seq"], lag["error"]) != seen:  # events copied, or persons ("making the first copy: …")
            seen, moved = (lag["seq"], lag["error"]), time.perf_counter()
        elif time.perf_counter() - moved > patience:
            raise SystemExit(f"the analytics copy stopped at {lag['seq']:,} events: {lag['error']}")
        print(f"\r  copied {lag['seq']:,} of {lag['store_seq']:,} events ({lag['error'] or 'persons copied'})   ",
              end="", file=sys.stderr, flush=True)
        time.sleep(0.5)


def ask_over_http(path: Path, analytics: str, repeat: int) -> tuple[Side, dict[str, str]]:
    """Every analytics question `repeat` times on the app over `path`'s data directory."""
    side, notes = Side(), {}
    config = ServerConfig(data_dir=path.parent, analytics=analytics, api_rate_limit=1_000_000)
    with TestClient(create_app(config, now=lambda: NOW)) as client:
        client.headers["Authorization"] = f"Bearer {SECRET_KEY}"
        if analytics != "off":
            fed = _caught_up(client)
            print(file=sys.stderr)
            status = client.get("/api/status").json()
            copy_bytes, store_bytes = status["analytics"]["bytes"], path.stat().st_size
            events = status["analytics"]["lag"]["seq"]
            notes["copy filled from nothing (events/s)"] = f"{events / fed:,.0f} ({fed:.0f} s)"
            notes["copy / store size"] = (
                f"{copy_bytes / 2**20:,.0f} / {store_bytes / 2**20:,.0f} MiB ({copy_bytes / store_bytes:.2f})"
            )
        for name, body in ANALYTICS_QUESTIONS.items():
            for _ in range(repeat):
                started = time.perf_counter()
                answer = client.post("/api/counts", json=body)
                side.times.setdefault(name, []).append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200, answer.text
            found = answer.json()
            side.engine = found.pop("answered_by")["engine"]
            side.answers[name] = found
        _signed_in(client)
        for name, query in CHARTS.items():
            for _ in range(repeat):
                started = time.perf_counter()
                page = client.get("/ui/segments", params=query)
                side.times.setdefault(name, []).append((time.perf_counter() - started) * 1000)
                assert page.status_code == 200, page.text[:2000]
            side.answers[name] = _chart_numbers(page.text)
            if side.engine != "store" and f'data-answered-by="{side.engine}"' not in page.text:
                raise SystemExit(f"{name} was not answered by {side.engine}")
    return side, notes


def _chart_numbers(html: str) -> tuple[str, str]:
    """What the segment page shows of its answers: the chart's table of numbers, and the count
    of matching users."""
    table = html.split('<details class="data-table">', 1)[1].split("</details>", 1)[0]
    matching = html.split('id="matching-title"', 1)[1].split("</h2>", 1)[0]
    return table, matching


def _spread(samples: list[float]) -> str:
    return f"{min(samples):.0f} / {statistics.median(samples):.0f} / {max(samples):.0f}"


def analytics(path: Path, repeat: int) -> tuple[list[tuple[str, str]], float, float]:
    """Rows comparing the store with its DuckDB copy; the copy's breakdown and chart medians."""
    for old in path.parent.glob(ANALYTICS_FILE + "*"):
        old.unlink()  # filled from nothing, as on a fresh `make serve`
    store, _ = ask_over_http(path, "off", repeat)
    copy, notes = ask_over_http(path, "duckdb", repeat)
    assert store.engine == "store" and copy.engine == "duckdb", (store.engine, copy.engine)
    rows = list(notes.items())
    for name, on_store in store.times.items():
        on_copy = copy.times[name]
        ratio = statistics.median(on_store) / statistics.median(on_copy)
        same = "same answer" if store.answers[name] == copy.answers[name] else "ANSWERS DIFFER"
        rows.append((f"{name}, min/median/max (ms)",
                     f"sqlite {_spread(on_store)}, duckdb {_spread(on_copy)}: {ratio:.1f}x, {same}"))
    return rows, statistics.median(copy.times[next(iter(ANALYTICS_QUESTIONS))]), statistics.median(copy.times[next(iter(CHARTS))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events to generate (default 1,000,000)")
    parser.add_argument("--samples", type=int, default=1000, help="persons sampled for the timeline (default 1,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database", type=Path, help="keep the database here; reused (not reloaded) if it exists")
    parser.add_argument("--engine", action="store_true", help="load through the engine (slow) instead of the bulk loader")
    parser.add_argument("--repeat", type=int, default=5, help="times each analytics question is asked (default 5)")
    parser.add_argument("--no-analytics", action="store_true", help="skip the analytics engine's questions")
    args = parser.parse_args()

    if args.database and args.database.name != DATABASE_FILE:
        parser.error(f"--database must name a file {DATABASE_FILE} (the app serves its directory)")
    rows: list[tuple[str, str]] = []
    if args.database and args.database.exists():
        path = args.database
        rows.append(("load", f"reused {path}"))
    else:
        path = args.database or Path(tempfile.mkdtemp(prefix="idstitch-bench-")) / DATABASE_FILE
        started = time.perf_counter()
        stored = (engine_load if args.engine else bulk_load)(path, args.events, args.seed)
        elapsed = time.perf_counter() - started
        print(file=sys.stderr)
        how = "engine" if args.engine else "bulk loader"
        rows.append((f"load, {how} (events/s)", f"{stored / elapsed:,.0f} ({elapsed:.0f} s)"))
    measured, timeline_p99, breakdown = measure(path, args.samples, args.seed)
    rows += measured
    if not args.no_analytics:
        compared, copy_breakdown, copy_chart = analytics(path, args.repeat)
        rows += compared
    width = max(len(name) for name, _ in rows)
    print(f"{'measure':<{width}}  value")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    n_events = open_database(path, read_only=True).execute("SELECT count(*) FROM events").fetchone()[0]
    if not args.database:
        for leftover in path.parent.iterdir():
            leftover.unlink()
        path.parent.rmdir()
    print(f"query: timeline p99 {timeline_p99:.1f} ms, breakdown {breakdown:.0f} ms at {n_events} events")
    if not args.no_analytics:
        print(f"analytics: breakdown {copy_breakdown:.0f} ms, chart {copy_chart:.0f} ms at {n_events} events on duckdb")


if __name__ == "__main__":
    main()
