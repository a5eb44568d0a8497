"""idstitch's own ingest API and the admin API: identify, attributes, merge, split, import."""

from __future__ import annotations

import pytest

from tests.conftest import INGEST_TOKEN

pytestmark = pytest.mark.both_stores

AUTH = {"Authorization": f"Bearer {INGEST_TOKEN}"}


def send(client, message_type: str, **message):
    response = client.post(f"/ingest/{message_type}", json=message, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def person_of(api, distinct_id: str) -> dict:
    response = api.get("/api/persons", params={"distinct_id": distinct_id})
    assert response.status_code == 200, response.text
    return response.json()


def test_identify_stitches_the_anonymous_history_into_the_user(api):
    send(api, "track", distinct_id="cookie-1", event="Viewed pricing", timestamp="2026-11-01T10:00:00Z")
    answer = send(api, "identify", user_id="user-42", anonymous_id="cookie-1", set={"plan": "pro"},
                  timestamp="2026-11-01T10:05:00Z")
    assert answer["results"][0]["status"] == "accepted"

    person = person_of(api, "user-42")
    assert person["distinct_ids"] == ["cookie-1", "user-42"]
    assert person["user_ids"] == ["user-42"]
    assert person["is_identified"] is True
    assert person["properties"] == {"plan": "pro"}
    assert person["display_name"] == "user-42"
    events = api.get(f"/api/persons/{person['id']}/events").json()["results"]
    assert [(e["event"], e["distinct_id"]) for e in events] == [("$identify", "user-42"), ("Viewed pricing", "cookie-1")]


def test_a_second_login_on_the_same_device_starts_a_new_person(api):
    send(api, "identify", user_id="alice", anonymous_id="shared-pc")
    answer = send(api, "identify", user_id="bob", anonymous_id="shared-pc")
    assert answer["results"][0]["warnings"] == ["cannot_merge_already_identified"]
    alice, bob = person_of(api, "alice"), person_of(api, "bob")
    assert alice["id"] != bob["id"]
    assert alice["distinct_ids"] == ["shared-pc", "alice"] or sorted(alice["distinct_ids"]) == ["alice", "shared-pc"]
    assert bob["distinct_ids"] == ["bob"] and bob["is_identified"] is True


def test_identify_with_a_null_user_sets_attributes_on_the_visitor_only(api):
    send(api, "identify", user_id=None, anonymous_id="cookie-9", set={"theme": "dark"})
    person = person_of(api, "cookie-9")
    assert person["properties"] == {"theme": "dark"}
    assert person["is_identified"] is False
    assert person["display_name"].startswith("User ")


def test_attribute_operations_and_their_provenance(api):
    send(api, "identify", user_id="u-1", anonymous_id="c-1", set={"email": "ada@example.com", "plan": "free"})
    send(api, "attributes", distinct_id="u-1", add={"logins": 2}, union={"teams": ["growth", "core"]},
         set_once={"first_plan": "free"}, uuid="op-1")
    send(api, "attributes", distinct_id="u-1", add={"logins": 1}, remove={"teams": "core"}, set_once={"first_plan": "pro"},
         unset=["plan"])
    person = person_of(api, "c-1")
    assert person["properties"] == {"email": "ada@example.com", "logins": 3, "teams": ["growth"], "first_plan": "free"}
    assert person["display_name"] == "ada@example.com"
    attributes = {a["key"]: a for a in api.get(f"/api/persons/{person['id']}/attributes").json()}
    assert attributes["first_plan"]["event_uuid"] == "op-1"
    assert attributes["first_plan"]["operation"] == "set_once"
    assert attributes["logins"]["type"] == "number"
    assert attributes["email"]["type"] == "string"


def test_an_email_on_an_anonymous_visitor_is_dropped_with_a_warning(api):
    answer = send(api, "attributes", distinct_id="cookie-x", set={"email": "x@example.com", "note": "call y@example.com"})
    assert answer["results"][0]["warnings"] == ["pii_on_anonymous"]
    send(api, "attributes", distinct_id="cookie-x", set={"contact": "y@example.com"})
    assert person_of(api, "cookie-x")["properties"] == {"note": "call y@example.com"}
    types = [w["type"] for w in api.get("/api/warnings").json()["results"]]
    assert types == ["pii_outside_email", "pii_on_anonymous"]


def test_attributes_switched_off_refuses_operations_but_counts_events(api):
    api.patch("/api/project/settings", json={"attributes_enabled": False})
    answer = send(api, "track", distinct_id="c-2", event="Clicked", set={"plan": "pro"})
    assert answer["results"][0]["warnings"] == ["attributes_disabled"]
    person = person_of(api, "c-2")
    assert person["properties"] == {}
    assert len(api.get(f"/api/persons/{person['id']}/events").json()["results"]) == 1


@pytest.mark.parametrize(
    ("message", "error"),
    [
        pytest.param({"type": "track", "event": "x"}, "missing `distinct_id`", id="no-id"),
        pytest.param({"type": "track", "distinct_id": True, "event": "x"}, "must be a string or a number", id="bool-id"),
        pytest.param({"type": "track", "distinct_id": "a", "event": ""}, "`event` must be a non-empty string", id="no-name"),
        pytest.param({"type": "attributes", "distinct_id": "a", "add": {"n": "1"}}, "not a number", id="add-string"),
        pytest.param({"type": "wat", "distinct_id": "a"}, "`type` must be one of", id="bad-type"),
        pytest.param({"type": "track", "distinct_id": "a", "event": "x", "timestamp": "yesterday"}, "not an ISO-8601", id="bad-time"),
    ],
)
def test_bad_messages_are_rejected_with_a_reason_and_dead_lettered(api, message, error):
    response = api.post("/ingest/batch", json={"token": INGEST_TOKEN, "batch": [message, {"type": "track", "distinct_id": "ok", "event": "x"}]})
    results = response.json()["results"]
    assert results[0]["status"] == "rejected" and error in results[0]["error"]
    assert results[1]["status"] == "accepted"
    assert api.get("/api/dead-letters").json()["results"][0]["payload"] == message


def test_admin_merge_joins_two_identified_persons_and_is_logged(api):
    send(api, "identify", user_id="ann", anonymous_id="a-phone")
    send(api, "identify", user_id="ann-work", anonymous_id="a-laptop")
    response = api.post("/api/persons/merge", json={"target_distinct_id": "ann", "source_distinct_id": "ann-work"})
    assert response.status_code == 200
    merged = response.json()
    assert sorted(merged["distinct_ids"]) == ["a-laptop", "a-phone", "ann", "ann-work"]
    assert sorted(merged["user_ids"]) == ["ann", "ann-work"]
    links = api.get(f"/api/persons/{merged['id']}/links").json()["results"]
    assert links[-1]["kind"] == "merge" and links[-1]["outcome"] == "merged" and links[-1]["actor"].startswith("admin:")


def test_admin_merge_of_an_unknown_id_is_a_404(api):
    send(api, "identify", user_id="ann", anonymous_id="a-phone")
    response = api.post("/api/persons/merge", json={"target_distinct_id": "ann", "source_distinct_id": "nobody"})
    assert response.status_code == 404
    assert "nobody" in response.json()["detail"]


def test_split_gives_each_id_its_own_person_with_attributes_from_its_own_events(api):
    send(api, "attributes", distinct_id="dev-1", set={"os": "ios"}, timestamp="2026-11-01T10:00:00Z")
    send(api, "identify", user_id="carol", anonymous_id="dev-1", set={"plan": "pro"}, timestamp="2026-11-01T11:00:00Z")
    person = person_of(api, "carol")
    response = api.post(f"/api/persons/{person['id']}/split", json={"distinct_ids": ["dev-1"]})
    assert response.status_code == 200, response.text
    carol, device = person_of(api, "carol"), person_of(api, "dev-1")
    assert carol["id"] != device["id"]
    assert carol["properties"] == {"plan": "pro"} and carol["is_identified"] is True
    assert device["properties"] == {"os": "ios"} and device["is_identified"] is False
    assert [link["outcome"] for link in api.get(f"/api/persons/{device['id']}/links").json()["results"]][-1] == "split"


def test_import_creates_persons_and_refuses_taken_ids_one_by_one(api):
    send(api, "track", distinct_id="taken", event="x")
    response = api.post("/api/persons/import", json={"persons": [
        {"distinct_ids": ["legacy-1", "l1@old"], "user_ids": ["legacy-1"], "properties": {"plan": "gold"},
         "is_identified": True, "created_at": "2020-01-01T00:00:00Z"},
        {"distinct_ids": ["taken"], "properties": {}},
    ]})
    assert response.status_code == 200
    body = response.json()
    assert body["imported"] == 1
    assert "already belong" in body["results"][1]["error"]
    person = person_of(api, "l1@old")
    assert person["properties"] == {"plan": "gold"}
    assert person["created_at"].startswith("2020-01-01")
    assert person["user_ids"] == ["legacy-1"]


def test_settings_validation_names_the_bad_key_and_value(api):
    response = api.patch("/api/project/settings", json={"max_user_ids": 0})
    assert response.status_code == 400
    assert "max_user_ids" in response.json()["detail"] and "0" in response.json()["detail"]
    response = api.patch("/api/project/settings", json={"colour": "red"})
    assert response.status_code == 400 and "colour" in response.json()["detail"]
    assert api.get("/api/project/settings").json()["max_user_ids"] == 1


@pytest.mark.parametrize(
    "rules, named",
    [
        pytest.param({"limits": [{"kind": "device_id", "max": 5}]}, "'identity_rules.limits[0].kind' has value 'device_id'",
                     id="unknown-kind-in-a-limit"),
        pytest.param({"priority": ["user_id", "crm_id"]}, "'identity_rules.priority[1]' has value 'crm_id'",
                     id="unknown-kind-in-the-priority"),
        pytest.param({"kinds": [{"name": "crm_id", "pattern": "(a+)+$"}]},
                     "'identity_rules.kinds[0].pattern': regex '(a+)+$' is refused: nested quantifiers",
                     id="catastrophic-regex"),
        pytest.param({"limits": [{"kind": "anonymous_id", "max": -1, "window_days": 7}]},
                     "'identity_rules.limits[0].max' has value -1", id="negative-max"),
    ],
)
def test_a_bad_identity_rule_is_a_400_naming_it(api, rules, named):
    response = api.patch("/api/project/settings", json={"identity_rules": rules})
    assert response.status_code == 400
    assert named in response.json()["detail"]
    assert api.get("/api/project/settings").json()["identity_rules"] == {}


def test_identity_rules_are_saved_and_read_back(api):
    rules = {
        "kinds": [{"name": "crm_id", "pattern": "^crm_"}],
        "blocked": {"crm_id": {"values": ["crm_test"]}},
        "limits": [{"kind": "anonymous_id", "max": 5, "window_days": 7}],
        "priority": ["user_id", "crm_id", "email", "anonymous_id"],
    }
    assert api.patch("/api/project/settings", json={"identity_rules": rules}).json()["identity_rules"] == rules
    assert api.get("/api/project/settings").json()["identity_rules"] == rules
    send(api, "identify", user_id="crm_test", anonymous_id="cookie-1")
    [warning] = api.get("/api/warnings").json()["results"]
    assert (warning["type"], warning["details"]["rule"]) == ("illegal_distinct_id", "blocked:crm_id")


def test_persons_and_events_are_paged_with_cursors(api):
    for n in range(5):
        send(api, "track", distinct_id=f"v-{n}", event="x", timestamp=f"2026-11-0{n + 1}T00:00:00Z")
    first = api.get("/api/persons", params={"limit": 2}).json()
    second = api.get("/api/persons", params={"limit": 2, "cursor": first["next"]}).json()
    third = api.get("/api/persons", params={"limit": 2, "cursor": second["next"]}).json()
    names = [p["distinct_ids"][0] for p in first["results"] + second["results"] + third["results"]]
    assert names == ["v-4", "v-3", "v-2", "v-1", "v-0"]
    assert third["next"] is None
    assert api.get("/api/persons", params={"cursor": "garbage"}).status_code == 400


def test_the_openapi_document_describes_the_api(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/persons", "/api/persons/{person_id}/events", "/api/warnings", "/api/persons/import",
                 "/api/project/settings", "/ingest/batch", "/batch/"):
        assert path in paths
