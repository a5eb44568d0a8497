"""What retention keeps of a person's expired events (store/retention.py) is theirs too: a lookup
lists it, an erasure deletes it, and on SQLite its bytes leave the file."""

from __future__ import annotations

import asyncio

import pytest

from idstitch import retention
from tests.privacy.conftest import capture, mentions_in_database, read_rows, send
from tests.privacy.test_delete import ADA, ada_everywhere
from tests.privacy.test_erasure_files import file_mentions

pytestmark = pytest.mark.both_stores


def expire(api) -> None:
    """A pass of the server's retention, through its writer: Ada's events of May 2026 are past 30 days."""
    assert api.patch("/api/project/settings", json={"events_retention_days": 30}).status_code == 200
    state = api.app.state.idstitch
    [done] = asyncio.run(retention.expire_events(state.writer, state.store))
    assert done.expired.retired > 0


def test_a_lookup_lists_what_retention_kept_and_an_erasure_deletes_it(api, config):
    person_ids = ada_everywhere(api)
    expire(api)
    assert {table for table, _, _ in mentions_in_database(config, ADA)} >= {"retired_events"}
    [ada] = [p for p in api.get("/api/privacy/persons", params={"email": "ada@example.com"}).json()["persons"]
             if "user-ada-42" in p["distinct_ids"]]
    kept = {(e["event"], e["distinct_id"]) for e in ada["retired_events"]}
    assert {("$identify", "user-ada-42"), ("$pageview", "phone-anon-7f3a")} <= kept
    assert not {e["uuid"] for e in ada["retired_events"]} & {e["uuid"] for e in ada["events"]}

    held = len(read_rows(config, "SELECT 1 FROM retired_events"))

    response = api.post("/api/privacy/delete", json={"email": "ada@example.com", "suppress": True})

    assert response.status_code == 200, response.text
    erased = response.json()["erased"]["retired_events"]
    assert erased >= len(ada["retired_events"]) and erased == held - len(read_rows(config, "SELECT 1 FROM retired_events"))
    assert [m for m in mentions_in_database(config, ADA + person_ids) if m[0] == "retired_events"] == []
    assert api.get("/api/privacy/persons", params={"email": "ada@example.com"}).json()["persons"] == []


@pytest.mark.sqlite_only
def test_after_retention_an_erasure_still_leaves_no_byte_of_the_person_in_the_file(api, config):
    ada_everywhere(api)
    expire(api)

    response = api.post("/api/privacy/delete", json={"email": "ada@example.com", "suppress": True})

    assert response.status_code == 200 and response.json()["complete"] is True, response.text
    assert file_mentions(config) == []


def test_an_erasure_removes_the_persons_ids_from_what_retention_kept_of_other_ids_events(api, config):
    send(api, "identify", user_id="user-ada-42", anonymous_id="ada-cookie-77", set={"email": "ada@example.com"})
    # Bob's identify names Ada's cookie (refused: she is identified), on a page whose URL names her.
    capture(api, {"event": "$identify", "distinct_id": "user-bob-9", "timestamp": "2026-05-01T09:00:00Z",
                  "properties": {"$anon_distinct_id": "ada-cookie-77", "$set": {"plan": "pro"},
                                 "$current_url": "https://shop.example/invite?from=user-ada-42"}})
    expire(api)

    erased = api.post("/api/privacy/delete", json={"email": "ada@example.com"})

    assert erased.status_code == 200, erased.text
    # (Bob's own attributes took that URL: they are his, and an erasure of Ada leaves them, as before retention.)
    mentions = mentions_in_database(config, ["user-ada-42", "ada-cookie-77", "ada@example.com"])
    assert [m for m in mentions if m[0] != "person_attributes"] == []
    bob = api.get("/api/privacy/persons", params={"distinct_id": "user-bob-9"}).json()["persons"][0]
    [kept] = bob["retired_events"]
    assert kept["operations"] == {"set": {"plan": "pro"}}
    assert kept["properties"]["$current_url"].startswith("https://shop.example/invite?from=hmac-sha256:")
