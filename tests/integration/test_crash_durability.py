"""identity-rules.md §8: a 200 means committed, and re-sending an event uuid is idempotent.

A real server is SIGKILLed while clients stream acknowledged batches. After a restart on the same
data directory every batch is sent again, acknowledged or not, as a retrying client would. The
SQLite file is then read directly (read-only) and the persons are read back over the API.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import ServerProcess  # the `server` fixture of tests/integration/conftest.py

BATCHES = 100
BATCH_SIZE = 50
VISITORS = 400
SENDERS = 4
KILL_AFTER_ACKS = 30
REQUEST_TIMEOUT = 10.0
STREAM_DEADLINE = 20.0
START = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Visitor:
    """One browser: anonymous events, then (for half of them) `$identify`, then events as the user."""

    anon_id: str
    user_id: str | None
    event_uuids: list[str]


@dataclass(frozen=True)
class Workload:
    bodies: list[bytes]
    batch_uuids: list[list[str]]
    visitors: list[Visitor]
    identify_uuids: set[str]

    @property
    def all_uuids(self) -> set[str]:
        return {u for batch in self.batch_uuids for u in batch}


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def make_workload(token: str, seed: int = 8) -> Workload:
    rng = random.Random(seed)
    total = BATCHES * BATCH_SIZE
    # 12 or 13 events per visitor, so the stream is exactly `total` events long.
    lengths = [total // VISITORS + (1 if n < total % VISITORS else 0) for n in range(VISITORS)]
    plans: list[list[dict]] = []
    visitors: list[Visitor] = []
    identify_uuids: set[str] = set()
    for n, length in enumerate(lengths):
        anon_id = f"anon-{n:04d}"
        user_id = f"user-{n:04d}" if n % 2 == 0 else None
        session = f"session-{n:04d}"
        events = []
        for step in range(length):
            event_uuid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            if user_id is not None and step == 4:
                event = {
                    "event": "$identify",
                    "distinct_id": user_id,
                    "properties": {"$anon_distinct_id": anon_id, "$session_id": session, "$lib": "web"},
                    "$set": {"plan": "pro", "name": f"User {n}"},
                }
                identify_uuids.add(event_uuid)
            else:
                event = {
                    "event": "$pageview",
                    "distinct_id": user_id if user_id is not None and step > 4 else anon_id,
                    "properties": {
                        "$current_url": f"https://shop.example/p/{step}",
                        "$session_id": session,
                        "$lib": "web",
                    },
                }
            event["uuid"] = event_uuid
            events.append(event)
        plans.append(events)
        visitors.append(Visitor(anon_id, user_id, [e["uuid"] for e in events]))

    # Interleave the visitors at random, keeping each visitor's own order.
    cursors = [0] * VISITORS
    remaining = [n for n in range(VISITORS)]
    stream: list[dict] = []
    while remaining:
        n = rng.choice(remaining)
        stream.append(plans[n][cursors[n]])
        cursors[n] += 1
        if cursors[n] == len(plans[n]):
            remaining.remove(n)
    for index, event in enumerate(stream):
        event["timestamp"] = _iso(START + timedelta(seconds=index))

    bodies, batch_uuids = [], []
    for b in range(BATCHES):
        batch = stream[b * BATCH_SIZE : (b + 1) * BATCH_SIZE]
        sent_at = _iso(START + timedelta(seconds=(b + 1) * BATCH_SIZE))
        bodies.append(json.dumps({"api_key": token, "batch": batch, "sent_at": sent_at}).encode())
        batch_uuids.append([e["uuid"] for e in batch])
    return Workload(bodies, batch_uuids, visitors, identify_uuids)


@dataclass
class Stream:
    """Batches sent by a few client threads; which were acknowledged and what went wrong."""

    base_url: str
    bodies: list[bytes]
    acked: set[int] = field(default_factory=set)
    refused: dict[int, str] = field(default_factory=dict)
    broken: dict[int, str] = field(default_factory=dict)
    enough_acked: threading.Event = field(default_factory=threading.Event)
    ack_target: int | None = None
    _next: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= len(self.bodies):
                return None
            self._next += 1
            return self._next - 1

    def send(self, deadline: float) -> None:
        """One client connection (keep-alive) sending batches until none are left or it breaks."""
        with httpx.Client(base_url=self.base_url, timeout=REQUEST_TIMEOUT) as client:
            while time.monotonic() < deadline and (index := self._take()) is not None:
                try:
                    response = client.post(
                        "/batch/", content=self.bodies[index], headers={"Content-Type": "application/json"}
                    )
                except httpx.TransportError as error:  # the server died under us
                    with self._lock:
                        self.broken[index] = repr(error)
                    return
                with self._lock:
                    if response.status_code == 200 and response.json() == {"status": 1}:
                        self.acked.add(index)
                        if self.ack_target is not None and len(self.acked) >= self.ack_target:
                            self.enough_acked.set()
                    else:
                        self.refused[index] = f"{response.status_code} {response.text[:500]}"

    def run_in_threads(self, senders: int, deadline: float) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.send, args=(deadline,), daemon=True) for _ in range(senders)]
        for thread in threads:
            thread.start()
        return threads


def stored_uuids(database: Path) -> list[str]:
    """Every event uuid in the file, duplicates kept, read with a read-only connection."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return [row[0] for row in conn.execute("SELECT uuid FROM events")]
    finally:
        conn.close()


def query(database: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def person_events(api: httpx.Client, person_id: str, deadline: float) -> Iterator[dict]:
    cursor = None
    while time.monotonic() < deadline:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        response = api.get(f"/api/persons/{person_id}/events", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        yield from page["results"]
        cursor = page["next"]
        if not cursor:
            return
    raise AssertionError(f"paging the events of {person_id} did not finish in time")


@pytest.mark.timeout(90)
def test_acknowledged_batches_survive_sigkill_and_resending_every_batch_stores_each_event_once(
    server: ServerProcess,
) -> None:
    workload = make_workload(server.ingest_token)
    sent = workload.all_uuids
    assert len(sent) == BATCHES * BATCH_SIZE

    # 1. Stream, and SIGKILL the server once some batches are acknowledged.
    first = Stream(server.base_url, workload.bodies, ack_target=KILL_AFTER_ACKS)
    threads = first.run_in_threads(SENDERS, time.monotonic() + STREAM_DEADLINE)
    assert first.enough_acked.wait(STREAM_DEADLINE), f"only {len(first.acked)} batches acknowledged: {first.refused}"
    server.kill()
    for thread in threads:
        thread.join(REQUEST_TIMEOUT + 5)
        assert not thread.is_alive(), "a client thread is still sending to a dead server"
    assert first.refused == {}
    assert KILL_AFTER_ACKS <= len(first.acked) < BATCHES, "the kill did not land mid-stream"

    # 2. Before anything runs again: every acknowledged event is in the file, nothing else is.
    after_kill = stored_uuids(server.database)
    acked_uuids = {u for index in first.acked for u in workload.batch_uuids[index]}
    assert acked_uuids - set(after_kill) == set(), "acknowledged events were lost"
    assert set(after_kill) <= sent
    assert len(after_kill) == len(set(after_kill))

    # 3. Restart on the same data directory and re-send every batch, acknowledged or not.
    server.start()
    again = Stream(server.base_url, workload.bodies)
    for thread in again.run_in_threads(SENDERS, time.monotonic() + STREAM_DEADLINE):
        thread.join(STREAM_DEADLINE + REQUEST_TIMEOUT)
    assert again.refused == {} and again.broken == {}
    assert again.acked == set(range(BATCHES))

    # 4. Each event once; each identify logged once; one person per visitor.
    final = stored_uuids(server.database)
    assert len(final) == len(set(final)) == len(sent)
    assert set(final) == sent
    identify_links = query(
        server.database, "SELECT event_uuid, count(*) FROM links WHERE kind = 'identify' GROUP BY event_uuid"
    )
    assert {u: n for u, n in identify_links} == {u: 1 for u in workload.identify_uuids}
    assert query(server.database, "SELECT count(*) FROM persons") == [(VISITORS,)]

    # 5. Read back over the API: each identified person owns the ids its identify linked, and the
    #    events of both; a sample of the anonymous visitors kept persons of their own.
    deadline = time.monotonic() + 30
    headers = {"Authorization": f"Bearer {server.secret_key}"}
    checked = [v for v in workload.visitors if v.user_id is not None] + [
        v for v in workload.visitors if v.user_id is None
    ][:40]
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=REQUEST_TIMEOUT) as api:
        for visitor in checked:
            response = api.get("/api/persons", params={"distinct_id": visitor.anon_id})
            assert response.status_code == 200, response.text
            person = response.json()
            if visitor.user_id is None:
                assert (person["distinct_ids"], person["is_identified"]) == ([visitor.anon_id], False)
            else:
                assert sorted(person["distinct_ids"]) == [visitor.anon_id, visitor.user_id]
                assert person["is_identified"] is True
                assert {k: person["properties"].get(k) for k in ("plan", "name")} == {
                    "plan": "pro", "name": f"User {int(visitor.anon_id[5:])}",
                }
            events = [e["uuid"] for e in person_events(api, person["id"], deadline)]
            assert sorted(events) == sorted(visitor.event_uuids)
