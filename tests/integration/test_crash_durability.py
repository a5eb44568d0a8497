"""identity-rules.md §8: a 200 means committed, and re-sending an event uuid is idempotent.

A real server is SIGKILLed while clients stream acknowledged batches, with requests in flight,
at several points of the stream (and workloads of several seeds). After a restart on the same
data directory every batch is sent again, acknowledged or not, as a retrying client would. The
SQLite file is then read directly (read-only) and the persons are read back over the API.

A SIGKILL leaves the page cache intact, so it cannot tell a server that flushes each commit from
one that never does. The power-cut test runs the server on a disk whose unflushed writes are lost
(tests/integration/power_cut.py): what it acknowledged must be on that disk.
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

from tests.conftest import running_in_ci
from tests.integration.conftest import ServerProcess as Server
from tests.integration.power_cut import PowerCutDisk, PowerCutUnavailable, power_cut_disk

if TYPE_CHECKING:
    from conftest import ServerProcess  # the `server` fixture of tests/integration/conftest.py

BATCHES = 100
BATCH_SIZE = 50
VISITORS = 400
SENDERS = 4
# (workload seed, batches acknowledged before the kill): early, midway and late in the stream; the
# seed also picks a delay of up to 20 ms after that acknowledgement, so the kill lands anywhere in
# the writer's cycle.
KILL_POINTS = [
    pytest.param(8, 30, id="seed-8-after-30"),
    pytest.param(21, 3, id="seed-21-after-3"),
    pytest.param(34, 70, id="seed-34-after-70"),
]
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
    # Requests sent whose answer has not been read yet.
    in_flight: set[int] = field(default_factory=set)
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
                with self._lock:
                    self.in_flight.add(index)
                try:
                    response = client.post(
                        "/batch/", content=self.bodies[index], headers={"Content-Type": "application/json"}
                    )
                except httpx.TransportError as error:  # the server died under us
                    with self._lock:
                        self.in_flight.discard(index)
                        self.broken[index] = repr(error)
                    return
                with self._lock:
                    self.in_flight.discard(index)
                    if response.status_code == 200 and response.json() == {"status": 1}:
                        self.acked.add(index)
                        if self.ack_target is not None and len(self.acked) >= self.ack_target:
                            self.enough_acked.set()
                    else:
                        self.refused[index] = f"{response.status_code} {response.text[:500]}"

    def kill_mid_request(self, server: Server, delay: float) -> set[int]:
        """SIGKILL the server `delay` seconds after `ack_target` batches were acknowledged; returns
        the batches that were sent and never answered (the clients cannot record an answer
        while the kill happens)."""
        assert self.enough_acked.wait(STREAM_DEADLINE), f"only {len(self.acked)} batches acknowledged: {self.refused}"
        time.sleep(delay)
        with self._lock:
            in_flight = set(self.in_flight)
            server.kill()
        return in_flight

    def run_in_threads(self, senders: int, deadline: float) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.send, args=(deadline,), daemon=True) for _ in range(senders)]
        for thread in threads:
            thread.start()
        return threads


def stored_uuids(database: Path, *, read_only: bool = True) -> list[str]:
    """Every event uuid in the file, duplicates kept; read-only unless the file is a copy (a
    read-only connection cannot recover a WAL-mode file whose WAL is gone)."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True) if read_only else sqlite3.connect(database)
    try:
        return [row[0] for row in conn.execute("SELECT uuid FROM events")]
    finally:
        conn.close()


def is_wal_mode(database: Path) -> bool:
    """The file's own header says WAL (bytes 18 and 19 are 2; https://sqlite.org/fileformat2.html)."""
    with database.open("rb") as file:
        header = file.read(100)
    return header[:16] == b"SQLite format 3\x00" and header[18:20] == b"\x02\x02"


def assert_acknowledged_and_whole(workload: Workload, stream: Stream, unanswered: set[int], stored: list[str]) -> None:
    """Every acknowledged event is stored once; a batch that was never answered is stored whole
    or not at all (one transaction); nothing that was not sent."""
    acked_uuids = {u for index in stream.acked for u in workload.batch_uuids[index]}
    assert acked_uuids - set(stored) == set(), "acknowledged events were lost"
    assert set(stored) <= workload.all_uuids
    assert len(stored) == len(set(stored))
    for index in unanswered:
        kept = set(workload.batch_uuids[index]) & set(stored)
        assert kept in (set(), set(workload.batch_uuids[index])), f"batch {index} is stored in part: {len(kept)} events"


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


def stream_and_kill(server: Server, workload: Workload, seed: int, kill_after_acks: int) -> tuple[Stream, set[int]]:
    """Stream the workload from a few clients and SIGKILL the server mid-stream; returns the stream
    and the batches in flight at the kill."""
    stream = Stream(server.base_url, workload.bodies, ack_target=kill_after_acks)
    threads = stream.run_in_threads(SENDERS, time.monotonic() + STREAM_DEADLINE)
    in_flight = stream.kill_mid_request(server, delay=random.Random(seed).uniform(0, 0.02))
    for thread in threads:
        thread.join(REQUEST_TIMEOUT + 5)
        assert not thread.is_alive(), "a client thread is still sending to a dead server"
    # An answer read before the kill is recorded once the kill is done.
    unanswered = in_flight - stream.acked
    assert stream.refused == {}
    assert kill_after_acks <= len(stream.acked) < BATCHES, "the kill did not land mid-stream"
    assert unanswered, "no request was in flight at the kill"
    assert unanswered <= set(stream.broken), "a request in flight at the kill was answered"
    return stream, unanswered


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("seed", "kill_after_acks"), KILL_POINTS)
def test_acknowledged_batches_survive_sigkill_and_resending_every_batch_stores_each_event_once(
    server: ServerProcess, seed: int, kill_after_acks: int
) -> None:
    workload = make_workload(server.ingest_token, seed)
    sent = workload.all_uuids
    assert len(sent) == BATCHES * BATCH_SIZE
    # 0. The writer's connection itself reports the durability the guarantee rests on.
    status = httpx.get(f"{server.base_url}/api/status", headers={"Authorization": f"Bearer {server.secret_key}"})
    assert status.json()["durability"] == {"journal_mode": "wal", "synchronous": "full"}, status.text

    # 1. Stream, and SIGKILL the server once some batches are acknowledged, with requests in flight.
    first, unanswered = stream_and_kill(server, workload, seed, kill_after_acks)

    # 2. Before anything runs again: the file is in WAL mode; every acknowledged event is in it,
    #    each batch in flight at the kill is there whole or not at all, and nothing else is.
    assert is_wal_mode(server.database)
    assert_acknowledged_and_whole(workload, first, unanswered, stored_uuids(server.database))

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


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[PowerCutDisk]:
    """A disk to cut the power of; a skip where this machine cannot make one, a failure in CI."""
    try:
        with power_cut_disk(tmp_path) as made:
            yield made
    except PowerCutUnavailable as error:
        if running_in_ci():
            pytest.fail(str(error))
        pytest.skip(str(error))


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("seed", "kill_after_acks"), [
    pytest.param(55, 40, id="seed-55-after-40"), pytest.param(89, 10, id="seed-89-after-10"),
])
def test_acknowledged_batches_survive_a_power_cut(disk: PowerCutDisk, tmp_path: Path, seed: int, kill_after_acks: int) -> None:
    server = Server(data_dir=disk.root / "data", log_dir=tmp_path)
    server.start()
    try:
        workload = make_workload(server.ingest_token, seed)
        stream, unanswered = stream_and_kill(server, workload, seed, kill_after_acks)
    finally:
        server.stop()
    # The kill stops the writes; the power cut then loses whatever the server did not flush.
    recovered = disk.cut_power(tmp_path / "recovered") / "data" / "idstitch.db"
    assert is_wal_mode(recovered)
    assert_acknowledged_and_whole(workload, stream, unanswered, stored_uuids(recovered, read_only=False))
