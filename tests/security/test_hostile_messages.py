"""One hostile message in a batch is refused on its own (a per-message error and a dead letter)
or stored repaired; the rest of the batch is stored and nothing answers 5xx, then or later when
the stored data is read back (issue 17, "Hostile input and load").

Each case here answered 500 or a whole-batch 400 against a real server before it was fixed.
"""

from __future__ import annotations

import base64
import json

import pytest

from tests.conftest import INGEST_TOKEN, SECRET_KEY
from tests.security.conftest import stored_uuids

pytestmark = pytest.mark.both_stores

ADMIN = {"Authorization": f"Bearer {SECRET_KEY}"}
NATIVE = {"Authorization": f"Bearer {INGEST_TOKEN}"}
SEGMENT = {"Authorization": "Basic " + base64.b64encode(f"{INGEST_TOKEN}:".encode()).decode()}


def uuid_of(n: int, prefix: int) -> str:
    return f"{prefix:08x}-0000-4000-8000-{n:012d}"


# -- lone surrogates --------------------------------------------------------------------------

# What JavaScript's JSON.stringify writes for a string cut in the middle of an emoji: the escape
# of a lone surrogate. Python's json.dumps writes the same for a str holding one.
BROKEN = "cut \ud83d"


@pytest.mark.parametrize(
    "route, headers, message",
    [
        pytest.param("/batch/", {}, lambda i, u: {"event": BROKEN, "distinct_id": f"visitor-{i} {BROKEN}", "uuid": u,
                                                  "properties": {BROKEN: BROKEN, "$set": {"name": BROKEN}}}, id="posthog"),
        pytest.param("/ingest/batch", NATIVE, lambda i, u: {"type": "identify", "user_id": f"visitor-{i} {BROKEN}", "uuid": u,
                                                            "properties": {BROKEN: BROKEN}, "set": {"name": BROKEN}}, id="native"),
        pytest.param("/v1/batch", SEGMENT, lambda i, u: {"type": "identify", "userId": f"visitor-{i} {BROKEN}", "messageId": u,
                                                         "traits": {"name": BROKEN}, "context": {"page": {"title": BROKEN}}}, id="segment"),
    ],
)
def test_a_lone_surrogate_is_stored_as_u_fffd_and_the_batch_is_kept(fuzz_client, route, headers, message):
    prefix = sum(map(ord, route))
    batch = [message(i, uuid_of(i, prefix)) for i in range(3)]
    body = json.dumps({"api_key": INGEST_TOKEN, "batch": batch}).encode()  # ensure_ascii: `\ud83d` escapes
    assert b"\\ud83d" in body
    response = fuzz_client.post(route, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert "errors" not in response.json() and all(r["status"] == "accepted" for r in response.json().get("results", []))
    assert stored_uuids(fuzz_client.config, [uuid_of(i, prefix) for i in range(3)]) == {uuid_of(i, prefix) for i in range(3)}
    person = fuzz_client.get("/api/persons", params={"distinct_id": "visitor-1 cut \ufffd"}, headers=ADMIN)
    assert person.status_code == 200, person.text
    assert person.json()["properties"]["name"] == "cut \ufffd"


def test_escaped_backslashes_and_real_surrogate_pairs_are_left_as_they_are(fuzz_client):
    body = (
        b'{"api_key": "' + INGEST_TOKEN.encode() + b'", "batch": [{"event": "x", "distinct_id": "pairs",'
        b' "$set": {"text": "\\\\ud800", "emoji": "\\ud83d\\ude00", "lone": "\\udc00\\ud800"}}]}'
    )
    assert fuzz_client.post("/batch/", content=body).status_code == 200
    person = fuzz_client.get("/api/persons", params={"distinct_id": "pairs"}, headers=ADMIN).json()
    assert person["properties"] == {"text": "\\ud800", "emoji": "\U0001f600", "lone": "\ufffd\ufffd"}


# -- NUL in the ids a batch claims ----------------------------------------------------------

def test_a_nul_in_an_event_uuid_or_session_id_keeps_the_batch(fuzz_client):
    # PostgreSQL text cannot hold NUL: the claimed uuids and session ids are looked up as arrays.
    batch = [
        {"type": "track", "event": "x", "distinct_id": "nul-ids", "uuid": "\x00", "session_id": "s"},
        {"type": "track", "event": "x", "distinct_id": "nul-ids", "uuid": uuid_of(1, 0x40), "session_id": "s-\x00"},
        {"type": "track", "event": "x", "distinct_id": "nul-ids", "uuid": uuid_of(2, 0x40)},
    ]
    response = fuzz_client.post("/ingest/batch", json={"batch": batch}, headers=NATIVE)
    assert response.status_code == 200, response.text
    assert stored_uuids(fuzz_client.config, [uuid_of(1, 0x40), uuid_of(2, 0x40)]) == {uuid_of(1, 0x40), uuid_of(2, 0x40)}


# -- times at the edge of the calendar -------------------------------------------------------

EDGE_TIMESTAMPS = [
    pytest.param("0001-01-01T00:00:00+23:59", id="year-1-with-an-eastern-offset"),
    pytest.param("9999-12-31T23:59:59-23:59", id="year-9999-with-a-western-offset"),
    pytest.param(10**400, id="integer-too-large-for-a-float"),
    pytest.param(-(10**400), id="negative-integer-too-large-for-a-float"),
    pytest.param("1e400", id="number-as-text-too-large"),
]


@pytest.mark.parametrize("timestamp", EDGE_TIMESTAMPS)
@pytest.mark.parametrize(
    "route, headers, uuid_key, message",
    [
        pytest.param("/batch/", {}, "uuid", {"event": "edge", "distinct_id": "edge"}, id="posthog"),
        pytest.param("/ingest/batch", NATIVE, "uuid", {"type": "track", "event": "edge", "distinct_id": "edge"}, id="native"),
        pytest.param("/v1/batch", SEGMENT, "messageId", {"type": "track", "event": "edge", "userId": "edge"}, id="segment"),
    ],
)
def test_a_timestamp_past_the_calendar_refuses_that_message_only(fuzz_client, route, headers, uuid_key, message, timestamp):
    prefix = abs(hash((route, str(timestamp)))) % 2**32
    bad, good = uuid_of(0, prefix), uuid_of(1, prefix)
    batch = [{**message, uuid_key: bad, "timestamp": timestamp}, {**message, uuid_key: good}]
    response = fuzz_client.post(route, content=json.dumps({"api_key": INGEST_TOKEN, "batch": batch}), headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    errors = body.get("errors") or [r for r in body["results"] if r["status"] == "rejected"]
    assert [e["index"] for e in errors] == [0]
    assert "within the years 1 to 9999" in errors[0]["error"]
    assert stored_uuids(fuzz_client.config, [bad, good]) == {good}


@pytest.mark.parametrize(
    "sent_at",
    [pytest.param("0001-01-01T00:00:00+23:59", id="year-1-with-an-offset"), pytest.param(10**400, id="huge-integer")],
)
def test_a_sent_at_past_the_calendar_is_ignored_and_the_batch_stored(fuzz_client, sent_at):
    uuid = uuid_of(7, abs(hash(str(sent_at))) % 2**32)
    body = json.dumps({"api_key": INGEST_TOKEN, "sent_at": sent_at, "batch": [{"event": "x", "distinct_id": "s", "uuid": uuid}]})
    response = fuzz_client.post("/batch/", content=body)
    assert response.status_code == 200 and response.json() == {"status": 1}
    assert stored_uuids(fuzz_client.config, [uuid]) == {uuid}
    query = fuzz_client.post("/e/", params={"_": "9" * 400}, content=body.replace(uuid, uuid[:-1] + "f"))
    assert query.status_code == 200 and query.json() == {"status": 1}


# -- what was dead-lettered reads back ------------------------------------------------------


def test_a_bare_string_in_a_batch_is_dead_lettered_and_reads_back(fuzz_client):
    body = json.dumps({"api_key": INGEST_TOKEN, "batch": ["hello bare.string@example.com", {"event": "x", "distinct_id": "b"}]})
    response = fuzz_client.post("/batch/", content=body)
    assert response.json() == {"status": 1, "errors": [{"index": 0, "error": "an event must be a JSON object"}]}
    letters = fuzz_client.get("/api/dead-letters", headers=ADMIN)
    assert letters.status_code == 200, letters.text
    assert "hello bare.string@example.com" in [d["payload"] for d in letters.json()["results"]]
    for path in ("/api/privacy/persons", "/api/privacy/export"):
        found = fuzz_client.get(path, params={"email": "bare.string@example.com"}, headers=ADMIN)
        assert found.status_code == 200, found.text
        assert [d["payload"] for d in found.json()["unattributed_dead_letters"]] == ["hello bare.string@example.com"]


# -- breakdowns by odd property names --------------------------------------------------------


def test_a_breakdown_by_a_property_name_with_nul_is_a_clear_400(fuzz_client):
    response = fuzz_client.post("/api/counts", json={"measure": "events", "breakdown": {"property": "a\u0000b"}}, headers=ADMIN)
    assert response.status_code in (400, 422), response.text
    assert "control character" in response.text


def test_a_breakdown_by_a_property_name_with_u_fffd_counts_it(fuzz_client):
    body = b'{"api_key": "' + INGEST_TOKEN.encode() + b'", "batch": [{"event": "odd-key", "distinct_id": "k",' \
        b' "properties": {"plan\\udfff": "pro"}}]}'
    assert fuzz_client.post("/batch/", content=body).status_code == 200
    response = fuzz_client.post(
        "/api/counts", json={"measure": "events", "events": ["odd-key"], "breakdown": {"property": "plan\ufffd"}}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    assert [(s["breakdown"], s["total"]) for s in response.json()["series"]] == [("pro", 1)]


# -- values of the right type that the standard library still refuses ------------------------


@pytest.mark.parametrize("page", [{"url": "http://["}, {"referrer": "https://[::1/x"}], ids=["url", "referrer"])
def test_a_segment_page_url_that_cannot_be_split_is_kept_and_the_batch_stored(fuzz_client, page):
    uuid = uuid_of(1, sum(map(ord, str(page))))
    message = {"type": "page", "userId": "broken-url", "messageId": uuid, "context": {"page": page}}
    response = fuzz_client.post("/v1/batch", json={"batch": [message]}, headers=SEGMENT)
    assert response.status_code == 200 and response.json() == {"success": True}, response.text
    assert stored_uuids(fuzz_client.config, [uuid]) == {uuid}
    events = fuzz_client.get("/api/persons", params={"distinct_id": "broken-url"}, headers=ADMIN).json()
    stored = fuzz_client.get(f"/api/persons/{events['id']}/events", headers=ADMIN).json()["results"]
    kept = {"url": "$current_url", "referrer": "$referrer"}
    assert [e["properties"][kept[k]] for e in stored if e["uuid"] == uuid for k in page] == list(page.values())
