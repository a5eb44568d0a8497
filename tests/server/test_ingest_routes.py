"""Ingestion over HTTP: status codes, encodings, idempotency and per-event errors."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import INGEST_TOKEN, SECRET_KEY

pytestmark = pytest.mark.both_stores


def event(distinct_id: str, name: str = "$pageview", **fields) -> dict:
    return {"event": name, "distinct_id": distinct_id, "properties": fields.pop("properties", {}), **fields}


def batch(*events: dict, **envelope) -> dict:
    return {"api_key": INGEST_TOKEN, "batch": list(events), **envelope}


def count_events(api, distinct_id: str) -> int:
    person = api.get("/api/persons", params={"distinct_id": distinct_id}).json()
    return len(api.get(f"/api/persons/{person['id']}/events").json()["results"])


def test_a_bad_token_gets_401_and_stores_nothing(api):
    response = api.post("/batch/", json={"api_key": "phc_wrong", "batch": [event("anon-1")]})
    assert response.status_code == 401
    assert api.get("/api/persons", params={"distinct_id": "anon-1"}).status_code == 404


def test_a_missing_token_gets_401(client):
    assert client.post("/batch/", json={"batch": [event("anon-1")]}).status_code == 401


def test_the_ingest_token_cannot_read(client):
    client.post("/batch/", json=batch(event("anon-1")))
    response = client.get("/api/persons", params={"distinct_id": "anon-1"}, headers={"Authorization": f"Bearer {INGEST_TOKEN}"})
    assert response.status_code == 401
    assert client.get("/api/warnings").status_code == 401


@pytest.mark.parametrize(
    "body",
    [pytest.param(b"{not json", id="truncated-json"), pytest.param(b"", id="empty"), pytest.param(b"\x1f\x8bxx", id="bad-gzip"),
     pytest.param(b'{"hello": 1}', id="not-an-envelope")],
)
def test_an_undecodable_body_gets_400(client, body):
    response = client.post("/batch/", content=body)
    assert response.status_code == 400
    assert response.json()["detail"]


def test_a_body_over_the_cap_once_inflated_gets_413(client):
    bomb = gzip.compress(b'{"batch": [' + b" " * (30 * 1024 * 1024) + b"]}")
    response = client.post("/batch/", content=bomb, headers={"Content-Type": "text/plain"})
    assert response.status_code == 413


def test_gzip_is_recognised_by_its_magic_bytes_without_a_header(api):
    body = gzip.compress(json.dumps(batch(event("anon-gz"))).encode())
    assert api.post("/e/", content=body, headers={"Content-Type": "text/plain"}).json() == {"status": 1}
    assert api.get("/api/persons", params={"distinct_id": "anon-gz"}).status_code == 200


def test_gzip_announced_by_content_encoding(api):
    body = gzip.compress(json.dumps(batch(event("anon-ce"))).encode())
    assert api.post("/batch/", content=body, headers={"Content-Encoding": "gzip"}).status_code == 200
    assert api.get("/api/persons", params={"distinct_id": "anon-ce"}).status_code == 200


def test_base64_form_bodies_from_posthog_js(api):
    data = base64.b64encode(json.dumps(batch(event("anon-b64"))).encode()).decode()
    response = api.post(
        "/e/?compression=base64", content=f"data={data}", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 200
    assert api.get("/api/persons", params={"distinct_id": "anon-b64"}).status_code == 200


def test_bare_arrays_and_single_events_are_accepted(api):
    single = {**event("anon-single"), "api_key": INGEST_TOKEN}
    assert api.post("/capture/", json=single).status_code == 200
    array = [{**event("anon-array"), "properties": {"token": INGEST_TOKEN}}]
    assert api.post("/e", json=array).status_code == 200
    assert api.get("/api/persons", params={"distinct_id": "anon-single"}).status_code == 200
    assert api.get("/api/persons", params={"distinct_id": "anon-array"}).status_code == 200


def test_resending_an_event_uuid_stores_it_once(api):
    once = event("anon-dup", uuid="0190f3a0-0000-7000-8000-000000000001")
    for _ in range(3):
        assert api.post("/batch/", json=batch(once, once)).status_code == 200
    assert count_events(api, "anon-dup") == 1


def test_one_bad_event_gets_an_error_and_a_dead_letter_while_the_rest_commit(api):
    response = api.post("/batch/", json=batch(event("anon-ok"), {"event": "$pageview", "properties": {}}, event("x" * 201)))
    assert response.status_code == 200
    errors = response.json()["errors"]
    assert [e["index"] for e in errors] == [1, 2]
    assert "distinct_id" in errors[0]["error"]
    assert "201 characters" in errors[1]["error"]
    assert api.get("/api/persons", params={"distinct_id": "anon-ok"}).status_code == 200
    dead = api.get("/api/dead-letters").json()["results"]
    assert sorted(d["reason"] for d in dead) == sorted(e["error"] for e in errors)
    assert {"event": "$pageview", "properties": {}} in [d["payload"] for d in dead]


def test_clock_skew_is_corrected_with_sent_at(api):
    # The device clock is a year behind: timestamp and sent_at are wrong by the same amount.
    api.post("/batch/", json=batch(
        event("anon-skew", timestamp="2025-01-01T00:00:00Z"), sent_at="2025-01-01T00:00:10Z"))
    person = api.get("/api/persons", params={"distinct_id": "anon-skew"}).json()
    stored = api.get(f"/api/persons/{person['id']}/events").json()["results"][0]["timestamp"]
    age = datetime.now(timezone.utc) - datetime.fromisoformat(stored.replace("Z", "+00:00"))
    assert timedelta(seconds=9) < age < timedelta(seconds=30)


def test_merge_dangerously_over_the_ingest_path_is_refused_by_default(api):
    api.post("/batch/", json=batch(
        event("user-1", "$identify", properties={"$anon_distinct_id": "a-1"}),
        event("user-2", "$identify", properties={"$anon_distinct_id": "a-2"}),
        event("user-1", "$merge_dangerously", properties={"alias": "user-2"}),
    ))
    one = api.get("/api/persons", params={"distinct_id": "user-1"}).json()
    two = api.get("/api/persons", params={"distinct_id": "user-2"}).json()
    assert one["id"] != two["id"]
    assert [w["type"] for w in api.get("/api/warnings").json()["results"]] == ["merge_requires_secret_key"]


def test_merge_dangerously_works_when_the_project_allows_it(api):
    assert api.patch("/api/project/settings", json={"allow_merge_over_ingest": True}).status_code == 200
    api.post("/batch/", json=batch(
        event("user-1", "$identify", properties={"$anon_distinct_id": "a-1"}),
        event("user-2", "$identify", properties={"$anon_distinct_id": "a-2"}),
        event("user-1", "$merge_dangerously", properties={"alias": "user-2"}),
    ))
    person = api.get("/api/persons", params={"distinct_id": "user-2"}).json()
    assert sorted(person["distinct_ids"]) == ["a-1", "a-2", "user-1", "user-2"]


def test_two_identified_users_are_never_merged_and_the_refusal_is_a_warning(api):
    api.post("/batch/", json=batch(
        event("alice", "$identify", properties={"$anon_distinct_id": "laptop"}),
        event("bob", "$identify", properties={"$anon_distinct_id": "tablet"}),
        event("alice", "$create_alias", properties={"alias": "bob"}),
    ))
    alice = api.get("/api/persons", params={"distinct_id": "alice"}).json()
    assert sorted(alice["distinct_ids"]) == ["alice", "laptop"]
    (warning,) = api.get("/api/warnings").json()["results"]
    assert warning["type"] == "cannot_merge_already_identified"
    links = api.get(f"/api/persons/{alice['id']}/links").json()["results"]
    assert [link["outcome"] for link in links] == ["created", "refused:cannot_merge_already_identified"]


def test_a_generic_id_is_never_linked(api):
    api.post("/batch/", json=batch(event("user-1", "$identify", properties={"$anon_distinct_id": "null"})))
    person = api.get("/api/persons", params={"distinct_id": "user-1"}).json()
    assert person["distinct_ids"] == ["user-1"]
    (warning,) = api.get("/api/warnings").json()["results"]
    assert warning["type"] == "illegal_distinct_id"
    assert warning["details"]["illegal_distinct_id"] == "null"


def test_secret_key_is_not_an_ingest_token(client):
    assert client.post("/batch/", json={"api_key": SECRET_KEY, "batch": [event("a")]}).status_code == 401


def test_nul_characters_in_an_event_are_stored_where_the_store_can_hold_them(api, store):
    # SQLite keeps NUL; PostgreSQL text cannot hold it, so it keeps U+FFFD in its place, everywhere.
    response = api.post("/batch/", json=batch(event("nul-visitor", "sign\x00up", properties={"note": "a\x00b"},
                                                    **{"$set": {"nick": "x\x00y"}})))
    assert response.status_code == 200, response.text
    person = api.get("/api/persons", params={"distinct_id": "nul-visitor"}).json()
    stored = api.get(f"/api/persons/{person['id']}/events").json()["results"][0]
    kept = "\x00" if store is None else "\ufffd"
    assert stored["event"] == f"sign{kept}up"
    assert stored["properties"]["note"] == f"a{kept}b"
    assert person["properties"]["nick"] == f"x{kept}y"
