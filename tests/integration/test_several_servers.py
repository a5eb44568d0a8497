"""Several servers: on PostgreSQL they act as one; on one SQLite file a second one refuses to start."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from idstitch.server.app import create_app
from idstitch.server.state import ServerConfig
from tests.integration.conftest import INGEST_TOKEN, SECRET_KEY, ServerProcess

ADMIN = {"Authorization": f"Bearer {SECRET_KEY}"}


@pytest.fixture
def two_servers(postgres_dsn: str, tmp_path: Path) -> Iterator[tuple[TestClient, TestClient]]:
    """Two apps, each with its own writer and caches, on one PostgreSQL database."""
    configs = [
        ServerConfig(data_dir=tmp_path / name, database=postgres_dsn, ingest_token=INGEST_TOKEN, secret_key=SECRET_KEY)
        for name in ("one", "two")
    ]
    with TestClient(create_app(configs[0])) as one, TestClient(create_app(configs[1])) as two:
        yield one, two


def capture(server: TestClient | httpx.Client, event: dict) -> None:
    response = server.post("/capture/", json={"api_key": INGEST_TOKEN, **event})
    assert response.status_code == 200, response.text


def test_posthogs_example_sent_half_to_each_server_gives_one_person_read_from_either(postgres_dsn, tmp_path):
    # The README's promise, as a new user would try it: two `idstitch serve` on two ports, one database.
    servers = [ServerProcess(data_dir=tmp_path / name, log_dir=tmp_path, database_url=postgres_dsn) for name in "ab"]
    for server in servers:
        server.start()
    try:
        with httpx.Client(base_url=servers[0].base_url) as one, httpx.Client(base_url=servers[1].base_url) as two:
            capture(one, {"event": "$identify", "distinct_id": "user_A", "timestamp": "2026-11-20T10:00:00Z",
                          "properties": {"$anon_distinct_id": "laptop-cookie"},
                          "$set": {"name": "User A", "location": "London", "timezone": "GMT"}})
            capture(two, {"event": "$pageview", "distinct_id": "phone-cookie", "timestamp": "2026-11-21T10:00:00Z",
                          "properties": {"$set": {"name": "Anonymous User", "phone": "0800-POSTHOG"}}})
            capture(one, {"event": "$identify", "distinct_id": "user_A", "timestamp": "2026-11-21T10:05:00Z",
                          "properties": {"$anon_distinct_id": "phone-cookie"}, "$set": {"timezone": "GMT+8"}})
            from_one = one.get("/api/persons", params={"distinct_id": "phone-cookie"}, headers=ADMIN).json()
            from_two = two.get("/api/persons", params={"distinct_id": "laptop-cookie"}, headers=ADMIN).json()
    finally:
        for server in servers:
            server.stop()
    assert from_one == from_two
    assert sorted(from_one["distinct_ids"]) == ["laptop-cookie", "phone-cookie", "user_A"]
    assert from_one["properties"] == {"name": "User A", "location": "London", "phone": "0800-POSTHOG", "timezone": "GMT+8"}


def test_attributes_switched_off_through_one_server_are_refused_by_the_other_within_a_second(two_servers):
    one, two = two_servers
    capture(two, {"event": "$pageview", "distinct_id": "visitor", "$set": {"plan": "free"}})  # two caches the project
    assert one.patch("/api/project/settings", json={"attributes_enabled": False}, headers=ADMIN).status_code == 200
    time.sleep(1.0)
    capture(two, {"event": "$pageview", "distinct_id": "visitor", "$set": {"plan": "pro"}})
    person = one.get("/api/persons", params={"distinct_id": "visitor"}, headers=ADMIN).json()
    assert person["properties"]["plan"] == "free"


def test_a_key_revoked_through_one_server_stops_working_on_the_other_at_once(two_servers):
    one, two = two_servers
    created = one.post("/api/keys", json={"label": "ci"}, headers=ADMIN).json()
    bearer = {"Authorization": f"Bearer {created['secret']}"}
    assert two.get("/api/warnings", headers=bearer).status_code == 200
    assert one.delete(f"/api/keys/{created['id']}", headers=ADMIN).status_code == 200
    assert two.get("/api/warnings", headers=bearer).status_code == 401


def test_a_second_server_on_one_sqlite_file_refuses_to_start_and_names_the_first(tmp_path: Path):
    first = ServerProcess(data_dir=tmp_path / "data", log_dir=tmp_path)
    second = ServerProcess(data_dir=tmp_path / "data", log_dir=tmp_path)
    first.start()
    try:
        with pytest.raises(RuntimeError, match=rf"Another idstitch server \(pid {first.pid}\) is serving"):
            second.start()
        # The first server is untouched and still takes events.
        answer = httpx.post(f"{first.base_url}/capture/", json={"api_key": INGEST_TOKEN, "event": "e",
                                                                "distinct_id": "d"})
        assert answer.status_code == 200
    finally:
        second.stop()
        first.stop()
    second.start()  # once the first has stopped, the file is free
    second.stop()


def test_an_api_rate_limit_counts_the_requests_of_every_server(postgres_dsn: str, tmp_path: Path):
    limited = [
        ServerConfig(data_dir=tmp_path / name, database=postgres_dsn, ingest_token=INGEST_TOKEN,
                     secret_key=SECRET_KEY, api_rate_limit=1)  # a burst of 10 requests, then 1 a second
        for name in ("one", "two")
    ]
    with TestClient(create_app(limited[0])) as one, TestClient(create_app(limited[1])) as two:
        statuses = [server.get("/api/warnings", headers=ADMIN).status_code for _ in range(8) for server in (one, two)]
    assert statuses.count(200) in (10, 11), statuses  # 11: a token refilled while the 16 requests ran
    assert statuses[-1] == 429
