"""Hostile input on the ingest routes: every request gets a clear 4xx or per-event errors, the
server stays up, and whatever was accepted is stored (identity-rules.md §8).

The explicit cases are the crashes fuzzing found (kept as regression tests); the properties
throw generated JSON, ids, times and raw bytes at every wire format.
"""

from __future__ import annotations

import base64
import gzip
import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import INGEST_TOKEN, SECRET_KEY
from tests.security.conftest import fuzz_settings, stored_uuids

pytestmark = pytest.mark.both_stores

NATIVE = {"Authorization": f"Bearer {INGEST_TOKEN}"}
SEGMENT = {"Authorization": "Basic " + base64.b64encode(f"{INGEST_TOKEN}:".encode()).decode()}
ADMIN = {"Authorization": f"Bearer {SECRET_KEY}"}
ROUTES = [("/batch/", {}), ("/e/", {}), ("/ingest/batch", NATIVE), ("/ingest/track", NATIVE),
          ("/ingest/identify", NATIVE), ("/v1/batch", SEGMENT), ("/v1/track", SEGMENT)]


def posthog(*events: dict, **envelope) -> bytes:
    return json.dumps({"api_key": INGEST_TOKEN, "batch": list(events), **envelope}).encode()


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


FOUND_BY_FUZZING = {
    # msgspec raises UnicodeDecodeError, not DecodeError, for invalid UTF-8: was a 500.
    "invalid-utf8": b'{"api_key": "phc_test_token", "batch": [{"event": "\xff", "distinct_id": "a"}]}',
    "invalid-utf8-alone": b'"\xff\xfe"',
    # msgspec raises RecursionError past ~900 levels: was a 500.
    "nested-100000": nested(100_000),
    # 300 levels decode and store, then every read of the person failed in pydantic: was a 500 on read.
    "nested-300-in-properties": b'{"api_key": "phc_test_token", "batch": [{"event": "x", "distinct_id": "deep",'
    b' "properties": {"p": ' + nested(300) + b"}}]}",
    # Correcting a timestamp of year 1 by a sent_at of year 9999 overflowed datetime: was a 500.
    "skew-past-year-1": posthog({"event": "x", "distinct_id": "a", "timestamp": "0001-01-01T00:00:00Z"},
                                sent_at="9999-12-31T00:00:00Z"),
    "skew-past-year-9999": posthog({"event": "x", "distinct_id": "a", "timestamp": "9999-12-31T00:00:00Z"},
                                   sent_at="0001-01-01T00:00:00Z"),
}
OTHER_HOSTILE = {
    "truncated-json": b'{"api_key": "phc_test_token", "batch": [{"event": "x", "dist',
    "nul-bytes": posthog({"event": "x\u0000", "distinct_id": "a\u0000b", "uuid": "u\u0000",
                          "properties": {"k\u0000": "v\u0000"}}),
    "lone-surrogate": b'{"api_key": "phc_test_token", "batch": [{"event": "\\ud800", "distinct_id": "a"}]}',
    "huge-integer-id": b'{"api_key": "phc_test_token", "batch": [{"event": "x", "distinct_id": ' + b"9" * 5000 + b"}]}",
    "huge-integer-property": b'{"api_key": "phc_test_token", "batch": [{"event": "x", "distinct_id": "a",'
    b' "properties": {"n": ' + b"9" * 400 + b"}}]}",
    "enormous-id": posthog({"event": "x", "distinct_id": "i" * 100_000}),
    "enormous-token": posthog(api_key="t" * 1_000_000),
    "huge-array": posthog(*([1] * 200_000)),
    "wrong-types": json.dumps({"api_key": 1, "batch": {"event": 2}}).encode(),
    "timestamp-epoch-1e20": posthog({"event": "x", "distinct_id": "a", "timestamp": 1e20}),
    "float-id-1e300": posthog({"event": "x", "distinct_id": 1e300}),
    "gzip-bomb": gzip.compress(b'{"batch": [' + b" " * (40 * 1024 * 1024) + b"]}"),
    "truncated-gzip": gzip.compress(posthog({"event": "x", "distinct_id": "a"}))[:-8],
    "form-not-base64": b"data=%%%%",
    "form-not-ascii": b"data=\xff\xfe",
}


@pytest.mark.parametrize("body", [pytest.param(b, id=k) for k, b in {**FOUND_BY_FUZZING, **OTHER_HOSTILE}.items()])
def test_a_hostile_body_gets_a_clear_answer_on_every_route_and_the_server_stays_up(fuzz_client, body):
    for route, headers in ROUTES:
        response = fuzz_client.post(route, content=body, headers=headers)
        assert response.status_code < 500, (route, response.status_code, response.text[:300])
        if response.status_code >= 400:
            assert response.json()["detail"] if "detail" in response.text else response.text
    good = fuzz_client.post("/batch/", content=posthog({"event": "after", "distinct_id": "survivor"}))
    assert good.status_code == 200 and "errors" not in good.json()


def test_a_too_deeply_nested_body_is_a_400_that_says_so(fuzz_client):
    response = fuzz_client.post("/batch/", content=FOUND_BY_FUZZING["nested-300-in-properties"])
    assert response.status_code == 400
    assert "more than 100 deep" in response.json()["detail"]


def test_a_deep_but_allowed_body_can_be_read_back_through_the_api(fuzz_client):
    body = posthog({"event": "x", "distinct_id": "deep-ok", "properties": {"p": json.loads(nested(90))}})
    assert fuzz_client.post("/batch/", content=body).status_code == 200
    person = fuzz_client.get("/api/persons", params={"distinct_id": "deep-ok"}, headers=ADMIN).json()
    assert fuzz_client.get(f"/api/persons/{person['id']}/events", headers=ADMIN).status_code == 200
    assert fuzz_client.get("/api/privacy/export", params={"distinct_id": "deep-ok"}, headers=ADMIN).status_code == 200


# -- properties ------------------------------------------------------------------------------

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40) | st.sampled_from(["null", "anonymous", "0", "", " ", "[object Object]", "a@b.co", "\x00"])
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
ids = st.one_of(st.text(max_size=24), st.integers(), st.text(min_size=195, max_size=205), json_values)
times = st.one_of(
    st.datetimes(timezones=st.just(__import__("datetime").timezone.utc)).map(lambda t: t.isoformat()),
    st.integers(min_value=-10**18, max_value=10**18), st.text(max_size=30), json_values,
)
attribute_ops = st.dictionaries(st.text(max_size=12), json_values, max_size=4) | json_values
properties = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={
        "$anon_distinct_id": ids, "alias": ids, "distinct_id": ids, "$session_id": json_values,
        "$set": attribute_ops, "$set_once": attribute_ops, "$unset": json_values, "$process_person_profile": json_values,
        "email": json_values, "$current_url": json_values, "token": json_values,
    }),
)
posthog_events = st.fixed_dictionaries({}, optional={
    "event": st.sampled_from(["$pageview", "$identify", "$create_alias", "$merge_dangerously", "$set", "$groupidentify"]) | json_values,
    "distinct_id": ids, "$distinct_id": ids, "properties": properties, "uuid": st.uuids().map(str) | json_values,
    "timestamp": times, "$set": attribute_ops, "$set_once": attribute_ops, "$unset": json_values, "$add": attribute_ops,
})
native_messages = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["track", "identify", "alias", "attributes"]) | json_values,
    "distinct_id": ids, "user_id": ids, "anonymous_id": ids, "alias": ids, "event": st.text(max_size=20) | json_values,
    "properties": json_values, "uuid": st.uuids().map(str) | json_values, "timestamp": times, "session_id": json_values,
    "set": attribute_ops, "set_once": attribute_ops, "unset": json_values, "add": attribute_ops, "append": attribute_ops,
    "union": attribute_ops, "remove": attribute_ops,
})
segment_messages = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["track", "identify", "alias", "page", "screen", "group"]) | json_values,
    "userId": ids, "anonymousId": ids, "previousId": ids, "event": st.text(max_size=20) | json_values,
    "properties": json_values, "traits": attribute_ops, "context": json_values, "messageId": st.uuids().map(str) | json_values,
    "timestamp": times, "sentAt": times, "integrations": json_values,
})


def with_uuids(messages: list, key: str) -> list:
    """The messages, each object without an id given a fresh one to find it by."""
    return [{**m, key: str(uuid.uuid4())} if isinstance(m, dict) and key not in m else m for m in messages]


def post_and_check_what_is_stored(client, path: str, headers: dict, envelope: dict, key: str) -> None:
    """A 200 means every message without a per-message error is stored, and nothing more.

    PostHog's and Segment's answers list only the errors: each other message is stored under the
    id it was sent with, or (sent with a null id) under one the server made; so the events table
    grows by exactly the messages accepted whose id it did not hold yet.
    """
    sent = envelope["batch"]
    ids = list({m[key] for m in sent if isinstance(m, dict) and isinstance(m.get(key), str) and m[key]})
    held_before = stored_uuids(client.config, ids) if ids else set()
    events_before = event_count(client)
    response = client.post(path, content=json.dumps(envelope).encode(), headers=headers)
    assert response.status_code in (200, 400, 401, 413), response.text[:500]
    if response.status_code != 200:
        assert event_count(client) == events_before, "a refused request stored events"
        return
    errors = {e["index"] for e in response.json().get("errors", [])}
    accepted = [m for i, m in enumerate(sent) if i not in errors]
    assert all(isinstance(m, dict) and (m.get(key) is None or isinstance(m[key], str)) for m in accepted), (
        "a message that cannot be stored was accepted without an error", response.json())
    named = {m[key] for m in accepted if m.get(key) is not None}
    server_named = sum(1 for m in accepted if m.get(key) is None)
    assert stored_uuids(client.config, list(named)) == named if named else True
    assert event_count(client) - events_before == len(named - held_before) + server_named, response.json()


def event_count(client) -> int:
    conn = client.config.store().connect(read_only=True)
    try:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        conn.close()


@fuzz_settings
@given(events=st.lists(posthog_events, max_size=6), sent_at=st.none() | times)
def test_posthog_batches_of_generated_events(fuzz_client, events, sent_at):
    envelope = {"api_key": INGEST_TOKEN, "batch": with_uuids(events, "uuid")}
    if sent_at is not None:
        envelope["sent_at"] = sent_at
    post_and_check_what_is_stored(fuzz_client, "/batch/", {}, envelope, "uuid")


@fuzz_settings
@given(messages=st.lists(native_messages, max_size=6), sent_at=st.none() | times)
def test_native_batches_of_generated_messages(fuzz_client, messages, sent_at):
    # The native answer names each message's outcome and uuid: every one not rejected is stored.
    envelope = {"batch": with_uuids(messages, "uuid"), **({"sent_at": sent_at} if sent_at is not None else {})}
    events_before = event_count(fuzz_client)
    response = fuzz_client.post("/ingest/batch", content=json.dumps(envelope).encode(), headers=NATIVE)
    assert response.status_code in (200, 400, 413), response.text[:500]
    if response.status_code != 200:
        assert event_count(fuzz_client) == events_before, "a refused request stored events"
        return
    body = response.json()
    results = body["results"]
    assert [r["index"] for r in results] == list(range(len(messages)))
    assert all(r["status"] in ("accepted", "duplicate", "rejected") for r in results)
    kept = {r["uuid"] for r in results if r["status"] in ("accepted", "duplicate")}
    assert stored_uuids(fuzz_client.config, list(kept)) == kept if kept else True
    assert event_count(fuzz_client) - events_before == body["accepted"], body


@fuzz_settings
@given(messages=st.lists(segment_messages, max_size=6), envelope=st.dictionaries(st.sampled_from(["sentAt", "context", "writeKey"]), json_values))
def test_segment_batches_of_generated_messages(fuzz_client, messages, envelope):
    body = {**envelope, "batch": with_uuids(messages, "messageId")}
    post_and_check_what_is_stored(fuzz_client, "/v1/batch", SEGMENT, body, "messageId")


@fuzz_settings
@given(value=json_values, route=st.sampled_from(ROUTES))
def test_any_json_document_on_any_ingest_route(fuzz_client, value, route):
    path, headers = route
    response = fuzz_client.post(path, content=json.dumps(value).encode(), headers=headers)
    assert response.status_code in (200, 400, 401, 413), response.text[:500]


@fuzz_settings
@given(
    body=st.binary(max_size=300),
    wrap=st.sampled_from(["raw", "gzip", "form", "form-gzip", "truncated-gzip"]),
    route=st.sampled_from(ROUTES),
    content_type=st.sampled_from(["", "application/json", "text/plain", "application/x-www-form-urlencoded"]),
)
def test_any_bytes_on_any_ingest_route(fuzz_client, body, wrap, route, content_type):
    if wrap in ("gzip", "form-gzip", "truncated-gzip"):
        body = gzip.compress(body)
        if wrap == "truncated-gzip":
            body = body[: len(body) // 2]
    if wrap.startswith("form"):
        body = b"data=" + base64.b64encode(body)
    path, headers = route
    response = fuzz_client.post(path, content=body, headers={**headers, "Content-Type": content_type})
    assert response.status_code in (200, 400, 401, 413), response.text[:500]


def test_after_all_that_every_stored_person_can_still_be_read(fuzz_client):
    """The data the properties above stored must not break a reader (the 300-levels bug)."""
    cursor = None
    seen = 0
    while True:
        page = fuzz_client.get("/api/persons", params={"limit": 200, **({"cursor": cursor} if cursor else {})}, headers=ADMIN)
        assert page.status_code == 200, page.text[:500]
        for person in page.json()["results"]:
            seen += 1
            for path in ("", "/events", "/attributes", "/links"):
                response = fuzz_client.get(f"/api/persons/{person['id']}{path}", headers=ADMIN)
                assert response.status_code == 200, (path, response.text[:300])
            lookup = fuzz_client.get("/api/privacy/persons", params={"person_id": person["id"]}, headers=ADMIN)
            assert lookup.status_code == 200, lookup.text[:300]
        cursor = page.json()["next"]
        if cursor is None:
            break
    assert seen > 0
    for path in ("/api/warnings", "/api/dead-letters", "/api/audit-log"):
        assert fuzz_client.get(path, params={"limit": 1000}, headers=ADMIN).status_code == 200


def nesting(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(nesting, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(nesting, value), default=0)
    return 0


tricky_text = st.text(alphabet=st.sampled_from('[]{}"\\a\n'), max_size=8)
bracket_values = st.recursive(
    st.none() | tricky_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky_text, inner, max_size=3),
    max_leaves=30,
)


@fuzz_settings
@given(value=bracket_values, limit=st.integers(min_value=0, max_value=12), indent=st.sampled_from([None, 1]))
def test_the_nesting_check_agrees_with_a_walk_of_the_decoded_value(value, limit, indent):
    from idstitch.ingest.decoding import nests_deeper_than

    body = json.dumps(value, indent=indent, ensure_ascii=indent is None).encode()
    assert nests_deeper_than(body, limit) == (nesting(value) > limit)


def test_imported_ids_follow_the_distinct_id_rules(fuzz_client):
    # Found by Schemathesis: `POST /api/persons/import` stored "" (and any length) as a distinct id.
    response = fuzz_client.post("/api/persons/import", headers=ADMIN, json={"persons": [
        {"distinct_ids": [""]}, {"distinct_ids": ["x" * 201]}, {"distinct_ids": ["a\u0000b"]}, {"distinct_ids": ["ok-import"]},
    ]})
    assert response.status_code == 200
    body = response.json()
    assert body["imported"] == 1
    assert [bool(r.get("error")) for r in body["results"]] == [True, True, True, False]
    assert "empty" in body["results"][0]["error"] and "at most 200" in body["results"][1]["error"]
