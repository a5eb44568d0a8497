"""Lookup and export of everything held about a person (identity-rules.md §7)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from idstitch.cli import cli
from tests.conftest import INGEST_TOKEN
from tests.privacy.conftest import capture, mentions_in_text, send, store_options

pytestmark = pytest.mark.both_stores


def ada_on_two_devices(api) -> None:
    """Ada: identified by user id on her phone (posthog-js), and with her email on her laptop."""
    capture(
        api,
        {"event": "$pageview", "distinct_id": "phone-anon-7f3a", "timestamp": "2026-05-01T09:00:00Z",
         "properties": {"$session_id": "s-phone-1", "$current_url": "https://shop.example/"}},
        {"event": "$identify", "distinct_id": "user-ada-42", "timestamp": "2026-05-01T09:01:00Z",
         "properties": {"$anon_distinct_id": "phone-anon-7f3a", "$session_id": "s-phone-1"}},
    )
    send(api, "track", distinct_id="laptop-anon-b81d", event="Viewed pricing", session_id="s-laptop-1",
         timestamp="2026-05-02T18:00:00Z")
    send(api, "identify", user_id="user-ada-42", anonymous_id="laptop-anon-b81d", session_id="s-laptop-1",
         set={"email": "Ada@Example.com", "name": "Ada"}, timestamp="2026-05-02T18:05:00Z")


def test_lookup_by_email_finds_a_person_identified_by_user_id_on_one_device_and_by_email_on_another(api):
    ada_on_two_devices(api)
    send(api, "identify", user_id="user-bob-7", anonymous_id="bob-anon", set={"email": "bob@example.com"})

    response = api.get("/api/privacy/persons", params={"email": "ada@example.com"})

    assert response.status_code == 200, response.text
    document = response.json()
    assert document["query"] == {"email": "ada@example.com"}
    [ada] = document["persons"]
    assert sorted(ada["distinct_ids"]) == ["laptop-anon-b81d", "phone-anon-7f3a", "user-ada-42"]
    assert ada["user_ids"] == ["user-ada-42"]
    assert ada["properties"]["email"] == "Ada@Example.com"
    assert {a["key"] for a in ada["attributes"]} >= {"email", "name"}
    assert [(s["session_id"], s["distinct_ids"], s["event_count"], s["identified"]) for s in ada["sessions"]] == [
        ("s-phone-1", ["phone-anon-7f3a", "user-ada-42"], 2, True),
        ("s-laptop-1", ["laptop-anon-b81d", "user-ada-42"], 2, True),
    ]
    assert [e["event"] for e in ada["events"]] == ["$pageview", "$identify", "Viewed pricing", "$identify"]
    assert {link["outcome"] for link in ada["links"]} == {"attached", "merged"}


def test_lookup_by_email_also_finds_a_person_whose_user_id_is_the_email(api):
    ada_on_two_devices(api)
    send(api, "identify", user_id="ada@example.com", anonymous_id="newsletter-anon")

    persons = api.get("/api/privacy/persons", params={"email": "ada@example.com"}).json()["persons"]

    assert sorted(sorted(p["distinct_ids"]) for p in persons) == [
        ["ada@example.com", "newsletter-anon"],
        ["laptop-anon-b81d", "phone-anon-7f3a", "user-ada-42"],
    ]


def test_lookup_by_any_distinct_id_or_by_user_id_finds_the_same_person(api):
    ada_on_two_devices(api)
    by_device = api.get("/api/privacy/persons", params={"distinct_id": "phone-anon-7f3a"}).json()["persons"]
    by_user = api.get("/api/privacy/persons", params={"user_id": "user-ada-42"}).json()["persons"]
    assert [p["id"] for p in by_device] == [p["id"] for p in by_user] != []
    # An anonymous id is not a user id.
    assert api.get("/api/privacy/persons", params={"user_id": "phone-anon-7f3a"}).json()["persons"] == []


def test_lookup_includes_the_warnings_and_dead_letters_that_mention_the_person(api):
    ada_on_two_devices(api)
    send(api, "attributes", distinct_id="user-ada-42", set={"contact": "ada@example.com"})
    api.post("/ingest/track", headers={"Authorization": f"Bearer {INGEST_TOKEN}"},
             json={"distinct_id": "user-ada-42", "event": "x", "timestamp": "not a time"})

    [ada] = api.get("/api/privacy/persons", params={"distinct_id": "user-ada-42"}).json()["persons"]

    assert [w["type"] for w in ada["warnings"]] == ["pii_outside_email"]
    assert [d["payload"]["timestamp"] for d in ada["dead_letters"]] == ["not a time"]


def test_events_of_an_id_without_a_person_are_found_too(api):
    capture(api, {"event": "x", "distinct_id": "cookie-no-person", "properties": {"$process_person_profile": False}})
    document = api.get("/api/privacy/persons", params={"distinct_id": "cookie-no-person"}).json()
    assert document["persons"] == []
    assert [e["distinct_id"] for e in document["unattributed_events"]] == ["cookie-no-person"]


def test_a_lookup_needs_exactly_one_selector_and_a_secret_key(api, client):
    assert api.get("/api/privacy/persons").status_code == 400
    assert api.get("/api/privacy/persons", params={"email": "a@b.c", "user_id": "u"}).status_code == 400
    anonymous = client.get("/api/privacy/persons", params={"email": "a@b.c"},
                           headers={"Authorization": f"Bearer {INGEST_TOKEN}"})
    assert anonymous.status_code == 401


def test_export_is_one_json_document_and_is_audited_without_the_email(api):
    ada_on_two_devices(api)

    response = api.get("/api/privacy/export", params={"email": "ada@example.com"})

    assert response.status_code == 200
    assert "attachment" in response.headers["content-disposition"]
    document = response.json()
    assert document["format"] == "idstitch-person-export/1"
    assert len(document["persons"]) == 1 and len(document["persons"][0]["events"]) == 4
    [entry] = [e for e in api.get("/api/audit-log").json()["results"] if e["action"] == "export"]
    assert entry["actor"].startswith("admin:")
    assert entry["details"]["selector"] == "email"
    assert entry["details"]["selector_hash"].startswith("hmac-sha256:")
    assert mentions_in_text(json.dumps(entry), ["ada@example.com", "Ada@Example.com"]) == []


def test_cli_export_person_writes_the_same_document(api, config):
    ada_on_two_devices(api)
    result = CliRunner().invoke(cli, ["export-person", "--email", "ada@example.com", *store_options(config)])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert sorted(document["persons"][0]["distinct_ids"]) == ["laptop-anon-b81d", "phone-anon-7f3a", "user-ada-42"]
    actions = [(e["actor"], e["action"]) for e in api.get("/api/audit-log").json()["results"]]
    assert ("cli", "export") in actions


def test_cli_export_person_needs_one_selector(config, api):
    result = CliRunner().invoke(cli, ["export-person", *store_options(config)])
    assert result.exit_code == 2
    assert "exactly one of" in result.output


def test_lookup_by_email_ignores_ascii_case_only(api):
    # SQLite's lower() folds A-Z only; PostgreSQL is asked to fold the same (the "C" collation).
    send(api, "identify", user_id="u-zoe", anonymous_id="c-zoe", set={"email": "Zoë.Ünal@Example.com"})
    found = api.get("/api/privacy/persons", params={"email": "zoë.Ünal@EXAMPLE.com"}).json()["persons"]
    assert [p["user_ids"] for p in found] == [["u-zoe"]]
    assert api.get("/api/privacy/persons", params={"email": "zoë.ünal@example.com"}).json()["persons"] == []
