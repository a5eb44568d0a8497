"""Changing identity from the UI (issue 12, item 5): undo and redo a link-log entry, merge,
split by groups and delete a person, each previewed and then confirmed with a CSRF-checked form;
and the identity rules page with its preview. In-process, on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from idstitch.server.ui_forms import Form, FormError, split_groups
from tests.conftest import SECRET_KEY
from tests.privacy.conftest import send
from tests.ui.conftest import csrf_of

pytestmark = pytest.mark.both_stores

API = {"Authorization": f"Bearer {SECRET_KEY}"}


def person_of(ui: TestClient, distinct_id: str) -> dict[str, Any]:
    answer = ui.get("/api/persons", params={"distinct_id": distinct_id}, headers=API)
    assert answer.status_code == 200, answer.text
    return answer.json()


def kiosk_merge(ui: TestClient) -> int:
    """Ann and Bob each log in at the shop's kiosk; an operator merges Bob into Ann by mistake."""
    send(ui, "track", distinct_id="kiosk", event="Viewed menu", session_id="s-ann")
    send(ui, "identify", user_id="ann", anonymous_id="kiosk", set={"email": "ann@example.com", "plan": "pro"})
    send(ui, "identify", user_id="bob", anonymous_id="bob-phone", set={"email": "bob@example.com", "plan": "free"})
    merged = ui.post("/api/persons/merge", json={"target_distinct_id": "ann", "source_distinct_id": "bob"}, headers=API)
    assert merged.status_code == 200, merged.text
    links = ui.get(f"/api/persons/{merged.json()['id']}/links", headers=API).json()["results"]
    return next(link["id"] for link in links if link["kind"] == "merge")


def confirm(ui: TestClient, preview: Any) -> Any:
    """Post the preview page's confirmation form as the browser would."""
    form = re.search(r'<form method="post" action="([^"]+)" class="confirm card">(.*?)</form>', preview.text, re.S)
    assert form, "the preview has no confirmation form"
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form.group(2)))
    return ui.post(form.group(1), data=fields, follow_redirects=False)


def after_table(html: str) -> str:
    return html[html.index('id="after-title"'):]


def link_row(html: str, link_id: int) -> str:
    """The row of the person page's link log showing entry `link_id`."""
    log = html[html.index('id="links-title"'):]
    return next(row for row in log.split("<tr") if f'<td data-label="Entry" class="mono small">#{link_id}</td>' in row)


def persons_after(html: str) -> list[list[str]]:
    """The ids of each person in the preview's "After" table."""
    cells = re.findall(r'<td data-label="Ids" class="mono small">([^<]*)</td>', after_table(html))
    return sorted(sorted(cell.split(", ")) for cell in cells)


def test_the_undo_preview_shows_both_customers_restored_and_changes_nothing(ui: TestClient):
    merge = kiosk_merge(ui)
    ann = person_of(ui, "ann")
    profile = ui.get(f"/ui/persons/{ann['id']}")
    assert f'href="/ui/links/{merge}/undo?person_id={ann["id"]}"' in profile.text

    preview = ui.get(f"/ui/links/{merge}/undo", params={"person_id": ann["id"]})

    assert preview.status_code == 200, preview.text
    after = after_table(preview.text)
    assert persons_after(preview.text) == [["ann", "kiosk"], ["bob", "bob-phone"]]
    assert "ann@example.com" in after and "bob@example.com" in after and "free" in after
    assert "Id bob would move from ann@example.com to bob@example.com." in preview.text
    assert "would read “undone” instead of “merged one person into the other”" in preview.text
    assert sorted(person_of(ui, "bob")["distinct_ids"]) == ["ann", "bob", "bob-phone", "kiosk"]


def test_confirming_the_undo_restores_both_and_the_page_shows_it_undone(ui: TestClient):
    merge = kiosk_merge(ui)
    ann = person_of(ui, "ann")
    preview = ui.get(f"/ui/links/{merge}/undo", params={"person_id": ann["id"]})

    done = confirm(ui, preview)

    assert done.status_code == 303, done.text
    bob = person_of(ui, "bob")
    assert sorted(bob["distinct_ids"]) == ["bob", "bob-phone"] and bob["properties"]["plan"] == "free"
    assert done.headers["location"].startswith(f"/ui/persons/{ann['id']}?notice=Entry+%23{merge}+undone")
    landing = ui.get(done.headers["location"])
    assert "1 person created, 2 ids moved" in landing.text
    assert f'href="/ui/persons/{bob["id"]}"' in landing.text  # the other person the undo left
    row = link_row(landing.text, merge)
    assert "undone (by #" in row and "logged: merged one person into the other" in row
    assert ">Undo<" not in row
    audit = ui.get("/api/audit-log", headers=API).json()["results"]
    assert any(entry["action"] == "undo" and entry["actor"] == "admin:1" for entry in audit)


def test_the_undo_entry_offers_a_redo_which_merges_again(ui: TestClient):
    merge = kiosk_merge(ui)
    ann = person_of(ui, "ann")
    undo_id = ui.post(f"/api/links/{merge}/undo", headers=API).json()["undo_id"]
    profile = ui.get(f"/ui/persons/{ann['id']}").text
    assert f'aria-label="Redo entry #{merge}">Redo</a>' in profile

    preview = ui.get(f"/ui/links/{undo_id}/undo", params={"person_id": ann["id"]})
    assert preview.status_code == 200, preview.text
    assert f"Redo entry #{merge}" in preview.text
    assert confirm(ui, preview).status_code == 303

    assert sorted(person_of(ui, "kiosk")["distinct_ids"]) == ["ann", "bob", "bob-phone", "kiosk"]
    assert re.search(r"undone \(by #\d+\)", link_row(ui.get(f"/ui/persons/{ann['id']}").text, undo_id))


def test_an_action_the_log_refuses_is_a_problem_on_the_page_not_a_500(ui: TestClient):
    merge = kiosk_merge(ui)
    ann = person_of(ui, "ann")
    preview = ui.get(f"/ui/links/{merge}/undo", params={"person_id": ann["id"]})
    assert confirm(ui, preview).status_code == 303

    again = confirm(ui, preview)  # the same form, sent twice

    assert again.status_code == 409
    assert re.search(rf'role="alert"><strong>Problem:</strong> Entry {merge} is already undone by entry \d+', again.text)
    assert ui.get(f"/ui/links/{merge}/undo").status_code == 409
    assert ui.get("/ui/links/999999/undo").status_code == 404
    imported = ui.post("/api/persons/import", json={"persons": [{"distinct_ids": ["crm-7"], "is_identified": True}]}, headers=API)
    entry = ui.get(f"/api/persons/{imported.json()['results'][0]['person_id']}/links", headers=API).json()["results"][0]
    refused = ui.get(f"/ui/links/{entry['id']}/undo")
    assert refused.status_code == 400 and "is an import" in refused.text


def test_merge_another_person_found_by_email_after_its_preview(ui: TestClient):
    send(ui, "identify", user_id="ann", anonymous_id="a-phone", set={"email": "ann@example.com"})
    send(ui, "identify", user_id="ann-work", anonymous_id="a-laptop", set={"email": "ann@work.example", "plan": "team"})
    ann, work = person_of(ui, "ann"), person_of(ui, "ann-work")

    found = ui.get(f"/ui/persons/{ann['id']}/merge", params={"q": "ann@work.example"})
    assert found.status_code == 200, found.text
    assert f"/ui/persons/{ann['id']}/merge?q=ann%40work.example&amp;source=ann-work" in found.text
    preview = ui.get(f"/ui/persons/{ann['id']}/merge", params={"q": "ann@work.example", "source": "ann-work"})
    assert preview.status_code == 200, preview.text
    assert "The person ann@work.example would be gone (it held a-laptop, ann-work)." in preview.text
    assert person_of(ui, "ann-work")["id"] == work["id"]  # nothing changed yet

    done = confirm(ui, preview)

    assert done.status_code == 303, done.text
    assert done.headers["location"].startswith(f"/ui/persons/{ann['id']}?notice=Merged%3A+1+person+removed")
    assert sorted(person_of(ui, "ann-work")["distinct_ids"]) == ["a-laptop", "a-phone", "ann", "ann-work"]
    own = ui.get(f"/ui/persons/{ann['id']}/merge", params={"source": "a-phone"})
    assert own.status_code == 400 and "already this person" in own.text


def test_split_by_groups_after_its_preview(ui: TestClient):
    for device in ("phone", "laptop", "tablet"):
        send(ui, "identify", user_id="carol", anonymous_id=device)
    carol = person_of(ui, "carol")
    form = ui.get(f"/ui/persons/{carol['id']}/split").text
    ids = dict(re.findall(r'name="id_(\d+)" value="([^"]+)"', form))
    choice = {"carol": "1", "phone": "1", "laptop": "2", "tablet": "alone"}
    fields = {**{f"id_{i}": d for i, d in ids.items()}, **{f"group_{i}": choice[d] for i, d in ids.items()}}

    preview = ui.get(f"/ui/persons/{carol['id']}/split", params=fields)

    assert preview.status_code == 200, preview.text
    assert persons_after(preview.text) == [["carol", "phone"], ["laptop"], ["tablet"]]
    assert len(person_of(ui, "carol")["distinct_ids"]) == 4
    done = confirm(ui, preview)
    assert done.status_code == 303, done.text
    assert "affected=" in done.headers["location"]
    assert sorted(person_of(ui, "carol")["distinct_ids"]) == ["carol", "phone"]
    assert person_of(ui, "laptop")["id"] != person_of(ui, "tablet")["id"]
    nothing = ui.get(f"/ui/persons/{person_of(ui, 'carol')['id']}/split",
                     params={"id_0": "carol", "group_0": "1", "id_1": "phone", "group_1": "1"})
    assert nothing.status_code == 400 and "nothing to split" in nothing.text


def test_delete_says_what_it_erases_and_erases_it_audited(ui: TestClient):
    send(ui, "identify", user_id="dora", anonymous_id="d-phone", set={"email": "dora@example.com"})
    send(ui, "track", distinct_id="d-phone", event="Viewed menu")
    dora = person_of(ui, "dora")
    page = ui.get(f"/ui/persons/{dora['id']}/delete")
    assert page.status_code == 200, page.text
    assert re.search(r"<dt>Distinct ids</dt><dd>2</dd></div>\s*<div><dt>Events</dt><dd>2</dd>", page.text)

    done = ui.post(f"/ui/persons/{dora['id']}/delete", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)

    assert done.status_code == 303
    assert done.headers["location"].startswith("/ui/users?notice=Person+erased%3A+2+ids%2C+2+events")
    assert ui.get("/api/persons", params={"distinct_id": "dora"}, headers=API).status_code == 404
    audit = ui.get("/api/audit-log", headers=API).json()["results"]
    assert any(entry["action"] == "delete" and entry["actor"] == "admin:1" for entry in audit)
    gone = ui.post(f"/ui/persons/{dora['id']}/delete", data={"csrf_token": csrf_of(page.text)})
    assert gone.status_code == 404


def post_rules(ui: TestClient, **fields: str) -> Any:
    token = csrf_of(ui.get("/ui/rules").text)
    typed = {"identity_rules": "{}", "max_user_ids": "1", "illegal_ids": "", "illegal_id_patterns": "", "days": "30"}
    return ui.post("/ui/rules", data={**typed, **fields, "csrf_token": token}, follow_redirects=False)


def test_a_bad_rule_is_shown_next_to_its_field_and_nothing_is_saved(ui: TestClient):
    answer = post_rules(ui, action="save", identity_rules='{"limits": [{"kind": "anonymous_id", "max": 0}]}')

    assert answer.status_code == 400
    assert ('<p class="field-error" id="identity_rules-problem">Setting &#39;identity_rules.limits[0].max&#39; has value 0.'
            in answer.text)
    assert post_rules(ui, action="save", identity_rules="{not json").status_code == 400
    assert ui.get("/api/project/settings", headers=API).json()["identity_rules"] == {}


def test_rules_are_saved_and_shown_in_words(ui: TestClient):
    rules = '{"limits": [{"kind": "anonymous_id", "max": 5, "window_days": 7}]}'
    answer = post_rules(ui, action="save", identity_rules=rules)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/rules?notice=Rules+saved."
    assert ui.get("/api/project/settings", headers=API).json()["identity_rules"] == {
        "limits": [{"kind": "anonymous_id", "max": 5, "window_days": 7}]}
    page = ui.get("/ui/rules").text
    assert "At most 5 anonymous_id ids per person, joined within 7 days." in page


def test_the_rules_preview_shows_an_affected_example_and_saves_nothing(ui: TestClient):
    send(ui, "identify", user_id="eve", anonymous_id="eve-phone")
    send(ui, "identify", user_id="eve", anonymous_id="eve-laptop")
    send(ui, "identify", user_id="fay", anonymous_id="fay-phone")

    answer = post_rules(ui, action="preview", identity_rules='{"limits": [{"kind": "anonymous_id", "max": 1}]}', days="7")

    assert answer.status_code == 200, answer.text
    stats = re.search(r"<dt>Groups replayed</dt><dd>(\d+)</dd></div>\s*<div><dt>Persons affected</dt><dd>(\d+)</dd>", answer.text)
    assert stats and stats.groups() == ("2", "1")  # eve's person becomes two
    example = answer.text[answer.text.index('class="examples rule-examples"'):]
    assert "<strong>Now</strong><div class=\"mono small\">eve, eve-laptop, eve-phone</div>" in example
    assert "<strong>With these settings</strong><div class=\"mono small\">eve, eve-phone</div>" in example
    assert "attached an id to the existing person → <strong>refused: identity_rule_limit</strong>" in example
    assert "New warning identity_rule_limit" in example
    assert ui.get("/api/project/settings", headers=API).json()["identity_rules"] == {}


def test_undoing_one_entry_of_a_split_marks_the_whole_split_undone(ui: TestClient):
    for device in ("phone", "laptop"):
        send(ui, "identify", user_id="carol", anonymous_id=device)
    carol = person_of(ui, "carol")
    split = ui.post(f"/api/persons/{carol['id']}/split", json={"groups": [["carol", "phone"], ["laptop"]]}, headers=API)
    assert split.status_code == 200, split.text
    entries = [link["id"] for link in ui.get(f"/api/persons/{carol['id']}/links", headers=API).json()["results"]
               if link["kind"] == "split"]
    assert len(entries) > 1  # a split logs an entry per id

    done = confirm(ui, ui.get(f"/ui/links/{entries[0]}/undo", params={"person_id": carol["id"]}))

    assert done.status_code == 303, done.text
    assert len(person_of(ui, "laptop")["distinct_ids"]) == 3
    profile = ui.get(f"/ui/persons/{carol['id']}").text
    for entry in entries:
        assert "undone (by #" in link_row(profile, entry) and ">Undo<" not in link_row(profile, entry)


def test_the_split_form_reads_groups_and_names_a_bad_choice():
    chosen = Form([("id_0", "carol"), ("group_0", "2"), ("id_1", "phone"), ("group_1", "alone"), ("id_2", "tablet"),
                   ("group_2", "2"), ("id_3", "laptop"), ("group_3", "1")])
    assert split_groups(chosen) == (("laptop",), ("carol", "tablet"), ("phone",))
    with pytest.raises(FormError, match="the group of 'carol': expected one of 1, 2, 3, alone, got '9'"):
        split_groups(Form([("id_0", "carol"), ("group_0", "9")]))


def test_the_warnings_page_says_a_refusal_an_undo_lifted_no_longer_applies(ui: TestClient):
    # A tablet aliased to Ann by mistake refused Bob's identify on it; the alias is undone.
    send(ui, "identify", user_id="ann", anonymous_id="ann-phone")
    send(ui, "track", distinct_id="tablet", event="Opened app")
    send(ui, "alias", distinct_id="ann", alias="tablet")
    send(ui, "identify", user_id="bob", anonymous_id="tablet")
    ann = person_of(ui, "ann")
    alias = next(link for link in ui.get(f"/api/persons/{ann['id']}/links", headers=API).json()["results"]
                 if link["kind"] == "alias")
    before = ui.get("/ui/warnings", params={"type": "cannot_merge_already_identified"})
    assert before.status_code == 200 and "No longer applies" not in before.text

    confirm(ui, ui.get(f"/ui/links/{alias['id']}/undo", params={"person_id": ann["id"]}))

    after = ui.get("/ui/warnings", params={"type": "cannot_merge_already_identified"})
    assert "No longer applies" in after.text and "re-decided by undo entry #" in after.text
