"""Erasure, suppression and anonymised counts (identity-rules.md §7)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from idstitch.cli import cli
from tests.conftest import INGEST_TOKEN
from tests.privacy.conftest import (
    capture,
    mentions_in_database,
    mentions_in_text,
    read_rows,
    send,
    sqlite_file,
    store_options,
)
from tests.privacy.test_lookup import ada_on_two_devices

pytestmark = pytest.mark.both_stores

ADA = ["phone-anon-7f3a", "laptop-anon-b81d", "tablet-anon-c4d2", "user-ada-42", "ada@example.com",
       "newsletter-anon", "s-phone-1", "s-laptop-1"]


def ada_everywhere(api) -> list[str]:
    """Ada's data in every table that can hold it; returns her person ids."""
    ada_on_two_devices(api)
    send(api, "identify", user_id="ada@example.com", anonymous_id="newsletter-anon")  # email as user id
    send(api, "track", distinct_id="tablet-anon-c4d2", event="Opened app")
    merged = api.post("/api/persons/merge", json={"target_distinct_id": "user-ada-42", "source_distinct_id": "tablet-anon-c4d2"})
    assert merged.status_code == 200  # an admin merge: its audit entry names both ids by keyed hashes
    segment = {"name": "Call ada@example.com", "filter": {"attribute": "plan", "op": "equals", "value": "pro"}}
    assert api.post("/api/segments", json=segment).status_code == 201  # its audit entry names her
    send(api, "attributes", distinct_id="user-ada-42", set={"contact": "ada@example.com"})  # a warning
    api.post("/ingest/track", headers={"Authorization": f"Bearer {INGEST_TOKEN}"},  # a dead letter
             json={"distinct_id": "user-ada-42", "event": "x", "timestamp": "not a time"})
    send(api, "identify", user_id="user-bob-7", anonymous_id="bob-anon", set={"email": "bob@example.com"})
    persons = api.get("/api/privacy/persons", params={"email": "ada@example.com"}).json()["persons"]
    return [p["id"] for p in persons]


def test_delete_with_suppress_leaves_no_row_anywhere_mentioning_the_person(api, config):
    person_ids = ada_everywhere(api)
    assert len(person_ids) == 2
    before = {table for table, _, _ in mentions_in_database(config, ADA)}
    assert before >= {"distinct_ids", "person_attributes", "events", "links", "warnings", "dead_letters", "audit_log"}

    response = api.post("/api/privacy/delete", json={"email": "ada@example.com", "suppress": True})

    assert response.status_code == 200, response.text
    erased = response.json()["erased"]
    assert erased["persons"] == 2 and erased["distinct_ids"] == 6
    assert erased["warnings"] >= 1 and erased["dead_letters"] == 1 and erased["audit_entries_redacted"] == 1
    assert mentions_in_database(config, ADA + person_ids) == []
    # Bob is untouched.
    bob = api.get("/api/persons", params={"distinct_id": "bob-anon"}).json()
    assert bob["properties"] == {"email": "bob@example.com"}


@pytest.mark.sqlite_only  # PostgreSQL has no secure_delete: dead rows stay in its pages until vacuum
def test_erased_data_is_not_left_in_the_database_files_either(api, config):
    ada_everywhere(api)
    api.post("/api/privacy/delete", json={"email": "ada@example.com", "suppress": True})
    database = sqlite_file(config)
    raw = b"".join(p.read_bytes() for p in database.parent.iterdir() if p.name.startswith(database.name))
    assert [n for n in ADA if n.encode() in raw] == []


def test_a_later_event_from_a_suppressed_id_is_dropped_and_counted(api, config):
    ada_everywhere(api)
    api.post("/api/privacy/delete", json={"distinct_id": "user-ada-42", "suppress": True})

    answer = capture(
        api,
        {"event": "$pageview", "distinct_id": "phone-anon-7f3a"},
        {"event": "$identify", "distinct_id": "user-ada-42", "properties": {"$anon_distinct_id": "fresh-cookie"}},
        {"event": "$pageview", "distinct_id": "someone-else"},
        {"event": "$pageview", "distinct_id": "user-ada-42", "timestamp": "garbage"},  # would be dead-lettered
    )
    native = send(api, "identify", user_id="user-ada-42", anonymous_id="other-cookie", set={"plan": "pro"})

    assert [e["index"] for e in answer["errors"]] == [0, 1, 3]
    assert all("suppress" in e["error"] for e in answer["errors"][:2])
    assert native["results"][0]["status"] == "rejected"
    assert api.get("/api/privacy/suppressions").json()["dropped_events"] == 4
    for distinct_id in ("user-ada-42", "phone-anon-7f3a", "fresh-cookie", "other-cookie"):
        assert api.get("/api/persons", params={"distinct_id": distinct_id}).status_code == 404
    assert api.get("/api/persons", params={"distinct_id": "someone-else"}).status_code == 200
    # (The person whose user id is the email was not named by this request: it stays.)
    assert mentions_in_database(config, ["user-ada-42", "phone-anon-7f3a", "laptop-anon-b81d", "fresh-cookie"]) == []
    assert api.get("/api/privacy/suppressions/check", params={"distinct_id": "laptop-anon-b81d"}).json() == {"suppressed": True}
    assert api.get("/api/privacy/suppressions/check", params={"distinct_id": "someone-else"}).json() == {"suppressed": False}


def test_without_suppress_a_returning_visitor_is_a_new_person(api):
    ada_on_two_devices(api)
    response = api.post("/api/privacy/delete", json={"user_id": "user-ada-42"})
    assert response.json()["erased"]["suppressed_ids"] == 0

    send(api, "track", distinct_id="phone-anon-7f3a", event="Came back")

    new = api.get("/api/persons", params={"distinct_id": "phone-anon-7f3a"}).json()
    assert new["distinct_ids"] == ["phone-anon-7f3a"]
    assert new["properties"] == {} and new["is_identified"] is False
    events = api.get(f"/api/persons/{new['id']}/events").json()["results"]
    assert [e["event"] for e in events] == ["Came back"]


def test_anonymised_counts_keep_the_events_without_ids_or_properties(api, config):
    ada_on_two_devices(api)
    response = api.post("/api/privacy/delete", json={"distinct_id": "phone-anon-7f3a", "keep_anonymised_counts": True})
    assert response.json()["erased"]["events_anonymised"] == 4
    rows = read_rows(config, "SELECT distinct_id, event, properties, ops, session_id FROM events ORDER BY seq")
    assert [r[1] for r in rows] == ["$pageview", "$identify", "Viewed pricing", "$identify"]
    assert {r[0] for r in rows} == {rows[0][0]} and rows[0][0].startswith("$erased-")
    assert {(r[2], r[3], r[4]) for r in rows} == {("{}", None, None)}
    assert mentions_in_database(config, ADA) == []


def test_deleting_nobody_is_a_404_but_an_id_can_be_suppressed_before_it_is_seen(api):
    assert api.post("/api/privacy/delete", json={"distinct_id": "never-seen"}).status_code == 404
    response = api.post("/api/privacy/delete", json={"distinct_id": "never-seen", "suppress": True})
    assert response.status_code == 200
    assert response.json()["erased"]["suppressed_ids"] == 1
    answer = send(api, "track", distinct_id="never-seen", event="x")
    assert answer["results"][0]["status"] == "rejected"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="no-selector"),
        pytest.param({"email": "a@b.c", "distinct_id": "x"}, id="two-selectors"),
        pytest.param({"distinct_id": ""}, id="empty"),
        pytest.param({"distinct_id": "x", "suppres": True}, id="typo"),
        pytest.param({"distinct_id": ["x"]}, id="wrong-type"),
    ],
)
def test_a_bad_delete_request_is_a_400_or_422(api, body):
    assert api.post("/api/privacy/delete", json=body).status_code in (400, 422)


def test_every_deletion_is_audited_with_its_actor_and_no_personal_data(api):
    ada_on_two_devices(api)
    api.post("/api/privacy/delete", json={"email": "ada@example.com", "suppress": True})
    [entry] = [e for e in api.get("/api/audit-log").json()["results"] if e["action"] == "delete"]
    assert entry["actor"].startswith("admin:")
    assert entry["details"]["suppress"] is True
    assert entry["details"]["erased"]["persons"] == 1
    assert mentions_in_text(json.dumps(entry), ADA) == []


def test_cli_delete_person(api, config):
    ada_on_two_devices(api)
    result = CliRunner().invoke(cli, ["delete-person", "--distinct-id", "laptop-anon-b81d", "--suppress", "--yes",
                                      *store_options(config)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["erased"]["persons"] == 1
    assert mentions_in_database(config, ADA) == []
    assert ("cli", "delete") in [(e["actor"], e["action"]) for e in api.get("/api/audit-log").json()["results"]]
    # The running server's writer sees the suppression at once.
    assert send(api, "track", distinct_id="user-ada-42", event="x")["results"][0]["status"] == "rejected"


def test_cli_delete_person_of_nobody_fails_with_a_message(config, api):
    result = CliRunner().invoke(cli, ["delete-person", "--email", "nobody@example.com", "--yes", *store_options(config)])
    assert result.exit_code == 1
    assert "Nothing is held" in result.output


def test_switching_attributes_off_stops_writes_at_once_and_says_stored_ones_stay_until_deleted(api):
    send(api, "identify", user_id="u-hj", anonymous_id="c-hj", set={"plan": "pro"})
    response = api.patch("/api/project/settings", json={"attributes_enabled": False})
    assert "stay until deleted" in response.json()["stored_data"]
    answer = send(api, "attributes", distinct_id="u-hj", set={"plan": "free"})
    assert answer["results"][0]["warnings"] == ["attributes_disabled"]
    assert api.get("/api/persons", params={"distinct_id": "u-hj"}).json()["properties"] == {"plan": "pro"}
    api.post("/api/privacy/delete", json={"user_id": "u-hj"})
    assert api.get("/api/persons", params={"distinct_id": "u-hj"}).status_code == 404


@pytest.mark.timeout(30)
def test_a_short_selector_neither_hangs_nor_erases_what_merely_contains_it(api):
    # Found by Schemathesis: deleting by email "0" redacted the audit log in a loop that never
    # ended (each keyed hash written contained "0"), holding the one writer, so all ingest hung.
    send(api, "identify", user_id="u-10", anonymous_id="c-10")
    send(api, "track", distinct_id="c-20", event="x")
    api.post("/api/persons/merge", json={"target_distinct_id": "u-10", "source_distinct_id": "c-20"})

    response = api.post("/api/privacy/delete", json={"email": "0", "suppress": True})

    assert response.status_code == 200
    assert response.json()["erased"]["audit_entries_redacted"] == 0
    merge = [e for e in api.get("/api/audit-log").json()["results"] if e["action"] == "merge"]
    assert "redacted" not in merge[0]["details"]
    assert sorted(api.get("/api/persons", params={"distinct_id": "u-10"}).json()["distinct_ids"]) == ["c-10", "c-20", "u-10"]


def test_an_email_inside_longer_text_is_redacted_in_the_audit_log_once(api, config):
    send(api, "identify", user_id="ada@example.com", anonymous_id="c-ada")
    send(api, "track", distinct_id="c-other", event="x")
    api.post("/api/persons/merge", json={"target_distinct_id": "ada@example.com", "source_distinct_id": "c-other"})
    api.post("/api/segments", json={"name": "Follow up ADA@example.com", "filter": {"attribute": "plan", "op": "equals", "value": "pro"}})
    api.post("/api/privacy/delete", json={"email": "ada@example.com"})
    [segment] = [e for e in api.get("/api/audit-log").json()["results"] if e["action"] == "create_segment"]
    assert segment["details"]["redacted"] is True
    assert segment["details"]["name"].startswith("Follow up hmac-sha256:")
    assert mentions_in_database(config, ["ada@example.com", "c-other", "c-ada"]) == []


def test_importing_an_old_backup_does_not_bring_back_a_suppressed_person(api):
    ada_on_two_devices(api)
    api.post("/api/privacy/delete", json={"user_id": "user-ada-42", "suppress": True})
    response = api.post("/api/persons/import", json={"persons": [
        {"distinct_ids": ["phone-anon-7f3a", "user-ada-42"], "user_ids": ["user-ada-42"]},
        {"distinct_ids": ["someone-new"]},
    ]})
    assert response.json()["imported"] == 1
    assert "suppress" in response.json()["results"][0]["error"]
    assert api.get("/api/persons", params={"distinct_id": "user-ada-42"}).status_code == 404


AGAIN = {"event": "$pageview", "distinct_id": "c-again", "uuid": "01967a4e-0000-7000-8000-00000000a9a1",
         "timestamp": "2026-05-03T10:00:00Z", "properties": {"$session_id": "s-again"}}


def _events_of(api, distinct_id: str) -> list[str]:
    person = api.get("/api/persons", params={"distinct_id": distinct_id}).json()
    return [e["uuid"] for e in api.get(f"/api/persons/{person['id']}/events").json()["results"]]


def test_an_event_sent_again_after_its_erasure_is_stored_again(api):
    # Its uuid is free again: on PostgreSQL the row of `event_uuids` goes with the event.
    capture(api, AGAIN)
    assert api.post("/api/privacy/delete", json={"distinct_id": "c-again"}).json()["erased"]["events_deleted"] == 1
    capture(api, AGAIN)
    assert _events_of(api, "c-again") == [AGAIN["uuid"]]
    capture(api, AGAIN)  # and a third time is a duplicate again
    assert _events_of(api, "c-again") == [AGAIN["uuid"]]


def test_an_anonymised_event_has_a_new_uuid_and_its_old_one_is_free_again(api, config):
    capture(api, AGAIN)
    response = api.post("/api/privacy/delete", json={"distinct_id": "c-again", "keep_anonymised_counts": True})
    assert response.json()["erased"]["events_anonymised"] == 1
    capture(api, AGAIN)
    assert _events_of(api, "c-again") == [AGAIN["uuid"]]
    rows = read_rows(config, "SELECT uuid, distinct_id FROM events ORDER BY seq")
    assert [r[1] == "c-again" for r in rows] == [False, True] and rows[0][0] != AGAIN["uuid"]
    if config.database:  # PostgreSQL: the uuid index of events, kept in step
        assert sorted(read_rows(config, "SELECT uuid FROM event_uuids")) == sorted((r[0],) for r in rows)


def test_a_session_shared_with_an_erased_id_is_summed_up_again_from_the_other_ids_events(api, config):
    capture(
        api,
        {"event": "$pageview", "distinct_id": "c-gone", "timestamp": "2026-05-03T10:00:00Z",
         "properties": {"$session_id": "s-shared", "$current_url": "https://shop.example/a"}},
        {"event": "$pageview", "distinct_id": "c-stays", "timestamp": "2026-05-03T10:02:00Z",
         "properties": {"$session_id": "s-shared", "$current_url": 7}},
        {"event": "$pageview", "distinct_id": "c-stays", "timestamp": "2026-05-03T10:03:00Z",
         "properties": {"$session_id": "s-shared", "$current_url": "https://shop.example/b"}},
        {"event": "Left", "distinct_id": "c-stays", "timestamp": "2026-05-03T10:05:00Z",
         "properties": {"$session_id": "s-shared"}},
    )
    assert api.post("/api/privacy/delete", json={"distinct_id": "c-gone"}).json()["erased"]["events_deleted"] == 1
    [session] = read_rows(
        config, "SELECT session_id, first_at, last_at, event_count, identifies, entry_at, entry_url, distinct_ids,"
        " last_distinct_id FROM sessions"
    )
    # The entry is the first event whose URL is a text, as at ingest (store/persons.py `session_rows`).
    assert session[:7] == ("s-shared", "2026-05-03T10:02:00.000000Z", "2026-05-03T10:05:00.000000Z", 3, 0,
                           "2026-05-03T10:03:00.000000Z", "https://shop.example/b")
    assert (json.loads(session[7]), session[8]) == (["c-stays"], "c-stays")
