"""Server-side attribute updates for a known identity, without an event (Heap's add_user_properties)."""

from __future__ import annotations

import pytest

from tests.query.conftest import at, bad_request, identify, track

pytestmark = pytest.mark.both_stores


def update(api, **body):
    response = api.post("/api/persons/attributes", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_every_operation_applies_through_the_engine(api, send):
    send(identify("user-1", "cookie-1", at(2), set={"plan": "free", "teams": ["core"], "logins": 1, "tags": ["a", "b"]}))
    answer = update(api, distinct_id="cookie-1", set={"plan": "pro"}, set_once={"first_plan": "free"}, unset=["logins"],
                    add={"credits": 5}, append={"history": "upgraded"}, union={"teams": ["growth", "core"]},
                    remove={"tags": "a"})
    assert answer["warnings"] == []
    assert answer["person"]["properties"] == {
        "plan": "pro", "first_plan": "free", "credits": 5, "history": ["upgraded"], "teams": ["core", "growth"], "tags": ["b"]
    }
    assert answer["person"]["user_ids"] == ["user-1"]
    attributes = {a["key"]: a for a in api.get(f"/api/persons/{answer['person']['id']}/attributes").json()}
    assert attributes["plan"]["event_uuid"] == answer["event_uuid"]
    assert "set_attributes" in [e["action"] for e in api.get("/api/audit-log").json()["results"]]


def test_the_same_rules_and_warnings_as_ingest(api, send):
    send(track("cookie-2", "Viewed", at(1)))
    answer = update(api, distinct_id="cookie-2", set={"email": "x@example.com", "contact": "y@example.com"},
                    add={"plan": 1})
    assert sorted(w["type"] for w in answer["warnings"]) == ["pii_on_anonymous", "pii_outside_email"]
    assert answer["person"]["properties"] == {"plan": 1}
    recorded = [w for w in api.get("/api/warnings").json()["results"] if w["distinct_ids"] == ["cookie-2"]]
    assert sorted(w["type"] for w in recorded) == ["pii_on_anonymous", "pii_outside_email"]
    older = update(api, distinct_id="cookie-2", set={"plan": 0}, timestamp="2000-01-01T00:00:00Z")
    assert older["person"]["properties"]["plan"] == 1  # an older set does not win (identity-rules §4)


def test_unknown_ids_and_empty_updates_are_refused(api):
    response = api.post("/api/persons/attributes", json={"distinct_id": "ghost", "set": {"a": 1}})
    assert response.status_code == 404 and "ghost" in response.json()["detail"]
    assert bad_request(api.post("/api/persons/attributes", json={"distinct_id": "ghost"}))[0][0] == "body"
    assert bad_request(api.post("/api/persons/attributes", json={"distinct_id": "g", "add": {"n": "1"}}))[0][0] == "body"
    assert bad_request(api.post("/api/persons/attributes", json={"distinct_id": "g", "sett": {}}))[0][0] == "sett"
