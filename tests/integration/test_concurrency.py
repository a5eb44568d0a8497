"""Several servers on one PostgreSQL equal one writer: the scale-out store's concurrency proof.

Four `idstitch serve` processes share a database and receive interleaved streams from eight
senders: devices of the same users identifying at once, alias chains, refused identifies of a
shared device, admin merges racing identifies, splits during ingestion, and some batches sent
to two servers at the same moment (a client retrying elsewhere). Then every request that
committed is replayed, one at a time and in the order the database committed it, through an
in-process app on SQLite (the serial oracle); persons, the id mapping, attributes, links and
warnings must be the same, no event lost or stored twice, and PostgreSQL saw no deadlock.

The order: an ingest request's place is the sequence number of its events (drawn under the
locks, so two requests that touch one person are numbered in the order they committed; two that
touch none in common commute); an admin request, which runs alone, goes before the first request
that committed after it (PostgreSQL's commit timestamps; the test server tracks them).
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from idstitch.server.app import create_app
from idstitch.server.state import ServerConfig
from idstitch.store.keyed_hashes import hashed_ids
from tests.integration.conftest import INGEST_TOKEN, SECRET_KEY, ServerProcess
from tests.postgres_server import PostgresServer

SERVERS = 4
SENDERS = 8
USERS = 16
DEVICES_PER_USER = 3
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)
ADMIN = {"Authorization": f"Bearer {SECRET_KEY}"}


@dataclass
class Request:
    """One HTTP request of the workload, as sent; `twin` requests go to two servers at once."""

    number: int
    method: str
    path: str
    body: dict[str, Any]
    admin: bool = False
    twin: bool = False
    # Filled while sending: the answers of every attempt that got one.
    answers: list[tuple[int, Any]] = field(default_factory=list)

    @property
    def uuids(self) -> list[str]:
        return [e["uuid"] for e in self.body.get("batch", [])]


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def workload(seed: int) -> list[Request]:
    """Random interleaved streams; event times fall on whole minutes so that many tie (then the
    arrival order decides, which is what the servers race on)."""
    rng = random.Random(seed)
    users = [f"user-{u}" for u in range(USERS)]
    devices = {user: [f"{user}-device-{d}" for d in range(DEVICES_PER_USER)] for user in users}
    events: list[dict[str, Any]] = []

    def event(name: str, distinct_id: str, minute: int, **extra: Any) -> dict[str, Any]:
        return {"event": name, "distinct_id": distinct_id, "uuid": str(uuid.UUID(int=rng.getrandbits(128))),
                "timestamp": _iso(T0 + timedelta(minutes=minute)), **extra}

    for user in users:
        for device in devices[user]:
            for _ in range(rng.randint(3, 8)):
                events.append(event("$pageview", device, rng.randint(0, 60), properties={
                    "$current_url": f"https://example.com/{rng.choice(['a', 'b', 'c'])}",
                    "$session_id": f"{device}-session-{rng.randint(0, 1)}",
                    "$set": {"colour": rng.choice(["red", "green", "blue"])},
                    "$set_once": {"first_seen_on": device},
                }))
            events.append(event("$identify", user, rng.randint(20, 80), properties={
                "$anon_distinct_id": device, "$set": {"plan": rng.choice(["free", "pro", "team"])},
            }))
        # An alias chain: user <- alias-1 <- alias-2.
        events.append(event("$create_alias", user, rng.randint(30, 90), properties={"alias": f"{user}-alias-1"}))
        events.append(event("$create_alias", f"{user}-alias-1", rng.randint(30, 90), properties={"alias": f"{user}-alias-2"}))
    # A shared computer: one device identifies as two users (the second is refused).
    for a, b in zip(users[::2], users[1::2]):
        events.append(event("$identify", b, rng.randint(20, 80), properties={"$anon_distinct_id": devices[a][0]}))
    rng.shuffle(events)

    requests: list[Request] = []
    position = 0
    while position < len(events):
        size = rng.randint(1, 8)
        requests.append(Request(len(requests), "POST", "/batch/", {"api_key": INGEST_TOKEN,
                                                                   "batch": events[position:position + size]},
                                twin=rng.random() < 0.12))
        position += size
        if rng.random() < 0.10:
            a, b = rng.sample(users, 2)
            requests.append(Request(len(requests), "POST", "/api/persons/merge",
                                    {"target_distinct_id": a, "source_distinct_id": b}, admin=True))
        if rng.random() < 0.06:
            user = rng.choice(users)
            requests.append(Request(len(requests), "SPLIT", user, {"distinct_ids": [rng.choice(devices[user])]},
                                    admin=True))
    return requests


class Sender:
    """Sends requests from a shared list to random servers, retrying until each is answered."""

    def __init__(self, urls: list[str], requests: list[Request], seed: int) -> None:
        self.urls = urls
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.pending = list(requests)
        self.errors: list[str] = []

    def run(self) -> None:
        try:
            self._run()
        except Exception as error:  # a sender that dies must fail the test, not hang it
            with self.lock:
                self.errors.append(repr(error))
            raise

    def _run(self) -> None:
        with httpx.Client(timeout=30.0) as http:
            while True:
                with self.lock:
                    if not self.pending:
                        return
                    request = self.pending.pop(0)
                    url, other = self.rng.sample(self.urls, 2)
                if request.twin:
                    twin = threading.Thread(target=self.send, args=(http, other, request))
                    twin.start()
                    self.send(http, url, request)
                    twin.join()
                else:
                    self.send(http, url, request)

    def send(self, http: httpx.Client, url: str, request: Request) -> None:
        for _ in range(50):
            try:
                if request.method == "SPLIT":
                    found = http.get(f"{url}/api/persons", params={"distinct_id": request.body["distinct_ids"][0]},
                                     headers=ADMIN)
                    if found.status_code != 200:
                        request.answers.append((found.status_code, None))
                        return
                    request.path = f"/api/persons/{found.json()['id']}/split"
                    request.method = "POST"
                response = http.request(request.method, url + request.path, json=request.body,
                                        headers=ADMIN if request.admin else {})
            except httpx.TransportError:
                time.sleep(0.1)
                continue
            if response.status_code in (429, 503):
                time.sleep(0.1)
                continue
            json_body = response.headers.get("content-type", "").startswith("application/json")
            request.answers.append((response.status_code, response.json() if json_body else response.text))
            return
        with self.lock:
            self.errors.append(f"request {request.number} never answered")


def commit_order(dsn: str, requests: list[Request]) -> list[Request]:
    """The committed requests in an order equal to the servers' (see the module docstring)."""
    with psycopg.connect(dsn) as conn:
        stored = {
            row[0]: (row[1], row[2])
            for row in conn.execute("SELECT uuid, seq, pg_xact_commit_timestamp(xmin) FROM events")
        }
        admin_rows = conn.execute(
            "SELECT action, details, pg_xact_commit_timestamp(xmin) FROM audit_log WHERE action IN ('merge', 'split')"
        ).fetchall()
        # Audit entries name persons by keyed hashes only.
        key = bytes.fromhex(conn.execute("SELECT hmac_key FROM privacy_keys ORDER BY project_id LIMIT 1").fetchone()[0])
    ingest = [r for r in requests if not r.admin and r.uuids]
    keyed = sorted(ingest, key=lambda r: min(stored[u][0] for u in r.uuids))
    admin_commits: list[tuple[datetime, Request]] = []
    remaining = [r for r in requests if r.admin and any(status == 200 for status, _ in r.answers)]
    for action, details, committed_at in admin_rows:
        details = json.loads(details) if isinstance(details, str) else details
        for request in remaining:
            if action == "merge" and request.path.endswith("/merge") and details == {
                "target": hashed_ids(key, request.body["target_distinct_id"]),
                "source": hashed_ids(key, request.body["source_distinct_id"]),
            }:
                break
            if action == "split" and request.path.endswith("/split") and (
                details["person_id"] == hashed_ids(key, request.path.split("/")[-2])
            ):
                break
        else:
            raise AssertionError(f"audit entry {action} {details} matches no request")
        remaining.remove(request)
        admin_commits.append((committed_at, request))
    assert not remaining, f"answered 200 but not in the audit log: {remaining}"
    order: list[Request] = []
    admin_commits.sort(key=lambda item: item[0])
    for request in keyed:
        committed_at = max(stored[u][1] for u in request.uuids)
        while admin_commits and admin_commits[0][0] < committed_at:
            order.append(admin_commits.pop(0)[1])
        order.append(request)
    order.extend(request for _, request in admin_commits)
    return order


def replay_on_sqlite(data_dir: Path, order: list[Request]) -> ServerConfig:
    config = ServerConfig(data_dir=data_dir, ingest_token=INGEST_TOKEN, secret_key=SECRET_KEY,
                          ingest_rate_limit=0, api_rate_limit=0)
    with TestClient(create_app(config)) as client:
        for request in order:
            response = client.request(request.method, request.path, json=request.body,
                                      headers=ADMIN if request.admin else {})
            assert response.status_code == 200, (request, response.text)
    return config


def state_of(conn: Any) -> dict[str, Any]:
    """Persons, mapping, attributes, links and warnings, in a form both stores give alike."""
    def rows(sql: str) -> list[tuple[Any, ...]]:
        return sorted(tuple(r) for r in conn.execute(sql).fetchall())

    return {
        "persons": rows("SELECT id, created_at, is_identified FROM persons"),
        "distinct_ids": rows("SELECT distinct_id, person_id, is_user_id FROM distinct_ids"),
        "attributes": [
            (person_id, key, json.loads(value) if value is not None else None, kind, time, event_uuid)
            for person_id, key, value, kind, time, event_uuid in rows(
                "SELECT person_id, key, value, kind, time, event_uuid FROM person_attributes"
            )
        ],
        "links": rows(
            "SELECT kind, target_distinct_id, source_distinct_id, target_person_id, source_person_id,"
            " event_uuid, decision_row, outcome, reason FROM links"
        ),
        "warnings": sorted(
            (kind, json.dumps(json.loads(ids)), event_uuid)
            for kind, ids, event_uuid in conn.execute("SELECT type, distinct_ids, event_uuid FROM warnings").fetchall()
        ),
        "events": rows("SELECT uuid, distinct_id, event, timestamp FROM events"),
        "sessions": [
            (*row[:-1], sorted(json.loads(row[-1])))
            for row in rows(
                "SELECT session_id, first_at, last_at, event_count, identifies, entry_at, entry_url,"
                " last_distinct_id, distinct_ids FROM sessions"
            )
        ],
    }


@pytest.mark.parametrize("seed", [1, 2])
def test_four_servers_on_one_database_equal_a_serial_replay(
    postgres_server: PostgresServer, postgres_dsn: str, tmp_path: Path, seed: int
) -> None:
    servers = [
        ServerProcess(data_dir=tmp_path / f"server-{i}", log_dir=tmp_path, database_url=postgres_dsn,
                      env={"IDSTITCH_INGEST_RATE_LIMIT": "0", "IDSTITCH_API_RATE_LIMIT": "0"})
        for i in range(SERVERS)
    ]
    deadlocks_before = postgres_server.deadlocks()
    threads = [threading.Thread(target=server.start) for server in servers]  # migrations race here
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert all(server.process is not None and server.process.poll() is None for server in servers)
        requests = workload(seed)
        sender = Sender([s.base_url for s in servers], requests, seed)
        senders = [threading.Thread(target=sender.run) for _ in range(SENDERS)]
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join()
        assert sender.errors == []
    finally:
        for server in servers:
            server.stop()

    for request in requests:
        assert request.answers, f"request {request.number} got no answer"
        if not request.admin:
            assert {status for status, _ in request.answers} == {200}, (request.number, request.answers)

    order = commit_order(postgres_dsn, requests)
    oracle = replay_on_sqlite(tmp_path / "oracle", order)
    with psycopg.connect(postgres_dsn) as conn:
        conn.adapters.register_loader("jsonb", psycopg.types.string.TextLoader)
        shared = state_of(conn)
        uuids = conn.execute("SELECT count(*), count(DISTINCT uuid) FROM events").fetchone()
    serial_store = oracle.store()
    serial_conn = serial_store.connect(read_only=True)
    serial = state_of(serial_conn)
    serial_conn.close()

    sent = {u for r in requests for u in r.uuids}
    assert uuids == (len(sent), len(sent)), "an acknowledged event was lost or stored twice"
    for part in shared:
        assert shared[part] == serial[part], f"{part} differ between four servers and the serial replay (seed {seed})"
    time.sleep(1.2)  # PostgreSQL counts a deadlock once the victim's session has idled
    assert postgres_server.deadlocks() == deadlocks_before
