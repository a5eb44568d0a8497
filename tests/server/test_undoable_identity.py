"""Undoable identity over the API (issue 12): undo one link, redo it, split by groups, and a dry
run of every change, on both stores. The scenario of the issue: a shared kiosk id wrongly
joined two customers' histories through an admin merge; the operator previews the undo, sees
both customers restored, confirms, and the persons, the counts and the sessions show it."""

from __future__ import annotations

import pytest

from tests.conftest import INGEST_TOKEN

pytestmark = pytest.mark.both_stores

AUTH = {"Authorization": f"Bearer {INGEST_TOKEN}"}


def send(client, message_type: str, **message):
    response = client.post(f"/ingest/{message_type}", json=message, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["status"] == "accepted", response.text


def person_of(api, distinct_id: str) -> dict:
    response = api.get("/api/persons", params={"distinct_id": distinct_id})
    assert response.status_code == 200, response.text
    return response.json()


def kiosk_merge(api) -> int:
    """Ann and Bob each log in at the shop's kiosk; an operator merges Bob into Ann by mistake."""
    send(api, "track", distinct_id="kiosk", event="Viewed menu", timestamp="2026-11-02T09:00:00Z", session_id="s-ann")
    send(api, "identify", user_id="ann", anonymous_id="kiosk", set={"email": "ann@example.com", "plan": "pro"},
         timestamp="2026-11-02T09:01:00Z", session_id="s-ann")
    send(api, "track", distinct_id="bob-phone", event="Viewed menu", timestamp="2026-11-02T10:00:00Z", session_id="s-bob")
    send(api, "identify", user_id="bob", anonymous_id="bob-phone", set={"email": "bob@example.com", "plan": "free"},
         timestamp="2026-11-02T10:01:00Z", session_id="s-bob")
    merged = api.post("/api/persons/merge", json={"target_distinct_id": "ann", "source_distinct_id": "bob"})
    assert merged.status_code == 200, merged.text
    links = api.get(f"/api/persons/{merged.json()['id']}/links").json()["results"]
    return next(link["id"] for link in links if link["kind"] == "merge")


def unique_persons(api) -> int:
    response = api.post("/api/counts", json={"measure": "persons", "events": ["Viewed menu"], "interval": "total"})
    assert response.status_code == 200, response.text
    return int(response.json()["total"])


def test_the_operator_previews_and_undoes_a_wrong_merge(api):
    merge = kiosk_merge(api)
    assert unique_persons(api) == 1

    preview = api.post(f"/api/links/{merge}/undo", params={"dry_run": "true"})

    assert preview.status_code == 200, preview.text
    seen = preview.json()
    assert seen["dry_run"] is True and seen["undo_id"] is not None
    after = {tuple(sorted(p["distinct_ids"])): p["properties"] for p in seen["persons_after"]}
    assert after == {
        ("ann", "kiosk"): {"email": "ann@example.com", "plan": "pro"},
        ("bob", "bob-phone"): {"email": "bob@example.com", "plan": "free"},
    }
    assert [p["distinct_ids"] for p in seen["persons_before"]] != []
    assert {m["distinct_id"] for m in seen["moved_ids"]} == {"bob", "bob-phone"}
    assert [link["kind"] for link in seen["links"]] == ["undo"]
    # Nothing changed yet.
    assert sorted(person_of(api, "bob")["distinct_ids"]) == ["ann", "bob", "bob-phone", "kiosk"]

    done = api.post(f"/api/links/{merge}/undo")

    assert done.status_code == 200, done.text
    assert done.json()["dry_run"] is False
    ann, bob = person_of(api, "ann"), person_of(api, "bob")
    assert sorted(ann["distinct_ids"]) == ["ann", "kiosk"] and ann["properties"]["plan"] == "pro"
    assert sorted(bob["distinct_ids"]) == ["bob", "bob-phone"] and bob["properties"]["plan"] == "free"
    assert unique_persons(api) == 2
    merge_entry = api.get(f"/api/links/{merge}").json()
    assert merge_entry["outcome"] == "undone" and merge_entry["logged_outcome"] == "merged"
    assert merge_entry["decided_by"] == done.json()["undo_id"]
    audit = api.get("/api/audit-log").json()["results"]
    assert any(entry["action"] == "undo" for entry in audit)
    sessions = api.get(f"/api/persons/{bob['id']}/sessions").json()["results"]
    assert [s["session_id"] for s in sessions] == ["s-bob"]


def test_undoing_the_undo_redoes_the_merge(api):
    merge = kiosk_merge(api)
    undo_id = api.post(f"/api/links/{merge}/undo").json()["undo_id"]

    redo = api.post(f"/api/links/{undo_id}/undo")

    assert redo.status_code == 200, redo.text
    assert sorted(person_of(api, "kiosk")["distinct_ids"]) == ["ann", "bob", "bob-phone", "kiosk"]
    assert api.get(f"/api/links/{merge}").json()["outcome"] == "merged"
    again = api.post(f"/api/links/{undo_id}/undo")
    assert again.status_code == 409 and "already undone" in again.json()["detail"]


def test_undo_of_an_unknown_entry_is_a_404_and_of_an_import_a_400(api):
    assert api.post("/api/links/999999/undo").status_code == 404
    imported = api.post("/api/persons/import", json={"persons": [{"distinct_ids": ["crm-7"], "is_identified": True}]})
    person_id = imported.json()["results"][0]["person_id"]
    entry = api.get(f"/api/persons/{person_id}/links").json()["results"][0]
    refused = api.post(f"/api/links/{entry['id']}/undo")
    assert refused.status_code == 400 and "import" in refused.json()["detail"]


def test_split_by_groups_gives_each_group_one_person(api):
    for device in ("phone", "laptop", "tablet"):
        send(api, "identify", user_id="carol", anonymous_id=device, timestamp="2026-11-02T09:00:00Z")
    person = person_of(api, "carol")

    preview = api.post(f"/api/persons/{person['id']}/split", params={"dry_run": "true"},
                       json={"groups": [["carol", "phone"], ["laptop"]]})
    assert preview.status_code == 200, preview.text
    groups = sorted(sorted(p["distinct_ids"]) for p in preview.json()["persons_after"])
    assert groups == [["carol", "phone"], ["laptop"], ["tablet"]]  # the ids in no group stay together
    assert len(person_of(api, "carol")["distinct_ids"]) == 4  # a dry run changes nothing

    split = api.post(f"/api/persons/{person['id']}/split", json={"groups": [["carol", "phone"], ["laptop"]]})

    assert split.status_code == 200, split.text
    assert sorted(sorted(p["distinct_ids"]) for p in split.json()) == groups


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"groups": [["carol"], ["stranger"]]}, "do not belong"),
        ({"groups": [["carol"], []]}, "at least one"),
        ({"groups": [["carol", "phone"], ["phone"]]}, "more than one group"),
        ({"groups": [["carol", "phone"]]}, "nothing to split"),
        ({"groups": [["carol"]], "distinct_ids": ["phone"]}, "not both"),
    ],
)
def test_a_wrong_split_is_a_400_naming_the_problem(api, body, problem):
    send(api, "identify", user_id="carol", anonymous_id="phone", timestamp="2026-11-02T09:00:00Z")
    person = person_of(api, "carol")
    response = api.post(f"/api/persons/{person['id']}/split", json=body)
    assert response.status_code == 400, response.text
    assert problem in response.json()["detail"]


def test_previews_of_identify_and_alias_show_the_merge_and_store_nothing(api):
    send(api, "track", distinct_id="anon-1", event="Viewed menu", timestamp="2026-11-02T09:00:00Z")
    send(api, "identify", user_id="dan", anonymous_id="dan-phone", timestamp="2026-11-02T09:00:00Z")

    identify = api.post("/api/preview/identify", json={"user_id": "dan", "anonymous_id": "anon-1", "set": {"plan": "pro"}})

    assert identify.status_code == 200, identify.text
    seen = identify.json()
    assert [sorted(p["distinct_ids"]) for p in seen["persons_after"]] == [["anon-1", "dan", "dan-phone"]]
    assert seen["deleted"] and {"person_id": seen["persons_after"][0]["id"], "key": "plan", "before": None, "after": "pro"} in seen["attribute_changes"]
    alias = api.post("/api/preview/alias", json={"target_distinct_id": "dan", "source_distinct_id": "null"})
    assert alias.status_code == 200
    assert [w["type"] for w in alias.json()["warnings"]] == ["illegal_distinct_id"]
    assert person_of(api, "anon-1")["distinct_ids"] == ["anon-1"]
    assert api.get("/api/warnings").json()["results"] == []


def test_a_merge_dry_run_names_the_person_that_goes(api):
    send(api, "identify", user_id="ann", anonymous_id="a-phone")
    send(api, "identify", user_id="ann-work", anonymous_id="a-laptop")
    preview = api.post("/api/persons/merge", params={"dry_run": "true"},
                       json={"target_distinct_id": "ann", "source_distinct_id": "ann-work"})
    assert preview.status_code == 200, preview.text
    assert preview.json()["deleted"] == [person_of(api, "ann-work")["id"]]
    assert len(person_of(api, "ann")["distinct_ids"]) == 2


def test_a_rule_change_is_previewed_over_stored_history(api):
    # Two user ids on one person are refused today; with max_user_ids 2 the second would attach.
    send(api, "identify", user_id="eve", anonymous_id="eve-phone", timestamp="2026-11-02T09:00:00Z")
    send(api, "identify", user_id="eve-work", anonymous_id="eve-phone", timestamp="2026-11-02T09:05:00Z")
    send(api, "identify", user_id="fay", anonymous_id="fay-phone", timestamp="2026-11-02T09:00:00Z")

    response = api.post("/api/rules/preview", json={"changes": {"max_user_ids": 2}, "days": 30})

    assert response.status_code == 200, response.text
    preview = response.json()
    assert preview["groups_replayed"] == 2 and preview["truncated"] is False
    assert preview["persons_affected"] == 2  # eve's person and eve-work's person become one
    [example] = preview["examples"]
    assert example["before"] == [["eve", "eve-phone"], ["eve-work"]]
    assert example["after"] == [["eve", "eve-phone", "eve-work"]]
    assert [(c["before"], c["after"]) for c in example["links_changed"]] == [
        ("refused:cannot_merge_already_identified", "attached")
    ]
    assert api.get("/api/project/settings").json()["max_user_ids"] == 1  # nothing changed
    assert sorted(person_of(api, "eve")["distinct_ids"]) == ["eve", "eve-phone"]
    bad = api.post("/api/rules/preview", json={"changes": {"max_user_ids": 0}})
    assert bad.status_code == 400 and "max_user_ids" in bad.json()["detail"]


def test_a_refusal_an_undo_lifted_says_so_in_the_warnings(api):
    # A tablet aliased to Ann by mistake; Bob's identify on it was refused; the alias is undone.
    send(api, "identify", user_id="ann", anonymous_id="ann-phone")
    send(api, "track", distinct_id="tablet", event="Opened app")
    send(api, "alias", distinct_id="ann", alias="tablet")
    response = api.post("/ingest/identify", json={"user_id": "bob", "anonymous_id": "tablet"}, headers=AUTH)
    assert response.json()["results"][0]["warnings"] == ["cannot_merge_already_identified"]
    ann = person_of(api, "ann")
    alias = next(link for link in api.get(f"/api/persons/{ann['id']}/links").json()["results"] if link["kind"] == "alias")

    undo_id = api.post(f"/api/links/{alias['id']}/undo").json()["undo_id"]

    assert sorted(person_of(api, "tablet")["distinct_ids"]) == ["bob", "tablet"]
    [warning] = api.get("/api/warnings", params={"type": "cannot_merge_already_identified"}).json()["results"]
    assert warning["lifted_by"] == undo_id
