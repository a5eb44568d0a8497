"""Mutation fuzzing of every ingest route: valid messages of each wire format with a few values
replaced by the encodings of tests/hostile_strategies.py (lone surrogates, NUL, times at the
edge of the calendar, huge integers, numbers as text, wrong types, very long and very deep
values), on the real app and store.

Whatever the mutation, the answer is never a 5xx, and a 200 means every message without a
per-message error is stored: one bad message never costs the batch (issue 17).
"""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import INGEST_TOKEN, SECRET_KEY
from tests.hostile_strategies import as_received, hostile_values, json_body, mutations
from tests.security.conftest import fuzz_settings, stored_uuids

pytestmark = pytest.mark.both_stores

ADMIN = {"Authorization": f"Bearer {SECRET_KEY}"}
NATIVE = {"Authorization": f"Bearer {INGEST_TOKEN}"}
SEGMENT = {"Authorization": "Basic " + base64.b64encode(f"{INGEST_TOKEN}:".encode()).decode()}
_serial = itertools.count()


def fresh_uuid() -> str:
    return f"0000f022-0000-4000-8000-{next(_serial):012d}"


def posthog_event() -> dict[str, Any]:
    return {
        "event": "$identify", "distinct_id": "user-1", "uuid": fresh_uuid(), "timestamp": "2026-03-01T12:00:00.000Z",
        "properties": {"token": INGEST_TOKEN, "$anon_distinct_id": "anon-1", "$current_url": "https://shop.example/?utm_source=news",
                       "$session_id": "s-1", "$set": {"email": "ada@example.com"}, "$set_once": {"first": 1}},
        "$set": {"plan": "pro"},
    }


def native_message() -> dict[str, Any]:
    return {
        "type": "identify", "user_id": "user-1", "anonymous_id": "anon-1", "uuid": fresh_uuid(),
        "timestamp": "2026-03-01T12:00:00Z", "session_id": "s-1", "properties": {"$current_url": "https://shop.example/"},
        "set": {"plan": "pro"}, "add": {"logins": 1}, "unset": ["old"],
    }


def segment_message() -> dict[str, Any]:
    return {
        "type": "page", "userId": "user-1", "anonymousId": "anon-1", "messageId": fresh_uuid(),
        "timestamp": "2026-03-01T12:00:00Z", "sentAt": "2026-03-01T12:00:01Z", "properties": {"path": "/pricing"},
        "traits": {"plan": "pro"}, "context": {"page": {"url": "https://shop.example/pricing", "referrer": "https://a.example/"},
                                               "campaign": {"source": "news"}, "library": {"name": "analytics.js"}},
    }


POSTHOG_KEYS = ["event", "distinct_id", "$distinct_id", "uuid", "timestamp", "properties", "$set", "$set_once", "$unset",
                "$add", "$anon_distinct_id", "alias", "$process_person_profile", "$session_id", "$current_url", "token"]
NATIVE_KEYS = ["type", "distinct_id", "user_id", "anonymous_id", "alias", "event", "uuid", "timestamp", "session_id",
               "properties", "set", "set_once", "unset", "add", "append", "union", "remove"]
SEGMENT_KEYS = ["type", "userId", "anonymousId", "previousId", "groupId", "event", "name", "messageId", "timestamp", "sentAt",
                "properties", "traits", "context", "page", "campaign", "url", "referrer", "userAgent", "sessionId"]

# (route, headers, uuid key, base message, mutable keys, envelope: how a batch is sent)
FORMATS = {
    "posthog-batch": ("/batch/", {}, "uuid", posthog_event, POSTHOG_KEYS, "batch"),
    "posthog-e": ("/e/", {}, "uuid", posthog_event, POSTHOG_KEYS, "list"),
    "posthog-capture": ("/capture/", {}, "uuid", posthog_event, POSTHOG_KEYS, "single"),
    "native-batch": ("/ingest/batch", NATIVE, "uuid", native_message, NATIVE_KEYS, "batch"),
    "native-identify": ("/ingest/identify", NATIVE, "uuid", native_message, NATIVE_KEYS, "single"),
    "segment-batch": ("/v1/batch", SEGMENT, "messageId", segment_message, SEGMENT_KEYS, "batch"),
    "segment-page": ("/v1/page", SEGMENT, "messageId", segment_message, SEGMENT_KEYS, "single"),
}


@st.composite
def requests(draw: st.DrawFn, name: str) -> tuple[bytes, list[Any]]:
    """A body for format `name` and the messages in it: some valid, some mutated."""
    _, _, _, base, keys, envelope = FORMATS[name]
    count = 1 if envelope == "single" else draw(st.integers(min_value=1, max_value=5))
    messages = [draw(mutations(base(), keys) | st.just(base())) for _ in range(count)]
    if envelope == "batch" and draw(st.integers(0, 9)) == 0:
        messages.insert(draw(st.integers(0, len(messages))), draw(hostile_values))  # not even an object
    if envelope == "list":
        return json_body(messages), messages
    outer: dict[str, Any] = {"api_key": INGEST_TOKEN} if name.startswith("posthog") else {}
    if draw(st.booleans()):
        outer[draw(st.sampled_from(["sent_at", "sentAt"]))] = draw(hostile_values)
    if envelope == "single":
        return json_body({**messages[0], **outer}), messages
    return json_body({**outer, "batch": messages}), messages


def answered_errors(body: dict[str, Any]) -> set[int]:
    """Indexes of the messages that got a per-message error (PostHog and Segment: `errors`;
    idstitch's own format: a `rejected` result)."""
    return {e["index"] for e in body.get("errors", [])} | {r["index"] for r in body.get("results", []) if r["status"] == "rejected"}


def as_stored(client: Any, text: str) -> str:
    text = as_received(text)
    return text.replace("\x00", "\ufffd") if client.config.database else text  # PostgreSQL keeps U+FFFD for NUL


def check(client: Any, name: str, body: bytes, messages: list[Any]) -> None:
    route, headers, uuid_key = FORMATS[name][:3]
    response = client.post(route, content=body, headers=headers)
    assert response.status_code < 500, (response.status_code, response.text[:500])
    # 401: a mutation reached the token (a bare list of PostHog events names it in `properties`).
    assert response.status_code in (200, 400, 401, 413), response.text[:500]
    if response.status_code != 200:
        return
    refused = answered_errors(response.json())
    kept = [
        as_stored(client, m[uuid_key]) for i, m in enumerate(messages)
        if i not in refused and isinstance(m, dict) and isinstance(m.get(uuid_key), str)
    ]
    if kept:
        assert stored_uuids(client.config, kept) == set(kept), response.text[:500]


@pytest.mark.parametrize("name", list(FORMATS))
def test_the_unmutated_messages_are_stored(fuzz_client, name):
    """The base messages are valid: without a mutation every one is accepted and stored."""
    route, headers, uuid_key, base = FORMATS[name][:4]
    message = base()
    body = json_body(message if FORMATS[name][5] != "batch" else {"batch": [message]})
    if name.startswith("posthog") and FORMATS[name][5] != "list":
        body = json_body({**json.loads(body), "api_key": INGEST_TOKEN})
    response = fuzz_client.post(route, content=body, headers=headers)
    assert response.status_code == 200 and not answered_errors(response.json()), response.text
    assert stored_uuids(fuzz_client.config, [message[uuid_key]]) == {message[uuid_key]}


@pytest.mark.parametrize("name", list(FORMATS))
@fuzz_settings
@given(data=st.data())
def test_mutated_messages_never_get_a_5xx_and_the_rest_of_the_batch_is_stored(fuzz_client, name, data):
    body, messages = data.draw(requests(name))
    check(fuzz_client, name, body, messages)


@fuzz_settings
@given(body=hostile_values.map(json_body))
def test_session_recordings_take_any_body(fuzz_client, body):
    assert fuzz_client.post("/s/", content=body).status_code == 200


def test_after_the_mutations_everything_stored_reads_back(fuzz_client):
    """What the mutations stored breaks no reader: persons, their events, privacy lookups by
    email, dead letters, warnings, and breakdowns by the properties the messages carried."""
    cursor = None
    while True:
        page = fuzz_client.get("/api/persons", params={"limit": 200, **({"cursor": cursor} if cursor else {})}, headers=ADMIN)
        assert page.status_code == 200, page.text[:500]
        for person in page.json()["results"]:
            for path in ("", "/events", "/attributes", "/links"):
                assert fuzz_client.get(f"/api/persons/{person['id']}{path}", headers=ADMIN).status_code == 200, path
            email = person["properties"].get("email")
            if isinstance(email, str) and 0 < len(email) <= 320:
                assert fuzz_client.get("/api/privacy/export", params={"email": email}, headers=ADMIN).status_code < 500
        cursor = page.json()["next"]
        if cursor is None:
            break
    for path in ("/api/warnings", "/api/dead-letters", "/api/sessions"):
        assert fuzz_client.get(path, params={"limit": 1000}, headers=ADMIN).status_code == 200, path
    for key in ("$current_url", "$referrer", "path", "url"):
        counts = fuzz_client.post("/api/counts", json={"measure": "events", "interval": None, "breakdown": {"property": key}}, headers=ADMIN)
        assert counts.status_code == 200, counts.text[:500]
