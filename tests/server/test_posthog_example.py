"""PostHog's documented identify example, end to end through the real app."""

from __future__ import annotations

import pytest

from tests.conftest import INGEST_TOKEN

pytestmark = pytest.mark.both_stores


def capture(client, event: dict) -> None:
    response = client.post("/capture/", json={"api_key": INGEST_TOKEN, **event})
    assert response.status_code == 200, response.text
    assert response.json() == {"status": 1}


def test_identify_on_a_new_device_keeps_the_users_values_and_adds_the_anonymous_ones(api):
    capture(api, {"event": "$identify", "distinct_id": "user_A", "timestamp": "2026-11-20T10:00:00Z",
                  "properties": {"$anon_distinct_id": "device-1"},
                  "$set": {"name": "User A", "location": "London", "timezone": "GMT"}})
    capture(api, {"event": "$pageview", "distinct_id": "device-2", "timestamp": "2026-11-21T10:00:00Z",
                  "properties": {"$set": {"name": "Anonymous User", "phone": "0800-POSTHOG"}}})
    capture(api, {"event": "$identify", "distinct_id": "user_A", "timestamp": "2026-11-21T10:05:00Z",
                  "properties": {"$anon_distinct_id": "device-2"}, "$set": {"timezone": "GMT+8"}})

    person = api.get("/api/persons", params={"distinct_id": "device-2"}).json()

    assert sorted(person["distinct_ids"]) == ["device-1", "device-2", "user_A"]
    assert person["properties"] == {
        "name": "User A", "location": "London", "phone": "0800-POSTHOG", "timezone": "GMT+8",
    }
    assert person["is_identified"] is True
    assert api.get("/api/persons", params={"distinct_id": "user_A"}).json()["id"] == person["id"]
