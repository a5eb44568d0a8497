"""Every way a known client encodes a body, and the old query-parameter styles of posthog-js.

The unit tests call `decode_body` directly; the route tests post the same bytes to the real app
(in-process) the way each posthog-js era did (wire-formats.md §1.3-1.5).
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import pytest

from idstitch.ingest.decoding import BodyError, decode_body
from tests.conftest import INGEST_TOKEN

pytestmark = pytest.mark.both_stores

MAX = 1024 * 1024
PAYLOAD = {"api_key": INGEST_TOKEN, "batch": [{"event": "$pageview", "properties": {"distinct_id": "anon-1"}}]}
TEXT = json.dumps(PAYLOAD).encode()
FORM = "application/x-www-form-urlencoded"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        pytest.param(TEXT, {"content_type": "application/json"}, id="json"),
        pytest.param(TEXT, {"content_type": "text/plain"}, id="json-as-text-plain"),
        pytest.param(TEXT, {"content_type": FORM}, id="json-as-form-like-curl"),
        pytest.param(gzip.compress(TEXT), {"content_type": "text/plain"}, id="gzip-sniffed-posthog-js"),
        pytest.param(gzip.compress(TEXT), {"content_encoding": "gzip", "content_type": "application/json"},
                     id="gzip-announced-python-sdks"),
        pytest.param(gzip.compress(TEXT), {"compression_hint": "gzip-js"}, id="gzip-query-hint-old-posthog-js"),
        pytest.param(f"data={quote(b64(TEXT))}".encode(), {"content_type": FORM}, id="base64-form"),
        pytest.param(f"data={b64(TEXT)}".encode(), {}, id="base64-form-without-content-type"),
        pytest.param(f"data={b64(TEXT).replace('+', ' ').rstrip('=')}".encode(), {"content_type": FORM},
                     id="base64-form-plus-damaged-to-spaces-unpadded"),
        pytest.param(f"ver=1.250.0&data={quote(b64(TEXT))}".encode(), {"content_type": FORM},
                     id="base64-form-other-fields"),
        pytest.param(f"data={quote(b64(gzip.compress(TEXT)))}".encode(), {"content_type": FORM}, id="base64-of-gzip"),
    ],
)
def test_every_client_encoding_decodes_to_the_same_json(body: bytes, headers: dict[str, str]):
    assert decode_body(body, max_bytes=MAX, **headers) == PAYLOAD


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        pytest.param(b"", {}, "body is empty", id="empty"),
        pytest.param(gzip.compress(TEXT)[:-12], {}, "gzip body is truncated", id="truncated-gzip"),
        pytest.param(b"\x1f\x8bnot gzip", {}, "body is not valid gzip", id="bad-gzip"),
        pytest.param(b"ver=1&ip=1", {"content_type": FORM}, "form body has no `data` field", id="form-without-data"),
        # lz-string from pre-2021 posthog-js (`compression=lz64`): refused, the client drops it on 400.
        pytest.param(b"N4IgLgpgtgzgHgTwE", {"compression_hint": "lz64"}, "body is not valid JSON", id="lz64"),
    ],
)
def test_an_undecodable_body_names_the_problem(body: bytes, headers: dict[str, str], message: str):
    with pytest.raises(BodyError, match=message) as raised:
        decode_body(body, max_bytes=MAX, **headers)
    assert raised.value.too_large is False


def test_a_gzip_bomb_stops_at_the_cap():
    with pytest.raises(BodyError, match="larger than 1024 bytes once decompressed") as raised:
        decode_body(gzip.compress(b" " * 100_000 + TEXT), max_bytes=1024)
    assert raised.value.too_large is True


# -- through the routes, era by era -----------------------------------------------------------


def js_event(distinct_id: str, name: str = "$pageview", **fields: Any) -> dict[str, Any]:
    """An event as posthog-js builds it: the token and distinct id inside `properties`."""
    return {"event": name, "properties": {"token": INGEST_TOKEN, "distinct_id": distinct_id}, **fields}


def millis(moment: datetime) -> str:
    return str(int(moment.timestamp() * 1000))


def gzipped(value: Any) -> bytes:
    return gzip.compress(json.dumps(value).encode())


def form(value: Any) -> bytes:
    return f"data={quote(b64(json.dumps(value).encode()))}".encode()


TEXT_PLAIN = {"Content-Type": "text/plain"}


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        pytest.param("/e/?ip=1&_={now}&ver=1.250.0&compression=gzip-js", lambda now: gzipped(js_event("anon-era")),
                     TEXT_PLAIN, id="1.250-single-event-gzip-js-hint"),
        pytest.param("/e/?ip=0&_={now}&ver=1.380.0&compression=gzip-js", lambda now: gzipped([js_event("anon-era")]),
                     TEXT_PLAIN, id="1.380-array-gzip-js-hint"),
        pytest.param("/e/?_={now}&ver=1.398.2", lambda now: gzipped([js_event("anon-era")]),
                     TEXT_PLAIN, id="1.398.2-gzip-without-hint"),
        pytest.param("/e/?sent_at={now}&ver=1.407.1&compression=base64", lambda now: form([js_event("anon-era")]),
                     {"Content-Type": FORM}, id="1.407.1-sent-at-query-base64-form"),
        pytest.param("/e/", lambda now: gzipped({"api_key": INGEST_TOKEN, "batch": [js_event("anon-era")],
                                                 "sent_at": now.isoformat()}),
                     TEXT_PLAIN, id="1.449-envelope-gzip"),
        pytest.param("/e/?compression=base64",
                     lambda now: form({"api_key": INGEST_TOKEN, "batch": [js_event("anon-era")],
                                       "sent_at": now.isoformat()}),
                     {"Content-Type": FORM}, id="1.449-beacon-base64-form"),
        pytest.param("/i/v0/e/?retry_count=2",
                     lambda now: json.dumps({"api_key": INGEST_TOKEN, "batch": [js_event("anon-era")]}).encode(),
                     {"Content-Type": "application/json"}, id="1.449-json-retry"),
    ],
)
def test_each_posthog_js_era_is_accepted(api, path: str, body: Callable[[datetime], bytes], headers: dict[str, str]):
    now = datetime.now(timezone.utc)
    response = api.post(path.replace("{now}", millis(now)), content=body(now), headers=headers)
    assert (response.status_code, response.json()) == (200, {"status": 1})
    assert api.get("/api/persons", params={"distinct_id": "anon-era"}).status_code == 200


@pytest.mark.parametrize("parameter", ["_", "sent_at"])
def test_the_query_sent_at_of_old_posthog_js_corrects_clock_skew(api, parameter: str):
    # The device clock is a day behind; its event time and its sent-at are wrong by the same day.
    device_now = datetime.now(timezone.utc) - timedelta(days=1)
    event = js_event("anon-skew", timestamp=(device_now - timedelta(seconds=10)).isoformat())
    response = api.post(f"/e/?{parameter}={millis(device_now)}&ver=1.380.0", content=gzipped([event]))
    assert response.status_code == 200
    person = api.get("/api/persons", params={"distinct_id": "anon-skew"}).json()
    (stored,) = api.get(f"/api/persons/{person['id']}/events").json()["results"]
    age = datetime.now(timezone.utc) - datetime.fromisoformat(stored["timestamp"].replace("Z", "+00:00"))
    assert timedelta(seconds=9) < age < timedelta(seconds=30)


def test_segment_gzip_announced_by_content_encoding(api):
    message = {"type": "track", "event": "Viewed", "anonymousId": "anon-seg", "userId": None}
    body = {"batch": [message], "writeKey": INGEST_TOKEN}
    response = api.post("/v1/batch", content=gzipped(body),
                        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert (response.status_code, response.json()) == (200, {"success": True})
    assert api.get("/api/persons", params={"distinct_id": "anon-seg"}).status_code == 200


def test_analytics_js_json_sent_as_text_plain(api):
    # analytics.js posts JSON as text/plain (no preflight), with the write key in the body only.
    body = {"type": "page", "anonymousId": "anon-ajs", "userId": None, "writeKey": INGEST_TOKEN,
            "messageId": "ajs-next-1", "context": {"page": {"url": "https://shop.example/"}}}
    response = api.post("/v1/p", content=json.dumps(body), headers={"Content-Type": "text/plain"})
    assert (response.status_code, response.json()) == (200, {"success": True})
    person = api.get("/api/persons", params={"distinct_id": "anon-ajs"}).json()
    assert person["properties"]["$initial_current_url"] == "https://shop.example/"
