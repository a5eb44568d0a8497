"""What idstitch refused or did not apply is not kept; what an erasure removes includes the
erased person's ids inside other persons' events (identity-rules.md §1, §7)."""

from __future__ import annotations

import pytest

from tests.privacy.conftest import capture, mentions_in_database, send

pytestmark = pytest.mark.both_stores


def warning_types(api) -> list[str]:
    return sorted(w["type"] for w in api.get("/api/warnings").json()["results"])


def stored_operations(api, distinct_id: str) -> list[dict]:
    answer = api.get("/api/privacy/persons", params={"distinct_id": distinct_id}).json()
    events = [e for p in answer["persons"] for e in p["events"]] + answer["unattributed_events"]
    return [e["operations"] for e in events]


def test_a_refused_attribute_value_is_kept_nowhere(api, config):
    # The PII guard refuses an email on an anonymous visitor, and an email under another key.
    capture(api, {"event": "$pageview", "distinct_id": "stranger-cookie", "properties": {
        "$set": {"email": "carol@example.com", "contact": "carol.home@example.com", "plan": "pro"}}})

    assert warning_types(api) == ["pii_on_anonymous", "pii_outside_email"]
    assert mentions_in_database(config, ["carol@example.com", "carol.home@example.com"]) == []
    assert stored_operations(api, "stranger-cookie") == [{"set": {"plan": "pro"}}]
    assert api.get("/api/persons", params={"distinct_id": "stranger-cookie"}).json()["properties"] == {"plan": "pro"}
    found = api.get("/api/privacy/persons", params={"email": "carol@example.com"}).json()
    assert found["persons"] == [] and found["unattributed_events"] == [] and found["unattributed_warnings"] == []


@pytest.mark.parametrize("refusal", ["attributes_off", "identified_only", "personless_event"])
def test_an_attribute_write_that_changes_no_person_is_not_kept_either(api, config, refusal):
    properties: dict = {"$set": {"email": "dan@example.com"}}
    if refusal == "attributes_off":
        api.patch("/api/project/settings", json={"attributes_enabled": False})
        send(api, "identify", user_id="user-dan", anonymous_id="dan-cookie")
    elif refusal == "identified_only":
        api.patch("/api/project/settings", json={"person_profiles": "identified_only"})
    else:
        properties["$process_person_profile"] = False
    capture(api, {"event": "$pageview", "distinct_id": "dan-cookie", "properties": properties})

    assert mentions_in_database(config, ["dan@example.com"]) == []
    assert stored_operations(api, "dan-cookie")[-1] == {}


def test_a_split_does_not_bring_back_a_value_that_ingest_refused(api):
    # Refused on the anonymous cookie; after a split its group holds the user id, and re-deriving
    # the person from the stored events must not accept what ingestion refused.
    capture(api, {"event": "$pageview", "distinct_id": "eve-cookie-1", "properties": {"$set": {"email": "eve@example.com"}}})
    send(api, "identify", user_id="user-eve", anonymous_id="eve-cookie-1")
    send(api, "identify", user_id="user-eve", anonymous_id="eve-cookie-2")
    person = api.get("/api/persons", params={"distinct_id": "user-eve"}).json()
    assert "email" not in person["properties"]

    split = api.post(f"/api/persons/{person['id']}/split", json={"distinct_ids": ["eve-cookie-2"]})

    assert split.status_code == 200, split.text
    assert "email" not in api.get("/api/persons", params={"distinct_id": "user-eve"}).json()["properties"]


def test_erasing_a_person_removes_its_ids_from_other_persons_events(api, config):
    send(api, "identify", user_id="user-ada-42", anonymous_id="ada-cookie-77", set={"email": "ada@example.com"})
    # Bob's identify, alias and merge name Ada's ids; each is refused (she is identified already,
    # or a merge needs the secret key) but his events are stored, with those ids in them.
    capture(
        api,
        {"event": "$identify", "distinct_id": "user-bob-9", "properties": {"$anon_distinct_id": "ada-cookie-77"}},
        {"event": "$create_alias", "distinct_id": "user-bob-9", "properties": {"alias": "user-ada-42"}},
        {"event": "$merge_dangerously", "distinct_id": "user-bob-9", "properties": {"alias": "ada-cookie-77"}},
        {"event": "$pageview", "distinct_id": "user-bob-9", "properties": {"$current_url": "https://shop.example/"}},
    )
    assert "cannot_merge_already_identified" in warning_types(api)

    erased = api.post("/api/privacy/delete", json={"email": "ada@example.com"})

    assert erased.status_code == 200, erased.text
    assert mentions_in_database(config, ["user-ada-42", "ada-cookie-77", "ada@example.com"]) == []
    bob = api.get("/api/privacy/persons", params={"distinct_id": "user-bob-9"}).json()["persons"][0]
    assert [e["event"] for e in bob["events"]] == ["$identify", "$create_alias", "$merge_dangerously", "$pageview"]
    assert bob["events"][0]["properties"]["$anon_distinct_id"].startswith("hmac-sha256:")
    assert bob["events"][3]["properties"]["$current_url"] == "https://shop.example/"
