"""Who answers an analytics read, as a user sees it: the DuckDB copy once it has caught up (a merge
made a moment ago is in the next answer), else the store, saying how far behind the copy is."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from idstitch.analytics import feeder
from idstitch.server.app import create_app
from tests.conftest import INGEST_TOKEN, SECRET_KEY


def send(api: httpx.Client, *messages: dict) -> None:
    response = api.post("/ingest/batch", json={"token": INGEST_TOKEN, "batch": list(messages)})
    assert response.status_code == 200, response.text


def signed_up(distinct_id: str, plan: str | None = None) -> dict:
    message: dict = {"type": "track", "distinct_id": distinct_id, "event": "Signed up", "timestamp": "2026-11-02T10:00:00Z"}
    if plan:
        message["set"] = {"plan": plan}
    return message


def by_plan(api: httpx.Client) -> dict:
    response = api.post("/api/counts", json={
        "measure": "persons", "interval": None, "events": ["Signed up"], "breakdown": {"attribute": "plan"},
    })
    assert response.status_code == 200, response.text
    return response.json()


def test_a_count_right_after_ingest_is_answered_by_the_copy_with_every_event(api: httpx.Client) -> None:
    send(api, *(signed_up(f"anon-{i}") for i in range(30)))

    answer = api.post("/api/counts", json={"measure": "events", "interval": "day"}).json()

    assert answer["total"] == 30
    assert answer["answered_by"]["engine"] == "duckdb"
    assert answer["answered_by"]["analytics"]["caught_up"] is True


def test_a_merge_made_a_moment_ago_is_in_the_next_breakdown(api: httpx.Client) -> None:
    send(api, signed_up("anon-a", "pro"), signed_up("anon-b", "free"))
    assert {s["breakdown"]: s["total"] for s in by_plan(api)["series"]} == {"pro": 1, "free": 1}

    merged = api.post("/api/persons/merge", json={"target_distinct_id": "anon-a", "source_distinct_id": "anon-b"})
    assert merged.status_code == 200, merged.text
    answer = by_plan(api)

    assert answer["answered_by"]["engine"] == "duckdb"
    assert answer["total"] == 1
    assert [s["total"] for s in answer["series"]] == [1]


def test_a_split_counts_its_parts_as_persons_at_once(api: httpx.Client) -> None:
    send(api, signed_up("anon-a"), signed_up("anon-b"),
         {"type": "identify", "user_id": "user-1", "anonymous_id": "anon-a", "timestamp": "2026-11-02T11:00:00Z"},
         {"type": "alias", "distinct_id": "user-1", "alias": "anon-b", "timestamp": "2026-11-02T11:01:00Z"})
    assert by_plan(api)["total"] == 1
    person = api.get("/api/persons", params={"distinct_id": "anon-b"}).json()

    split = api.post(f"/api/persons/{person['id']}/split", json={"distinct_ids": ["anon-b"]})
    assert split.status_code == 200, split.text

    assert by_plan(api)["total"] == 2


def test_when_the_copy_is_far_behind_the_store_answers_and_says_how_far(
    api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = api.app.state.idstitch  # type: ignore[attr-defined]
    state.analytics.stop()  # the background feeder stops; queries may still catch it up
    monkeypatch.setattr(feeder, "CATCH_UP_EVENTS", 5)
    send(api, *(signed_up(f"anon-{i}") for i in range(12)))

    answer = api.post("/api/counts", json={"measure": "events", "interval": None}).json()

    assert answer["total"] == 12
    assert answer["answered_by"]["engine"] == "store"
    assert answer["answered_by"]["analytics"]["caught_up"] is False
    assert answer["answered_by"]["analytics"]["events_behind"] == 12


def test_the_copy_is_fed_in_the_background_and_its_lag_is_in_the_status(api: httpx.Client) -> None:
    send(api, *(signed_up(f"anon-{i}") for i in range(20)))

    deadline = time.monotonic() + 10
    while True:
        analytics = api.get("/api/status").json()["analytics"]
        if analytics["lag"]["caught_up"] and analytics["lag"]["seq"] >= 20 or time.monotonic() > deadline:
            break
        time.sleep(0.1)

    assert analytics["engine"] == "duckdb"
    assert analytics["location"].endswith("analytics.duckdb")
    assert analytics["lag"]["caught_up"] is True and analytics["lag"]["events_behind"] == 0
    assert analytics["bytes"] > 0


@pytest.fixture
def api_without_copy(config) -> Iterator[httpx.Client]:
    with TestClient(create_app(dataclasses.replace(config, analytics="off"))) as client:
        client.headers["Authorization"] = f"Bearer {SECRET_KEY}"
        yield client


def test_without_a_copy_the_store_answers_everything(api_without_copy: httpx.Client, config) -> None:
    send(api_without_copy, signed_up("anon-a", "pro"))

    answer = by_plan(api_without_copy)

    assert answer["total"] == 1
    assert answer["answered_by"] == {"engine": "store", "analytics": None}
    assert api_without_copy.get("/api/status").json()["analytics"] is None
    assert not (config.data_dir / "analytics.duckdb").exists()


def test_a_restarted_server_resumes_its_copy_and_stores_nothing_twice(config) -> None:
    for _ in range(2):
        with TestClient(create_app(config)) as client:
            client.headers["Authorization"] = f"Bearer {SECRET_KEY}"
            # The second time the same events again, by uuid: duplicates, stored once.
            send(client, *({**signed_up(f"anon-{i}"), "uuid": str(uuid.UUID(int=i + 1))} for i in range(10)))
            answer = client.post("/api/counts", json={"measure": "events", "interval": None}).json()
            assert answer["answered_by"]["engine"] == "duckdb"
            assert answer["total"] == 10
