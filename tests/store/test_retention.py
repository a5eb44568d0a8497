"""Retention (`events_retention_days`, store/retention.py) on both stores, through the real app: old
events leave the store and the analytics copy, persons, ids and attributes stay, an undo or a
split answers as before, and what undo and split need of an expired event is kept apart."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

import idstitch.analytics.feeder
import idstitch.retention
from idstitch.cli import cli
from idstitch.server.app import create_app
from idstitch.server.state import ServerConfig
from tests.conftest import INGEST_TOKEN, SECRET_KEY
from tests.privacy.conftest import capture, read_rows, store_options

pytestmark = pytest.mark.both_stores

# The server's clock: 30 days of retention keep what came after 2026-11-01T12:00.
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
DISTINCT_IDS = ("anon-1", "user-1", "anon-2", "anon-3")


@pytest.fixture
def config(tmp_path: Path, store: str | None) -> ServerConfig:
    return ServerConfig(
        data_dir=tmp_path / "data", database=store, ingest_token=INGEST_TOKEN, secret_key=SECRET_KEY, analytics="duckdb"
    )


@pytest.fixture
def start(config: ServerConfig) -> Iterator[Callable[[], TestClient]]:
    """`start()`: the real app on the test's store, on the fixed clock, holding the secret key."""
    clients: list[TestClient] = []

    def started() -> TestClient:
        client = TestClient(create_app(config, now=lambda: NOW))
        client.__enter__()
        client.headers["Authorization"] = f"Bearer {SECRET_KEY}"
        clients.append(client)
        return client

    yield started
    for client in clients:
        client.__exit__(None, None, None)


def a_month_ago_and_now(api: TestClient) -> None:
    """Four visitors: events in October (past 30 days) and at the end of November."""
    capture(
        api,
        # Kept apart: a page view whose URL sets automatic attributes, and the identify of a link.
        {"event": "$pageview", "distinct_id": "anon-1", "uuid": "00000000-0000-4000-8000-000000000001",
         "timestamp": "2026-10-01T10:00:00Z", "properties": {"$session_id": "s-old", "$current_url": "https://shop.example/"}},
        # Covered by the page view before it: gone.
        {"event": "Clicked", "distinct_id": "anon-1", "uuid": "00000000-0000-4000-8000-000000000002",
         "timestamp": "2026-10-01T10:05:00Z", "properties": {"$session_id": "s-old"}},
        {"event": "$identify", "distinct_id": "user-1", "uuid": "00000000-0000-4000-8000-000000000003",
         "timestamp": "2026-10-01T10:10:00Z",
         "properties": {"$anon_distinct_id": "anon-1", "$session_id": "s-old", "$set": {"plan": "pro"}}},
        # anon-2's first event is kept (the earliest sign of the id); the two after it go.
        *({"event": "Ping", "distinct_id": "anon-2", "uuid": f"00000000-0000-4000-8000-00000000002{n}",
           "timestamp": f"2026-10-02T0{n}:00:00Z"} for n in range(3)),
        # An attribute operation: kept.
        {"event": "Upgraded", "distinct_id": "user-1", "uuid": "00000000-0000-4000-8000-000000000004",
         "timestamp": "2026-10-03T10:00:00Z", "properties": {"$set": {"plan": "team"}}},
        # A session across the cutoff: its old event is kept (the first of anon-3), its summary stays.
        {"event": "Ping", "distinct_id": "anon-3", "uuid": "00000000-0000-4000-8000-000000000031",
         "timestamp": "2026-11-01T11:00:00Z", "properties": {"$session_id": "s-mid"}},
        {"event": "Ping", "distinct_id": "anon-3", "uuid": "00000000-0000-4000-8000-000000000032",
         "timestamp": "2026-11-01T13:00:00Z", "properties": {"$session_id": "s-mid"}},
        {"event": "Clicked", "distinct_id": "anon-1", "uuid": "00000000-0000-4000-8000-000000000005",
         "timestamp": "2026-11-30T10:00:00Z", "properties": {"$session_id": "s-new"}},
    )


def persons(api: TestClient) -> dict[str, Any]:
    found = {}
    for distinct_id in DISTINCT_IDS:
        response = api.get("/api/persons", params={"distinct_id": distinct_id})
        assert response.status_code == 200, response.text
        found[distinct_id] = response.json()
    return found


def stored(config: ServerConfig, table: str) -> list[str]:
    return sorted(row[0] for row in read_rows(config, f"SELECT uuid FROM {table}"))


def sessions(config: ServerConfig) -> list[str]:
    return sorted(row[0] for row in read_rows(config, "SELECT session_id FROM sessions"))


def copied(api: TestClient) -> int:
    """Events in the analytics copy, once it has caught up with the store."""
    feeder = api.app.state.idstitch.analytics  # type: ignore[attr-defined]
    feeder.catch_up()
    return int(feeder.engine.reader().execute("SELECT count(*) FROM events").fetchone()[0])


def expire_now(api: TestClient) -> list[dict[str, Any]]:
    """A pass of the server's retention, now, through its writer and on its clock."""
    state = api.app.state.idstitch  # type: ignore[attr-defined]
    return [p.to_json() for p in asyncio.run(idstitch.retention.expire_events(state.writer, state.store))]


def wait_for(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.05)


KEPT_APART = ["00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000003",
              "00000000-0000-4000-8000-000000000004", "00000000-0000-4000-8000-000000000020",
              "00000000-0000-4000-8000-000000000031"]
LEFT = ["00000000-0000-4000-8000-000000000005", "00000000-0000-4000-8000-000000000032"]


# On PostgreSQL the copy's first step waits for the feed lease's grace (left open: see the issue 11 note).
@pytest.mark.sqlite_only
def test_the_server_deletes_old_events_from_the_store_and_the_copy_and_keeps_the_persons(start, config, monkeypatch):
    monkeypatch.setattr(idstitch.retention, "EXPIRY_SECONDS", 0.05)
    monkeypatch.setattr(idstitch.analytics.feeder, "EXPIRY_SECONDS", 0.0)
    api = start()
    a_month_ago_and_now(api)
    before = persons(api)
    assert copied(api) == 10

    assert api.patch("/api/project/settings", json={"events_retention_days": 30}).status_code == 200
    wait_for(lambda: stored(config, "events") == LEFT)

    assert stored(config, "retired_events") == KEPT_APART
    wait_for(lambda: copied(api) == 2)
    assert persons(api) == before
    assert before["user-1"]["properties"]["plan"] == "team"
    assert sessions(config) == ["s-mid", "s-new"]
    events = api.get(f"/api/persons/{before['user-1']['id']}/events").json()["results"]
    assert [e["uuid"] for e in events] == ["00000000-0000-4000-8000-000000000005"]
    counted = api.post("/api/counts", json={"measure": "events", "interval": "total"}).json()
    assert counted["total"] == 2


def test_an_undo_and_a_split_after_retention_answer_as_before_it(start, config):
    api = start()
    a_month_ago_and_now(api)
    user = persons(api)["user-1"]
    merged = api.post("/api/persons/merge", json={"target_distinct_id": "user-1", "source_distinct_id": "anon-2"})
    assert merged.status_code == 200, merged.text
    links = api.get(f"/api/persons/{user['id']}/links").json()["results"]
    identify = next(link["id"] for link in links if link["kind"] == "identify")

    def answers() -> list[Any]:
        found = []
        for method, path, body in (
            ("post", f"/api/links/{identify}/undo", None),
            ("post", f"/api/persons/{user['id']}/split", {}),
            ("post", f"/api/persons/{user['id']}/split", {"groups": [["user-1", "anon-2"]]}),
        ):
            response = api.request(method.upper(), path, params={"dry_run": "true"}, json=body)
            assert response.status_code == 200, response.text
            change = response.json()
            found.append({part: change[part] for part in ("persons_before", "persons_after")})
        return found

    before = answers()
    assert api.patch("/api/project/settings", json={"events_retention_days": 30}).status_code == 200
    [expired] = expire_now(api)
    assert (expired["deleted_events"], expired["retired_events"], expired["deleted_sessions"]) == (3, 5, 1)
    assert stored(config, "events") == LEFT

    assert answers() == before
    # And done for real: the split re-derives each id's attributes from what is kept.
    split = api.post(f"/api/persons/{user['id']}/split", json={})
    assert split.status_code == 200, split.text
    after = {tuple(p["distinct_ids"]): p["properties"] for p in split.json()}
    assert after[("user-1",)]["plan"] == "team" and after[("anon-1",)]["$initial_current_url"] == "https://shop.example/"


def test_the_command_expires_every_project_and_says_what_it_did(start, config):
    api = start()
    a_month_ago_and_now(api)
    runner = CliRunner()
    nothing = runner.invoke(cli, ["expire-events", *store_options(config)])
    assert nothing.exit_code == 0 and "no project sets events_retention_days" in nothing.stderr
    # The command runs on the real clock: a day back from now is past every event of 2026-11-30.
    assert api.patch("/api/project/settings", json={"events_retention_days": 1}).status_code == 200

    result = runner.invoke(cli, ["expire-events", *store_options(config)])

    assert result.exit_code == 0, result.output
    [line] = [json.loads(line) for line in result.stdout.splitlines()]
    assert line["project_id"] == 1 and line["events_retention_days"] == 1 and line["before"] > "2026-12-01"
    # Gone: the two pings after anon-2's first, anon-3's second, and the click after anon-1's page
    # view; the last click stays apart, after the identify that names anon-1.
    assert (line["deleted_events"], line["retired_events"], line["deleted_sessions"]) == (4, 6, 3)
    assert stored(config, "events") == [] and sessions(config) == []
    again = runner.invoke(cli, ["expire-events", *store_options(config)])
    assert json.loads(again.stdout)["deleted_events"] == 0 and json.loads(again.stdout)["retired_events"] == 0


def test_an_event_sent_again_after_it_expired_is_a_duplicate_only_if_a_replay_keeps_it(start, config):
    api = start()
    a_month_ago_and_now(api)
    assert api.patch("/api/project/settings", json={"events_retention_days": 30}).status_code == 200
    expire_now(api)
    retired, gone = "00000000-0000-4000-8000-000000000004", "00000000-0000-4000-8000-000000000021"

    answer = capture(
        api,
        {"event": "Upgraded", "distinct_id": "user-1", "uuid": retired, "timestamp": "2026-10-03T10:00:00Z",
         "properties": {"$set": {"plan": "team"}}},
        {"event": "Ping", "distinct_id": "anon-2", "uuid": gone, "timestamp": "2026-10-02T01:00:00Z"},
    )

    assert answer["status"] == 1
    assert retired not in stored(config, "events") and gone in stored(config, "events")


@pytest.mark.parametrize(
    "value, message",
    [
        pytest.param(0, "Setting 'events_retention_days' has value 0. Expected a whole number of days from 1 to 36500", id="zero"),
        pytest.param("30", "Setting 'events_retention_days' has value '30'", id="text"),
        pytest.param(True, "Setting 'events_retention_days' has value True", id="boolean"),
        pytest.param(36501, "has value 36501", id="past-a-century"),
    ],
)
def test_a_bad_retention_is_refused_naming_it(start, value, message):
    api = start()
    response = api.patch("/api/project/settings", json={"events_retention_days": value})
    assert response.status_code == 400, response.text
    assert message in response.text
    assert api.get("/api/project/settings").json()["events_retention_days"] is None
    assert api.patch("/api/project/settings", json={"events_retention_days": 30}).json()["events_retention_days"] == 30
    assert api.patch("/api/project/settings", json={"events_retention_days": None}).json()["events_retention_days"] is None
