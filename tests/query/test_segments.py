"""Saved segments: created, listed, used by id everywhere, protected while in use, deleted."""

from __future__ import annotations

import pytest

from tests.query.conftest import at, bad_request, identify, pageview, track

pytestmark = pytest.mark.both_stores

PRO = {"attribute": "plan", "op": "equals", "value": "pro"}


def make(api, name, document, status=201):
    response = api.post("/api/segments", json={"name": name, "description": f"{name} people", "filter": document})
    assert response.status_code == status, response.text
    return response.json()


def test_a_segment_is_used_by_id_in_every_query(api, send):
    send(identify("u-ada", "c-ada", at(3), "s-ada", set={"plan": "pro"}),
         identify("u-bob", "c-bob", at(2), "s-bob", set={"plan": "free"}))
    send(track("u-ada", "Purchase", at(1), "s-ada"), pageview("c-bob", "https://a.example/", at(1), "s-bob"))
    pro = make(api, "Pro", PRO)
    buyers = make(api, "Pro buyers", {"and": [{"segment": pro["id"]}, {"did": "Purchase"}]})

    assert [s["name"] for s in api.get("/api/segments").json()["results"]] == ["Pro", "Pro buyers"]
    assert api.get(f"/api/segments/{buyers['id']}").json()["filter"] == {"and": [{"segment": pro["id"]}, {"did": "Purchase", "min_count": 1}]}

    persons = api.post("/api/persons/query", json={"segment_id": buyers["id"]}).json()["results"]
    assert [p["display_name"] for p in persons] == ["u-ada"]
    sessions = api.get("/api/sessions", params={"segment_id": pro["id"]}).json()["results"]
    assert [s["session_id"] for s in sessions] == ["s-ada"]
    events = api.post("/api/events/query", json={"segment_id": pro["id"]}).json()["results"]
    assert {e["distinct_id"] for e in events} == {"u-ada"}
    both = api.post("/api/persons/query", json={"segment_id": pro["id"], "filter": {"attribute": "plan", "op": "equals", "value": "free"}})
    assert both.json()["results"] == []


def test_a_segment_in_use_cannot_be_deleted_and_a_deleted_one_is_gone(api):
    pro = make(api, "Pro", PRO)
    user = make(api, "Uses pro", {"not": {"segment": pro["id"]}})
    refused = api.delete(f"/api/segments/{pro['id']}")
    assert refused.status_code == 409 and "Uses pro" in refused.json()["detail"]
    assert api.delete(f"/api/segments/{user['id']}").status_code == 204
    assert api.delete(f"/api/segments/{pro['id']}").status_code == 204
    assert api.get("/api/segments").json() == {"results": [], "next": None}
    assert api.get(f"/api/segments/{pro['id']}").status_code == 404
    assert api.delete(f"/api/segments/{pro['id']}").status_code == 404
    problems = bad_request(api.post("/api/persons/query", json={"segment_id": pro["id"]}))
    assert problems == [("segment_id", f"no saved segment has id {pro['id']}")]


def test_segment_mistakes_are_refused(api):
    make(api, "Pro", PRO)
    assert make(api, "Pro", PRO, status=409)["detail"] == "A segment named 'Pro' already exists"
    assert bad_request(api.post("/api/segments", json={"name": "x", "filter": {"segment": 77}})) == [
        ("filter.segment", "no saved segment has id 77")
    ]
    assert bad_request(api.post("/api/segments", json={"name": "", "filter": PRO}))[0][0] == "name"
    assert bad_request(api.post("/api/segments", json={"name": "y", "filter": {"attribute": "plan"}}))[0][0] == "filter.op"


def test_segment_changes_are_audited(api):
    pro = make(api, "Pro", PRO)
    api.delete(f"/api/segments/{pro['id']}")
    actions = [entry["action"] for entry in api.get("/api/audit-log").json()["results"]]
    assert "create_segment" in actions and "delete_segment" in actions
