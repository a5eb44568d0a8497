"""`idstitch migrate`: an SQLite data directory copied into PostgreSQL, exactly, resumably.

Each test fills a real SQLite store through the real app, migrates it into a fresh PostgreSQL
database, and compares: every row of every table, and what the API answers on both stores.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from idstitch.cli import cli
from idstitch.errors import StoreInUse
from idstitch.server.app import create_app, prepare
from idstitch.server.state import ServerConfig
from idstitch.store import postgres_schema, schema
from idstitch.store.backends import SQLiteStore
from idstitch.store.migration import (
    EVENT_UUIDS,
    NOT_COPIED,
    TABLES,
    SourceChanged,
    TargetFailed,
    TargetNotEmpty,
    copy_sqlite_to_postgres,
)
from idstitch.store.postgres import PostgresConnection
from idstitch.store.retention import expire_batch
from idstitch.store.sqlite import DATABASE_FILE
from tests.conftest import INGEST_TOKEN, SECRET_KEY
from tests.privacy.conftest import capture, send
from tests.ui.conftest import sign_in

ADMIN = {"Authorization": f"Bearer {SECRET_KEY}"}


# -- the two stores ---------------------------------------------------------------------------


def sqlite_config(tmp_path: Path, name: str = "sqlite-data") -> ServerConfig:
    return ServerConfig(data_dir=tmp_path / name, ingest_token=INGEST_TOKEN, secret_key=SECRET_KEY)


def postgres_config(tmp_path: Path, dsn: str) -> ServerConfig:
    return ServerConfig(data_dir=tmp_path / "unused", database=dsn, ingest_token=INGEST_TOKEN, secret_key=SECRET_KEY)


@contextmanager
def running(config: ServerConfig) -> Iterator[TestClient]:
    """The real app with its writer, holding the secret key."""
    with TestClient(create_app(config)) as client:
        client.headers.update(ADMIN)
        yield client


def database_of(config: ServerConfig) -> Path:
    return config.data_dir / DATABASE_FILE


# -- what is stored -----------------------------------------------------------------------------


def a_shop(api: TestClient) -> None:
    """A store with a row in every table: merges, a refused merge, attributes of every type,
    sessions over two months, a dead letter, an admin merge, an undo, an erasure with suppression (and a
    dropped event), a saved segment, a second key, changed settings, and a UI sign-in."""
    capture(
        api,
        {"event": "$pageview", "distinct_id": "phone-anon-7f3a", "timestamp": "2026-04-30T23:59:59Z",
         "properties": {"$session_id": "s-phone-1", "$current_url": "https://shop.example/"}},
        {"event": "$identify", "distinct_id": "user-ada-42", "timestamp": "2026-05-01T00:01:00Z",
         "properties": {"$anon_distinct_id": "phone-anon-7f3a", "$session_id": "s-phone-1",
                        "$set": {"plan": "pro", "seats": 3, "ratio": 0.1, "big": 1e300, "beta": True}}},
    )
    send(api, "track", distinct_id="laptop-anon-b81d", event="Viewed pricing", session_id="s-laptop-1",
         timestamp="2026-05-02T18:00:00Z", properties={"nested": {"a": [1, "two", None]}, "ünï": "cödé"})
    send(api, "identify", user_id="user-ada-42", anonymous_id="laptop-anon-b81d", session_id="s-laptop-1",
         set={"email": "Ada@Example.com", "name": "Ada"}, set_once={"first_seen": "laptop"},
         timestamp="2026-05-02T18:05:00Z")
    send(api, "attributes", distinct_id="user-ada-42", add={"logins": 2}, union={"teams": ["growth", "core"]})
    send(api, "identify", user_id="user-bob-7", anonymous_id="shared-pc", set={"email": "bob@example.com"})
    refused = send(api, "identify", user_id="user-cy-9", anonymous_id="shared-pc")  # two identified users
    assert refused["results"][0]["warnings"] == ["cannot_merge_already_identified"]
    # The shared computer was Cy's: undoing Bob's identify on it lets Cy's through (link_effects).
    bob = api.get("/api/persons", params={"distinct_id": "user-bob-7"}).json()
    bob_on_shared_pc = api.get(f"/api/persons/{bob['id']}/links").json()["results"][0]["id"]
    assert api.post(f"/api/links/{bob_on_shared_pc}/undo").status_code == 200
    send(api, "track", distinct_id="tablet-anon-c4d2", event="Opened app", timestamp="2026-06-01T08:00:00Z")
    merged = api.post("/api/persons/merge", json={"target_distinct_id": "user-ada-42",
                                                  "source_distinct_id": "tablet-anon-c4d2"})
    assert merged.status_code == 200, merged.text
    api.post("/ingest/track", headers={"Authorization": f"Bearer {INGEST_TOKEN}"},
             json={"distinct_id": "user-bob-7", "event": "x", "timestamp": "not a time"})  # a dead letter
    send(api, "identify", user_id="user-dan-3", anonymous_id="dan-anon", set={"plan": "free"})
    erased = api.post("/api/privacy/delete", json={"distinct_id": "user-dan-3", "suppress": True})
    assert erased.status_code == 200, erased.text
    send(api, "track", distinct_id="user-dan-3", event="Came back")  # dropped and counted
    segment = api.post("/api/segments", json={"name": "Pro", "description": "paying",
                                              "filter": {"attribute": "plan", "op": "equals", "value": "pro"}})
    assert segment.status_code == 201, segment.text
    assert api.post("/api/keys", json={"label": "ci"}).status_code == 201
    assert api.patch("/api/project/settings", json={"max_user_ids": 2}).status_code == 200
    assert sign_in(api).status_code == 303
    # Retention (through the writer) of what came before May: the first page view is kept for replays.
    writer = api.app.state.idstitch.writer  # type: ignore[attr-defined]
    expired = writer.write_now(lambda context: expire_batch(context.conn, 1, "2026-05-01T00:00:00.000000Z"))
    assert (expired.deleted, expired.retired) == (0, 1)


def many_events(api: TestClient, count: int, *, batch: int = 500) -> None:
    """`count` events from `count // 10` visitors, a tenth of them identified, over three months."""
    for start in range(0, count, batch):
        events = []
        for n in range(start, min(start + batch, count)):
            visitor = n // 10
            event: dict[str, Any] = {
                "event": "$pageview", "distinct_id": f"anon-{visitor}", "uuid": f"00000000-0000-4000-8000-{n:012d}",
                "timestamp": f"2026-0{3 + n % 3}-{1 + n % 28:02d}T10:{n % 60:02d}:00Z",
                "properties": {"$session_id": f"s-{visitor}", "$current_url": f"https://shop.example/{n % 7}"},
            }
            if n % 100 == 9:
                event = {**event, "event": "$identify", "distinct_id": f"user-{visitor}",
                         "properties": {**event["properties"], "$anon_distinct_id": f"anon-{visitor}",
                                        "$set": {"plan": ["free", "pro"][visitor % 2], "n": n}}}
            events.append(event)
        capture(api, *events)


def snapshot(api: TestClient) -> dict[str, Any]:
    """What the API answers about everything `a_shop` stored (the audit log first: reads are not audited)."""

    def get(path: str, **params: str) -> Any:
        response = api.get(path, params=params)
        # Numbers as numbers: an event's operations are jsonb on PostgreSQL, which spells 1e300 in full.
        return response.status_code, json.loads(response.text, parse_float=Decimal, parse_int=Decimal)

    answers: dict[str, Any] = {"audit": get("/api/audit-log")}
    for distinct_id in ("user-ada-42", "phone-anon-7f3a", "laptop-anon-b81d", "tablet-anon-c4d2", "user-bob-7",
                        "user-cy-9", "shared-pc"):
        answers[distinct_id] = get("/api/persons", distinct_id=distinct_id)
        person_id = answers[distinct_id][1]["id"]
        for part in ("attributes", "links", "events"):
            answers[f"{distinct_id}/{part}"] = get(f"/api/persons/{person_id}/{part}")
    # Attribute values are text on both stores: the very same spelling.
    answers["ada as text"] = api.get("/api/persons", params={"distinct_id": "user-ada-42"}).text
    answers["user-dan-3"] = get("/api/persons", distinct_id="user-dan-3")
    # (Sessions and segments are compared row by row only: their routes' query guard does not
    # run on PostgreSQL yet.)
    for path in ("/api/persons", "/api/warnings", "/api/dead-letters", "/api/keys", "/api/project/settings",
                 "/api/privacy/suppressions"):
        answers[path] = get(path)
    answers["suppressed"] = get("/api/privacy/suppressions/check", distinct_id="dan-anon")
    return answers


def as_json(text: str) -> Any:
    # jsonb re-spells documents: keys in its order, and numbers as numeric (1e300 reads back
    # as 1 and 300 zeros), as for events ingested on PostgreSQL. Equal as numbers is equal here.
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def table_rows(sqlite_path: Path, dsn: str) -> dict[str, tuple[list[Any], list[Any]]]:
    """Every table's rows on both sides (JSON documents decoded, since jsonb re-spells them), by key."""
    source = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    target = PostgresConnection(dsn)
    try:
        both = {}
        for table in TABLES:
            columns = [r[1] for r in source.execute(f"PRAGMA table_info({table.name})")]
            kinds = dict(target.raw.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s", (table.name,)
            ).fetchall())
            at = [columns.index(k) for k in table.key]

            def normal(rows: list[Any]) -> list[Any]:
                decoded = [tuple(as_json(v) if kinds[c] == "jsonb" and v is not None else v
                                 for c, v in zip(columns, row)) for row in rows]
                return sorted(decoded, key=lambda row: tuple(row[i] for i in at))

            listed = ", ".join(columns)
            both[table.name] = (normal(source.execute(f"SELECT {listed} FROM {table.name}").fetchall()),
                                normal(target.raw.execute(f"SELECT {listed} FROM {table.name}").fetchall()))
        both[EVENT_UUIDS] = (sorted(source.execute("SELECT project_id, uuid FROM events UNION ALL"
                                                   " SELECT project_id, uuid FROM retired_events").fetchall()),
                             sorted(tuple(r) for r in target.raw.execute("SELECT project_id, uuid FROM event_uuids")))
        return both
    finally:
        source.close()
        target.close()


def assert_exact_copy(sqlite_path: Path, dsn: str) -> None:
    for table, (source, target) in table_rows(sqlite_path, dsn).items():
        assert target == source, f"{table} differs"


def file_digest(path: Path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*"))
                                   if not p.name.endswith((".server", "-shm")))).hexdigest()


class StopAfter:
    """A progress that interrupts the copy, as Ctrl-C does, once `rows` rows have committed
    (counting only `table`'s rows when one is named)."""

    def __init__(self, rows: int, table: str | None = None) -> None:
        self.limit, self.within = rows, table
        self.rows = self.total = self.done = self.counted = 0
        self.table = ""

    def start(self, total: int, done: int) -> None:
        self.total, self.done = total, done

    def advance(self, table: str, rows: int) -> None:
        self.rows += rows
        self.table = table
        if self.within in (None, table):
            self.counted += rows
        if self.counted >= self.limit:
            raise KeyboardInterrupt


def target_counts(dsn: str) -> dict[str, int]:
    conn = PostgresConnection(dsn)
    try:
        return {name: conn.raw.execute(f"SELECT count(*) FROM {name}").fetchone()[0]  # type: ignore[index]
                for name in [t.name for t in TABLES] + [EVENT_UUIDS]}
    finally:
        conn.close()


# -- copying ------------------------------------------------------------------------------------


def test_every_table_of_both_schemas_is_copied() -> None:
    def tables(migrations: tuple[tuple[str, str], ...]) -> set[str]:
        return {name for _, sql in migrations for name in re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+) ", sql)}

    copied = {t.name for t in TABLES}
    assert tables(schema.MIGRATIONS) == copied | set(NOT_COPIED)
    assert tables(postgres_schema.MIGRATIONS) - {"events_default"} == copied | set(NOT_COPIED) | {EVENT_UUIDS}


def test_migrate_copies_every_row_and_the_app_on_postgresql_answers_the_same(tmp_path, postgres_dsn):
    source = sqlite_config(tmp_path)
    with running(source) as api:
        a_shop(api)
        before = snapshot(api)
    digest = file_digest(database_of(source))

    report = copy_sqlite_to_postgres(database_of(source), postgres_dsn)

    assert file_digest(database_of(source)) == digest  # the SQLite file was only read
    assert report.mismatched == [] and not report.already_complete and not report.resumed
    counts = {t.table: t.source_rows for t in report.tables}
    assert all(counts[t.name] > 0 for t in TABLES), counts  # a row in every table
    assert counts[EVENT_UUIDS] == counts["events"] + counts["retired_events"]
    assert_exact_copy(database_of(source), postgres_dsn)
    with running(postgres_config(tmp_path, postgres_dsn)) as api:
        assert snapshot(api) == before
        # The copied HMAC key: the keyed hashes of the suppressed ids still match.
        assert before["suppressed"] == (200, {"suppressed": True})
        for distinct_id in ("user-dan-3", "dan-anon"):
            check = api.get("/api/privacy/suppressions/check", params={"distinct_id": distinct_id}).json()
            assert check == {"suppressed": True}, distinct_id
        # New rows take ids past the copied ones (the sequences were moved).
        key = api.post("/api/keys", json={"label": "after"}).json()
        # (> rather than max + 1: the server's start upserted its key, which takes a value too.)
        assert key["id"] > max(k["id"] for k in before["/api/keys"][1])
        send(api, "identify", user_id="user-eve-5", anonymous_id="eve-anon")
        eve = api.get("/api/persons", params={"distinct_id": "user-eve-5"}).json()
        assert [link["kind"] for link in api.get(f"/api/persons/{eve['id']}/links").json()["results"]] == ["identify"]
    conn = PostgresConnection(postgres_dsn)
    try:
        seqs = [row[0] for row in conn.raw.execute("SELECT seq FROM events ORDER BY seq")]
        assert len(set(seqs)) == counts["events"] + 1
        for table in [t.name for t in TABLES if t.identity]:
            last, top = conn.raw.execute(
                f"SELECT pg_sequence_last_value(pg_get_serial_sequence('{table}', 'id')), max(id) FROM {table}"
            ).fetchone()  # type: ignore[misc]
            assert last is not None and last >= top, table
    finally:
        conn.close()


def test_nul_characters_which_postgresql_cannot_store_become_replacement_characters(tmp_path, postgres_dsn):
    source = sqlite_config(tmp_path)
    with running(source) as api:
        capture(api, {"event": "odd\u0000name", "distinct_id": "d-1", "properties": {"k\u0000": "v\u0000", "n": 1}})

    report = copy_sqlite_to_postgres(database_of(source), postgres_dsn)

    assert {t.table: t.altered for t in report.tables if t.altered} == {"events": 2}
    conn = PostgresConnection(postgres_dsn)
    try:
        event, properties = conn.raw.execute("SELECT event, properties FROM events").fetchone()  # type: ignore[misc]
    finally:
        conn.close()
    assert event == "odd\ufffdname"
    assert json.loads(properties) == {"k\ufffd": "v\ufffd", "n": 1}


# -- resuming -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("stop_after", "table"), [
    pytest.param(1, "projects", id="after-the-first-chunk"),
    pytest.param(100, "distinct_ids", id="inside-distinct-ids"),
    pytest.param(1000, "events", id="inside-events"),
    pytest.param(100, "sessions", id="inside-sessions"),
])
def test_an_interrupted_migration_continues_and_stores_nothing_twice(tmp_path, postgres_dsn, stop_after, table):
    source = sqlite_config(tmp_path)
    with running(source) as api:
        many_events(api, 2000)

    stop = StopAfter(stop_after, table)
    with pytest.raises(KeyboardInterrupt):
        copy_sqlite_to_postgres(database_of(source), postgres_dsn, chunk_rows=97, progress=stop)
    assert stop.table == table
    partial = target_counts(postgres_dsn)
    assert partial[table] > 0
    assert sum(partial.values()) - partial[EVENT_UUIDS] == stop.rows < stop.total
    again = StopAfter(10**9)

    report = copy_sqlite_to_postgres(database_of(source), postgres_dsn, chunk_rows=97, progress=again)

    assert report.resumed and report.mismatched == []
    assert again.done == stop.rows  # the bar starts where the first run stopped
    assert report.copied == stop.total - stop.rows
    assert_exact_copy(database_of(source), postgres_dsn)


def test_a_migration_killed_mid_chunk_continues_from_its_last_commit(tmp_path, postgres_dsn):
    """SIGINT (Ctrl-C) to one run and SIGKILL to the next, each while copying; the third finishes."""
    source = sqlite_config(tmp_path)
    with running(source) as api:
        many_events(api, 3000)
    command = [sys.executable, "-m", "idstitch.cli", "migrate", "--to", postgres_dsn,
               "--data-dir", str(source.data_dir), "--chunk-rows", "7"]

    def copied() -> int:
        conn = PostgresConnection(postgres_dsn)
        try:
            if not conn.raw.execute("SELECT to_regclass('migration_progress') IS NOT NULL").fetchone()[0]:  # type: ignore[index]
                return 0
            return int(conn.raw.execute("SELECT sum(copied) FROM migration_progress").fetchone()[0])  # type: ignore[index]
        finally:
            conn.close()

    stopped = []
    for sig in (signal.SIGINT, signal.SIGKILL):
        # As from a terminal: a child of a background job (`cmd &`) inherits SIGINT ignored, and
        # ignores the Ctrl-C this test sends. A handler here makes the child's SIGINT the default.
        inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                       env={**os.environ, "PYTHONUNBUFFERED": "1"})
        finally:
            signal.signal(signal.SIGINT, inherited)
        deadline = time.monotonic() + 60
        while copied() < (len(stopped) + 1) * 1000 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert process.poll() is None, process.communicate()
        process.send_signal(sig)
        _, err = process.communicate(timeout=60)
        stopped.append(copied())
        if sig == signal.SIGINT:
            assert process.returncode == 130, err
            assert "run the same command again to continue" in err
        else:
            assert process.returncode == -signal.SIGKILL
    assert stopped[0] < stopped[1]

    result = CliRunner().invoke(cli, ["migrate", "--to", postgres_dsn, "--data-dir", str(source.data_dir)])

    assert result.exit_code == 0, result.output
    assert "(resumed)" in result.output and "verified: all 19 tables" in result.output
    assert_exact_copy(database_of(source), postgres_dsn)


def test_a_second_run_on_a_finished_target_copies_nothing(tmp_path, postgres_dsn):
    source = sqlite_config(tmp_path)
    with running(source) as api:
        a_shop(api)
    first = copy_sqlite_to_postgres(database_of(source), postgres_dsn)
    with running(postgres_config(tmp_path, postgres_dsn)) as api:
        send(api, "track", distinct_id="after-the-move", event="New")  # the target lives on

    second = copy_sqlite_to_postgres(database_of(source), postgres_dsn)

    assert second.already_complete and second.copied == 0
    assert [(t.table, t.target_rows - t.source_rows) for t in second.mismatched] == [
        ("persons", 1), ("distinct_ids", 1), ("events", 1), (EVENT_UUIDS, 1)
    ]
    assert first.copied > 0
    result = CliRunner().invoke(cli, ["migrate", "--to", postgres_dsn, "--data-dir", str(source.data_dir)])
    assert result.exit_code == 0, result.output
    assert "already migrated: nothing copied" in result.output


# -- refusing -----------------------------------------------------------------------------------


def test_a_target_where_a_server_has_started_is_refused_naming_what_is_there(tmp_path, postgres_dsn):
    source = sqlite_config(tmp_path)
    with running(source) as api:
        a_shop(api)
    prepare(ServerConfig(data_dir=tmp_path / "unused", database=postgres_dsn, ingest_token="phc_other_project"))

    with pytest.raises(TargetNotEmpty, match=r"projects: 1, secret_keys: 1, privacy_keys: 1\)\. Its projects: "
                                             r"1 'Default project' \(ingest token phc_other_project\)"):
        copy_sqlite_to_postgres(database_of(source), postgres_dsn)

    assert target_counts(postgres_dsn)["persons"] == 0
    result = CliRunner().invoke(cli, ["migrate", "--to", postgres_dsn, "--data-dir", str(source.data_dir)])
    assert result.exit_code == 1
    assert "already holds data that is not from a run of this migration" in result.output


def test_a_target_with_tables_of_another_application_is_refused_untouched(tmp_path, postgres_dsn):
    source = sqlite_config(tmp_path)
    with running(source) as api:
        a_shop(api)
    conn = PostgresConnection(postgres_dsn)
    conn.raw.execute("CREATE TABLE invoices (id int)")
    conn.close()

    with pytest.raises(TargetNotEmpty, match=r"tables that are not idstitch's \(invoices\)"):
        copy_sqlite_to_postgres(database_of(source), postgres_dsn)

    conn = PostgresConnection(postgres_dsn)
    assert conn.raw.execute("SELECT to_regclass('projects')").fetchone() == (None,)
    conn.close()


def test_continuing_with_another_or_a_changed_source_is_refused(tmp_path, postgres_dsn):
    source, other = sqlite_config(tmp_path), sqlite_config(tmp_path, "other-data")
    with running(source) as api:
        many_events(api, 300)
    with running(other) as api:
        a_shop(api)
    with pytest.raises(KeyboardInterrupt):
        copy_sqlite_to_postgres(database_of(source), postgres_dsn, chunk_rows=50, progress=StopAfter(100))

    with pytest.raises(SourceChanged, match=r"holds a migration of .*sqlite-data/idstitch.db started at .*, but"
                                            r" .*other-data/idstitch.db is not that database"):
        copy_sqlite_to_postgres(database_of(other), postgres_dsn)
    with running(source) as api:
        send(api, "track", distinct_id="anon-1", event="One more")
    with pytest.raises(SourceChanged, match=r"events: 300 rows then, 301 now"):
        copy_sqlite_to_postgres(database_of(source), postgres_dsn)


def test_continuing_after_a_server_wrote_to_the_unfinished_target_is_refused(tmp_path, postgres_dsn):
    source = sqlite_config(tmp_path)
    with running(source) as api:
        many_events(api, 300)
    with pytest.raises(KeyboardInterrupt):
        copy_sqlite_to_postgres(database_of(source), postgres_dsn, chunk_rows=50, progress=StopAfter(100))
    with running(postgres_config(tmp_path, postgres_dsn)) as api:
        send(api, "track", distinct_id="too-early", event="Hello")

    with pytest.raises(TargetNotEmpty, match=r"holds an unfinished migration, and rows this migration did not copy"
                                             r" \(distinct_ids: 34 rows, 33 of them copied, event_uuids: 1 rows, 0 of"
                                             r" them copied, .*\): was a server started on it\?"):
        copy_sqlite_to_postgres(database_of(source), postgres_dsn)


def test_migrate_refuses_while_a_server_serves_the_file_and_no_server_starts_meanwhile(tmp_path, postgres_dsn):
    source = sqlite_config(tmp_path)
    with running(source) as api:
        a_shop(api)
        with pytest.raises(StoreInUse, match=r"in use by another idstitch process \(pid \d+\)"):
            copy_sqlite_to_postgres(database_of(source), postgres_dsn)

    class TryToServe(StopAfter):
        def advance(self, table: str, rows: int) -> None:
            with pytest.raises(StoreInUse):
                SQLiteStore(database_of(source)).claim_for_server()
            super().advance(table, rows)

    copy_sqlite_to_postgres(database_of(source), postgres_dsn, progress=TryToServe(10**9))
    SQLiteStore(database_of(source)).claim_for_server()  # released at the end


def test_a_server_started_on_the_target_mid_copy_waits_for_the_end(tmp_path, postgres_dsn):
    source = sqlite_config(tmp_path)
    with running(source) as api:
        many_events(api, 300)
    found: dict[str, Any] = {}

    def start_a_server() -> None:
        found["project"] = prepare(postgres_config(tmp_path, postgres_dsn)).project
        found["at"] = time.monotonic()

    class StartAServer(StopAfter):
        def advance(self, table: str, rows: int) -> None:
            if not found:
                found["thread"] = threading.Thread(target=start_a_server)
                found["thread"].start()
                time.sleep(0.3)
            super().advance(table, rows)

    copy_sqlite_to_postgres(database_of(source), postgres_dsn, chunk_rows=50, progress=StartAServer(10**9))
    ended = time.monotonic()

    found["thread"].join(timeout=30)
    assert found["at"] > ended  # it waited for the writes lock the copy held
    assert (found["project"].id, found["project"].ingest_token) == (1, INGEST_TOKEN)  # the copied one
    assert target_counts(postgres_dsn)["projects"] == 1


# -- the command --------------------------------------------------------------------------------


def test_the_command_prints_its_progress_and_the_counts_of_both_sides(tmp_path, postgres_dsn):
    source = sqlite_config(tmp_path)
    with running(source) as api:
        a_shop(api)

    result = CliRunner().invoke(cli, ["migrate", "--to", postgres_dsn, "--data-dir", str(source.data_dir)])

    assert result.exit_code == 0, result.output
    assert "copying" in result.stderr  # the bar
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["table", "SQLite", "PostgreSQL", "copied", "now"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1 : len(TABLES) + 2]}
    assert list(rows) == [t.name for t in TABLES] + [EVENT_UUIDS]
    assert all(source_rows == target_rows == copied for source_rows, target_rows, copied in rows.values())
    assert re.search(r"^copied \d+ rows in [\d.]+ s, [\d,]+ rows/s$", result.stdout, re.M)
    assert "verified: all 19 tables have the same row counts on both sides" in result.stdout


@pytest.mark.parametrize(("arguments", "message"), [
    pytest.param(["--to", "mysql://db/x"], "is not a PostgreSQL URL", id="bad-url"),
    pytest.param(["--to", "postgresql://nobody@127.0.0.1:1/x"], "Cannot connect to PostgreSQL at postgresql://nobody@127.0.0.1:1/x",
                 id="unreachable"),
    pytest.param(["--to", "postgresql://127.0.0.1/x", "--data-dir", "nowhere"], "No idstitch database at nowhere",
                 id="no-data-dir"),
])
def test_the_command_fails_with_a_clear_message(tmp_path, arguments, message):
    source = sqlite_config(tmp_path)
    prepare(source)
    result = CliRunner().invoke(cli, ["migrate", "--data-dir", str(source.data_dir), *arguments])
    assert result.exit_code == 1
    assert message in result.output


def test_a_refused_row_is_named(tmp_path, postgres_dsn):
    source = sqlite_config(tmp_path)
    with running(source) as api:
        a_shop(api)
    conn = sqlite3.connect(database_of(source))
    conn.execute("UPDATE warnings SET details = 'not json' WHERE id = 1")
    conn.commit()
    conn.close()

    with pytest.raises(TargetFailed, match=r"PostgreSQL refused a row of warnings \(id 1\): invalid input syntax"):
        copy_sqlite_to_postgres(database_of(source), postgres_dsn)
