"""Writes from one client keep their order through clock-skew correction (identity-rules.md §4).

Each request's `sent_at` also holds the request's time in flight, so correcting every request by
its own `received_at - sent_at` moved consecutive requests of one client by different amounts:
writes made microseconds apart swapped order.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import INGEST_TOKEN

pytestmark = pytest.mark.both_stores


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def send(client, sent_at: datetime, *events: dict) -> None:
    response = client.post("/batch/", json={"api_key": INGEST_TOKEN, "sent_at": iso(sent_at), "batch": list(events)})
    assert response.status_code == 200, response.text
    assert "errors" not in response.json(), response.text


def set_plan(distinct_id: str, plan: str, when: datetime) -> dict:
    return {"event": "$set", "distinct_id": distinct_id, "timestamp": iso(when), "properties": {"$set": {"plan": plan}}}


def test_a_write_made_just_after_another_wins_whatever_each_request_took_in_flight(api):
    now = datetime.now(timezone.utc)
    # The first request spent two seconds in flight (a slow network, a retry), the second none.
    send(api, now - timedelta(seconds=2), set_plan("ada", "trial", now))
    send(api, datetime.now(timezone.utc), set_plan("ada", "pro", now + timedelta(microseconds=1)))
    assert api.get("/api/persons", params={"distinct_id": "ada"}).json()["properties"]["plan"] == "pro"


def test_an_anonymous_session_is_inferred_when_the_login_came_just_after_it_in_the_next_request(api):
    now = datetime.now(timezone.utc)
    send(api, now - timedelta(seconds=3), {
        "event": "$pageview", "distinct_id": "anon-1", "timestamp": iso(now),
        "properties": {"$session_id": "visit-1", "$current_url": "https://shop.example/"},
    })
    send(api, datetime.now(timezone.utc), {
        "event": "$identify", "distinct_id": "user-1", "timestamp": iso(now + timedelta(microseconds=1)),
        "properties": {"$session_id": "visit-2", "$anon_distinct_id": "anon-1"},
    })
    sessions = {s["session_id"]: s for s in api.get("/api/sessions").json()["results"]}
    assert (sessions["visit-1"]["identified"], sessions["visit-1"]["inferred"]) == (False, True)


def test_a_device_clock_an_hour_slow_is_still_corrected_in_full(api):
    now = datetime.now(timezone.utc)
    slow = now - timedelta(hours=1)
    send(api, slow, set_plan("bea", "pro", slow - timedelta(seconds=30)))
    person = api.get("/api/persons", params={"distinct_id": "bea"}).json()
    stored = api.get(f"/api/persons/{person['id']}/events").json()["results"][0]["timestamp"]
    age = now - datetime.fromisoformat(stored.replace("Z", "+00:00"))
    assert timedelta(seconds=25) < age < timedelta(seconds=40)
