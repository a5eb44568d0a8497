"""Faults on the scale-out store: a server killed mid-stream, PostgreSQL restarted mid-stream.

Two servers share a database while four clients stream batches to them and retry whatever was
not acknowledged (on the other server, as behind a load balancer). One server is SIGKILLed and
started again; PostgreSQL itself is restarted (fast shutdown). Every batch is then sent once
more. Nothing acknowledged may be lost, nothing stored twice, every visitor is one person, and
both servers answer again without being restarted for it.
"""

from __future__ import annotations

import itertools
import random
import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.integration.conftest import INGEST_TOKEN, SECRET_KEY, ServerProcess
from tests.postgres_server import PostgresServer
from tests.ui.conftest import csrf_of, sign_in

VISITORS = 200
BATCHES = 120
BATCH_SIZE = 25
CLIENTS = 4
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def database() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own: restarting it must not touch other tests' databases."""
    with PostgresServer() as server:
        yield server


def batches(seed: int) -> list[dict]:
    """Visitors browse anonymously and identify; each batch mixes visitors, events in time order."""
    rng = random.Random(seed)
    events = []
    for v in range(VISITORS):
        anon, user = f"anon-{v}", f"user-{v}"
        minutes = sorted(rng.sample(range(600), 14))
        for i, minute in enumerate(minutes):
            identify = i == 7
            events.append({
                "event": "$identify" if identify else "$pageview",
                "distinct_id": user if i >= 7 else anon,
                "uuid": str(uuid.UUID(int=rng.getrandbits(128))),
                "timestamp": (T0 + timedelta(minutes=minute)).isoformat(),
                "properties": {"$anon_distinct_id": anon} if identify else {"$set": {"step": i}},
            })
    events.sort(key=lambda e: e["timestamp"])
    return [{"api_key": INGEST_TOKEN, "batch": events[i:i + BATCH_SIZE]} for i in range(0, len(events), BATCH_SIZE)]


def send_until_acknowledged(urls: list[str], body: dict, start: int) -> int:
    """POST to the servers in turn until one answers 200; returns how many attempts failed."""
    failures = 0
    with httpx.Client(timeout=15.0) as http:
        for url in itertools.islice(itertools.cycle(urls), start, start + 400):
            try:
                if http.post(f"{url}/batch/", json=body).status_code == 200:
                    return failures
            except httpx.TransportError:
                pass
            failures += 1
            time.sleep(0.05)
    raise AssertionError("a batch was never acknowledged")


def test_servers_ride_out_a_killed_server_and_a_database_restart(database: PostgresServer, tmp_path: Path) -> None:
    dsn = database.create_database("idstitch")
    servers = [ServerProcess(data_dir=tmp_path / f"server-{i}", log_dir=tmp_path, database_url=dsn) for i in range(2)]
    for server in servers:
        server.start()
    try:
        work = batches(seed=5)
        acknowledged: list[int] = []
        failures: list[int] = []
        lock = threading.Lock()
        queue = list(range(len(work)))

        def client(number: int) -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    index = queue.pop(0)
                urls = [s.base_url for s in servers]  # the killed one comes back on a new port
                failed = send_until_acknowledged(urls, work[index], number)
                with lock:
                    acknowledged.append(index)
                    failures.append(failed)

        clients = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        for thread in clients:
            thread.start()
        while len(acknowledged) < BATCHES * 0.25:
            time.sleep(0.01)
        servers[0].kill()
        time.sleep(0.3)
        servers[0].start()
        while len(acknowledged) < BATCHES * 0.5:
            time.sleep(0.01)
        database.restart("fast")
        for thread in clients:
            thread.join()
        assert sorted(acknowledged) == list(range(len(work)))
        assert sum(failures) > 0, "the faults happened after the stream ended: nothing was tried"

        # A client that never saw its answers sends everything again: all of it is a duplicate.
        for index, body in enumerate(work):
            send_until_acknowledged([s.base_url for s in servers], body, index)

        # Both servers answer reads and writes again by themselves.
        for server in servers:
            found = httpx.get(f"{server.base_url}/api/persons", params={"distinct_id": "anon-3"},
                              headers={"Authorization": f"Bearer {SECRET_KEY}"}, timeout=10.0)
            assert found.status_code == 200, found.text
            assert sorted(found.json()["distinct_ids"]) == ["anon-3", "user-3"]
    finally:
        for server in servers:
            server.stop()

    sent = [e["uuid"] for body in work for e in body["batch"]]
    with psycopg.connect(dsn) as conn:
        total, distinct = conn.execute("SELECT count(*), count(DISTINCT uuid) FROM events").fetchone()
        uuid_rows = conn.execute("SELECT count(*) FROM event_uuids").fetchone()[0]
        persons = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE is_identified = 1) FROM persons"
        ).fetchone()
        owners = dict(conn.execute("SELECT distinct_id, person_id FROM distinct_ids").fetchall())
    assert (total, distinct, uuid_rows) == (len(sent), len(sent), len(sent))
    assert persons == (VISITORS, VISITORS)
    assert all(owners[f"anon-{v}"] == owners[f"user-{v}"] for v in range(VISITORS))


def test_a_database_that_cannot_write_gets_503_then_recovers(database: PostgresServer, tmp_path: Path) -> None:
    """PostgreSQL turned read-only under a running server (as a standby is after a failover, or
    `default_transaction_read_only`): ingest answers 503 with Retry-After, stores nothing, and
    takes writes again by itself once the database does."""
    dsn = database.create_database("idstitch")
    server = ServerProcess(data_dir=tmp_path / "server", log_dir=tmp_path, database_url=dsn)
    server.start()
    try:
        work = batches(seed=7)
        with httpx.Client(base_url=server.base_url, timeout=15.0) as http:
            assert http.post("/batch/", json=work[0]).status_code == 200
            with psycopg.connect(database.dsn_for("postgres"), autocommit=True) as admin:
                admin.execute("ALTER SYSTEM SET default_transaction_read_only = on")
                admin.execute("SELECT pg_reload_conf()")
                time.sleep(0.5)  # every backend reads the new setting
                refused = http.post("/batch/", json=work[1])
                assert refused.status_code == 503, refused.text
                assert refused.headers["Retry-After"]
                assert "cannot write" in refused.json()["detail"]
                admin.execute("ALTER SYSTEM RESET default_transaction_read_only")
                admin.execute("SELECT pg_reload_conf()")
            assert send_until_acknowledged([server.base_url], work[2], 0) < 100
    finally:
        server.stop()
    uuids = [e["uuid"] for body in work[:3] for e in body["batch"]]
    with psycopg.connect(dsn) as conn:
        stored = {row[0] for row in conn.execute("SELECT uuid FROM events WHERE uuid = ANY(%s)", (uuids,))}
    assert stored == {e["uuid"] for i in (0, 2) for e in work[i]["batch"]}


def test_the_ui_answers_503_not_a_form_error_when_the_database_cannot_write(
    database: PostgresServer, tmp_path: Path
) -> None:
    """A store fault is not the operator's mistake: the UI's forms answer 503 with Retry-After,
    as the API does, instead of showing it as a refused form (409)."""
    dsn = database.create_database("idstitch_ui")
    with ServerProcess(data_dir=tmp_path / "server", log_dir=tmp_path, database_url=dsn) as server, \
            httpx.Client(base_url=server.base_url, timeout=15.0) as browser:
        assert sign_in(browser, SECRET_KEY).status_code == 303  # type: ignore[arg-type]
        page = browser.get("/ui/settings")
        created = browser.post("/ui/settings/keys", data={"csrf_token": csrf_of(page.text), "label": "spare"})
        assert created.status_code == 200, created.text
        spare = max(int(n) for n in re.findall(r"/ui/settings/keys/(\d+)/revoke", created.text))
        with psycopg.connect(database.dsn_for("postgres"), autocommit=True) as admin:
            admin.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            admin.execute("SELECT pg_reload_conf()")
            time.sleep(0.5)  # every backend reads the new setting
            try:
                revoked = browser.post(f"/ui/settings/keys/{spare}/revoke", data={"csrf_token": csrf_of(created.text)})
            finally:
                admin.execute("ALTER SYSTEM RESET default_transaction_read_only")
                admin.execute("SELECT pg_reload_conf()")
        assert revoked.status_code == 503, revoked.text[:300]
        assert revoked.headers["Retry-After"]
        assert "cannot write" in revoked.text
