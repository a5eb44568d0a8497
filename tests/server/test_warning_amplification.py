"""One request cannot make the server write a warning row per refusal: repeats are counted.

A body that repeats a refused write many times (here: emails in `$set` on anonymous visitors,
with the public token) is stored as a few warnings that say what was refused, how often, and
for which ids and events, instead of one row per refusal.
"""

from __future__ import annotations

import pytest

from idstitch.warning_digest import EXAMPLE_EVENTS, EXAMPLE_IDS, MAX_ROWS
from tests.conftest import INGEST_TOKEN
from tests.ui.conftest import sign_in

pytestmark = pytest.mark.both_stores

EVENTS = 2000
KEYS = 10


def _all_warnings(api) -> list[dict]:
    found, cursor = [], None
    while True:
        page = api.get("/api/warnings", params={"limit": 1000, **({"cursor": cursor} if cursor else {})}).json()
        found += page["results"]
        cursor = page["next"]
        if cursor is None:
            return found


def _send(api, properties) -> None:
    body = {
        "api_key": INGEST_TOKEN,
        "batch": [{"event": "$pageview", "distinct_id": f"anon-{i}", "properties": {"$set": properties(i)}}
                  for i in range(EVENTS)],
    }
    answer = api.post("/batch/", json=body)
    assert answer.status_code == 200, answer.text[:300]


def test_repeated_refusals_are_one_warning_each_with_their_count(api) -> None:
    _send(api, lambda i: {f"contact{k}": f"visitor{i}@example.com" for k in range(KEYS)})

    warnings = _all_warnings(api)
    assert len(warnings) == KEYS, [w["type"] for w in warnings[:20]]
    by_key = {w["details"]["key"]: w for w in warnings}
    assert sorted(by_key) == [f"contact{k}" for k in range(KEYS)]
    first = by_key["contact0"]
    assert first["details"]["count"] == EVENTS
    assert first["distinct_ids"] == [f"anon-{i}" for i in range(EXAMPLE_IDS)]
    assert len(first["details"]["event_uuids"]) == EXAMPLE_EVENTS
    assert first["event_uuid"] == first["details"]["event_uuids"][0]


def test_refusals_that_all_differ_are_capped_per_request(api) -> None:
    _send(api, lambda i: {f"contact{i}-{k}": "visitor@example.com" for k in range(KEYS)})

    warnings = _all_warnings(api)
    assert len(warnings) <= MAX_ROWS + 1
    assert sum(w["details"].get("count", 1) for w in warnings) == EVENTS * KEYS
    [rest] = [w for w in warnings if "kinds" in w["details"]]
    assert rest["details"]["kinds"] == EVENTS * KEYS - MAX_ROWS
    assert rest["details"]["examples"][0] == {"key": f"contact{MAX_ROWS // KEYS}-0"}


def test_the_warnings_page_counts_every_refusal(client) -> None:
    _send(client, lambda i: {f"contact{k}": f"visitor{i}@example.com" for k in range(KEYS)})

    assert sign_in(client).status_code == 303
    page = client.get("/ui/warnings")
    assert page.status_code == 200
    assert f"{EVENTS * KEYS:,}" in page.text  # the total of pii_outside_email, not its 10 rows
