"""PostHog event shapes through the real app: where idstitch follows PostHog, and the one place a
project chooses (`identify_without_anonymous_id`). posthog-reference.md §3, identity-rules.md §3."""

from __future__ import annotations

import pytest

from tests.conftest import INGEST_TOKEN

pytestmark = pytest.mark.both_stores


def send(api, *events: dict) -> None:
    response = api.post("/batch/", json={"api_key": INGEST_TOKEN, "batch": list(events)})
    assert response.status_code == 200, response.text


def event(distinct_id: str, name: str = "$pageview", **properties) -> dict:
    return {"event": name, "distinct_id": distinct_id, "properties": properties}


def person_of(api, distinct_id: str) -> dict:
    response = api.get("/api/persons", params={"distinct_id": distinct_id})
    assert response.status_code == 200, response.text
    return response.json()


def links_of(api, distinct_id: str) -> list[str]:
    person = person_of(api, distinct_id)
    return [link["outcome"] for link in api.get(f"/api/persons/{person['id']}/links").json()["results"]]


# -- $identify without $anon_distinct_id -------------------------------------------------------


def test_identify_without_an_anonymous_id_names_a_user_id_by_default(api):
    # posthog-node's identify({distinctId, properties}) from a server sends exactly this.
    send(api, event("user-1", "$identify", **{"$set": {"plan": "pro"}}))
    person = person_of(api, "user-1")
    assert (person["is_identified"], person["user_ids"], person["properties"]) == (True, ["user-1"], {"plan": "pro"})


def test_identify_without_an_anonymous_id_is_a_plain_event_when_the_project_asks(api):
    answer = api.patch("/api/project/settings", json={"identify_without_anonymous_id": "plain_event"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["identify_without_anonymous_id"] == "plain_event"
    send(api, event("user-1", "$identify", **{"$set": {"plan": "pro"}}))
    person = person_of(api, "user-1")
    assert (person["is_identified"], person["user_ids"], person["properties"]) == (False, [], {"plan": "pro"})
    assert links_of(api, "user-1") == []
    # With an anonymous id it is still an identify, as in PostHog.
    send(api, event("user-1", "$identify", **{"$anon_distinct_id": "cookie-1"}))
    person = person_of(api, "cookie-1")
    assert (person["is_identified"], person["user_ids"]) == (True, ["user-1"])


def test_the_identify_setting_refuses_an_unknown_value_by_name(api):
    answer = api.patch("/api/project/settings", json={"identify_without_anonymous_id": "plain"})
    assert answer.status_code == 400
    assert answer.json()["detail"] == (
        "Setting 'identify_without_anonymous_id' has value 'plain'. Expected one of user_id, plain_event."
    )
    assert api.get("/api/project/settings").json()["identify_without_anonymous_id"] == "user_id"


# -- $identify whose $anon_distinct_id is its own distinct id (row 0) --------------------------


def test_identify_with_its_own_id_as_anonymous_id_changes_nothing_but_its_set(api):
    send(api, event("visitor-1"), event("visitor-1", "$identify", **{"$anon_distinct_id": "visitor-1",
                                                                       "$set": {"plan": "pro"}}))
    person = person_of(api, "visitor-1")
    assert (person["is_identified"], person["user_ids"], person["properties"]) == (False, [], {"plan": "pro"})
    assert links_of(api, "visitor-1") == []
    assert api.get("/api/warnings").json()["results"] == []


# -- importing persons from PostHog -------------------------------------------------------------


def test_an_identified_person_imported_without_user_ids_keeps_its_email(api):
    # A PostHog export has `is_identified` and `distinct_ids`, and nothing saying which id is the user id.
    answer = api.post("/api/persons/import", json={"persons": [
        {"distinct_ids": ["018f-anon", "ada-42"], "is_identified": True,
         "properties": {"email": "ada@example.com", "plan": "pro"}},
    ]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["results"][0]["warnings"] == []
    person = person_of(api, "ada-42")
    assert person["properties"] == {"email": "ada@example.com", "plan": "pro"}
    assert person["is_identified"] is True
    # Her browser is identified already: posthog-js sends no $identify again, only $set events.
    send(api, event("ada-42", "$set", **{"$set": {"email": "ada@new.example"}}))
    assert person_of(api, "ada-42")["properties"]["email"] == "ada@new.example"


def test_the_import_answer_reports_the_warnings_it_raised(api):
    answer = api.post("/api/persons/import", json={"persons": [
        {"distinct_ids": ["018f-anon"], "properties": {"email": "bob@example.com", "plan": "free"}},
        {"distinct_ids": ["carol"], "is_identified": True, "properties": {"backup": "carol@example.com"}},
    ]})
    assert answer.status_code == 200, answer.text
    first, second = answer.json()["results"]
    assert first["warnings"] == [{"type": "pii_on_anonymous", "details": {"key": "email"}}]
    assert second["warnings"] == [{"type": "pii_outside_email", "details": {"key": "backup"}}]
    assert person_of(api, "018f-anon")["properties"] == {"plan": "free"}
    recorded = [w["type"] for w in api.get("/api/warnings").json()["results"]]
    assert sorted(recorded) == ["pii_on_anonymous", "pii_outside_email"]


# -- siblings ------------------------------------------------------------------------------------


@pytest.mark.parametrize("allowed", [pytest.param(False, id="merge-refused-over-ingest"),
                                     pytest.param(True, id="merge-allowed-over-ingest")])
def test_a_personless_merge_dangerously_is_dead_lettered_like_every_identity_event(api, allowed):
    # identity-rules.md §6 (PostHog drops it with `invalid_event_when_process_person_profile_is_false`).
    api.patch("/api/project/settings", json={"allow_merge_over_ingest": allowed})
    send(api, event("user-1", "$merge_dangerously", alias="user-2", **{"$process_person_profile": False}))
    assert [w["type"] for w in api.get("/api/warnings").json()["results"]] == ["identity_on_personless_event"]
    [dead] = api.get("/api/dead-letters").json()["results"]
    assert dead["reason"] == "an identity operation cannot be marked $process_person_profile: false"
    assert api.get("/api/persons", params={"distinct_id": "user-1"}).status_code == 404


@pytest.mark.parametrize("alias", [pytest.param([], id="empty-list"), pytest.param({}, id="empty-object"),
                                   pytest.param(["user-2"], id="list")])
def test_an_alias_that_is_no_id_is_rejected_not_ignored(api, alias):
    # JavaScript's truthiness (PostHog's test) holds [] and {} true: they are ids of the wrong type (§2),
    # not a missing alias, so the event is dead-lettered with its reason instead of passing silently.
    send(api, event("user-1", "$create_alias", alias=alias))
    [dead] = api.get("/api/dead-letters").json()["results"]
    assert dead["reason"].startswith("alias: distinct id must be a string or a number")
    assert api.get("/api/persons", params={"distinct_id": "user-1"}).status_code == 404


@pytest.mark.parametrize("alias", [None, False, "", 0])
def test_a_falsy_alias_makes_create_alias_a_plain_event(api, alias):
    send(api, event("user-1", "$create_alias", alias=alias, plan="pro"))
    person = person_of(api, "user-1")
    assert (person["distinct_ids"], person["is_identified"]) == (["user-1"], False)
    assert api.get("/api/dead-letters").json()["results"] == []
