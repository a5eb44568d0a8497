"""What the UI's forms mean: condition rows into filter documents and back, and the settings form
changing the project through the same code as `PATCH /api/project/settings`."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from idstitch.query.filters import parse_filter
from idstitch.server.ui_forms import Form, FormError, Row, filter_document, read_value, rows_of, settings_changes
from idstitch.settings import DEFAULT_PROJECT_SETTINGS
from tests.conftest import INGEST_TOKEN, SECRET_KEY
from tests.ui.conftest import csrf_of

pytestmark = pytest.mark.both_stores


@pytest.mark.parametrize(
    "text, value",
    [
        pytest.param("pro", "pro", id="text"),
        pytest.param("42", 42, id="number"),
        pytest.param('"42"', "42", id="quoted-number-is-text"),
        pytest.param("true", True, id="boolean"),
        pytest.param("null", None, id="null"),
        pytest.param("[1, 2]", "[1, 2]", id="lists-only-through-in"),
        pytest.param("ada@example.com", "ada@example.com", id="email"),
    ],
)
def test_a_typed_value_is_read_as_json_scalar_or_text(text: str, value: Any):
    assert read_value(text) == value


def test_rows_build_the_query_apis_filter_document():
    rows = [
        Row("attribute", "plan", "in", "pro, team"),
        Row("did", "Signed up", "equals", "2"),
        Row("not_did", "Churned", "equals", ""),
        Row("property", "$browser", "equals", "Chrome"),
        Row("attribute", "", "equals", "ignored: no key"),
        Row("attribute", "email", "is_set", "ignored: no value for is_set"),
    ]
    document = filter_document(rows, "any")
    assert document == {"or": [
        {"attribute": "plan", "op": "in", "value": ["pro", "team"]},
        {"did": "Signed up", "min_count": 2},
        {"not": {"did": "Churned"}},
        {"property": "$browser", "op": "equals", "value": "Chrome"},
        {"attribute": "email", "op": "is_set"},
    ]}
    parse_filter(document)  # valid for the query API as it is


def test_one_row_is_the_condition_itself_and_no_row_is_no_filter():
    assert filter_document([Row("attribute", "plan", "equals", "pro")], "all") == {"attribute": "plan", "op": "equals", "value": "pro"}
    assert filter_document([Row()], "all") is None


def test_a_filter_goes_back_into_rows_unless_the_form_cannot_show_it():
    document = {"and": [{"attribute": "plan", "op": "equals", "value": "42"}, {"did": "Signed up"}]}
    rows, match = rows_of(document)  # type: ignore[misc]
    assert match == "all"
    assert filter_document(rows, match) == document
    assert rows_of({"and": [{"or": [{"did": "x"}]}]}) is None
    assert rows_of({"did": "x", "after": "-7d"}) is None


def test_a_bad_row_names_itself():
    with pytest.raises(FormError, match="condition 1: the number of times must be a whole number, got 'often'"):
        filter_document([Row("did", "Signed up", "equals", "often")], "all")


def form(**fields: str) -> Form:
    return Form(list(fields.items()))


SETTINGS_FORM = {
    "person_profiles": "always", "attributes_enabled": "on", "pii_guard": "on", "max_user_ids": "1",
    "illegal_ids": "", "illegal_id_patterns": "", "property_types": "", "max_keys_per_person": "1000",
    "max_key_length": "200", "max_string_length": "65535", "max_properties_bytes": "524288",
}


def test_the_settings_form_sends_only_what_changed():
    changes = settings_changes(
        form(**{**SETTINGS_FORM, "max_user_ids": "", "illegal_ids": "guest-user\n  \nkiosk\n", "property_types": "plan: string"}),
        DEFAULT_PROJECT_SETTINGS,
    )
    assert changes == {"max_user_ids": None, "illegal_ids": ["guest-user", "kiosk"], "property_types": {"plan": "string"}}


def test_turning_attributes_on_needs_the_privacy_acknowledgement():
    off = DEFAULT_PROJECT_SETTINGS.updated({"attributes_enabled": False})
    with pytest.raises(FormError, match="privacy confirmation"):
        settings_changes(form(**SETTINGS_FORM), off)
    assert settings_changes(form(**SETTINGS_FORM, privacy_acknowledged="on"), off) == {"attributes_enabled": True}
    without = {k: v for k, v in SETTINGS_FORM.items() if k != "attributes_enabled"}
    assert settings_changes(form(**without), DEFAULT_PROJECT_SETTINGS) == {"attributes_enabled": False}


def post_settings(ui: TestClient, **fields: str) -> Any:
    token = csrf_of(ui.get("/ui/settings").text)
    return ui.post("/ui/settings", data={**SETTINGS_FORM, **fields, "csrf_token": token}, follow_redirects=False)


def test_settings_saved_in_the_ui_are_the_apis_settings_and_are_audited(ui: TestClient):
    answer = post_settings(ui, max_user_ids="3", illegal_ids="kiosk", person_profiles="identified_only")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/settings?notice=Settings+saved."
    api = {"Authorization": f"Bearer {SECRET_KEY}"}
    settings = ui.get("/api/project/settings", headers=api).json()
    assert (settings["max_user_ids"], settings["illegal_ids"], settings["person_profiles"]) == (3, ["kiosk"], "identified_only")
    audit = ui.get("/api/audit-log", headers=api).json()["results"]
    assert any(e["action"] == "settings" and e["details"]["changes"]["max_user_ids"] == 3 for e in audit)


def test_the_identify_rule_is_chosen_in_the_ui_and_a_bad_choice_is_named(ui: TestClient):
    assert 'name="identify_without_anonymous_id"' in ui.get("/ui/settings").text
    assert post_settings(ui, identify_without_anonymous_id="plain_event").status_code == 303
    api = {"Authorization": f"Bearer {SECRET_KEY}"}
    assert ui.get("/api/project/settings", headers=api).json()["identify_without_anonymous_id"] == "plain_event"
    assert 'value="plain_event" selected' in ui.get("/ui/settings").text
    answer = post_settings(ui, identify_without_anonymous_id="posthog")
    assert answer.status_code == 400
    assert "Setting &#39;identify_without_anonymous_id&#39; has value &#39;posthog&#39;" in answer.text


def test_a_bad_setting_is_shown_on_the_form_and_nothing_changes(ui: TestClient):
    answer = post_settings(ui, illegal_id_patterns="(unclosed")
    assert answer.status_code == 400
    assert "does not compile" in answer.text
    answer = post_settings(ui, max_keys_per_person="lots")
    assert answer.status_code == 400
    assert "max_keys_per_person: expected a whole number, got &#39;lots&#39;" in answer.text


def test_attributes_switched_off_in_the_ui_refuse_attribute_operations(ui: TestClient):
    without = {k: v for k, v in SETTINGS_FORM.items() if k != "attributes_enabled"}
    token = csrf_of(ui.get("/ui/settings").text)
    assert ui.post("/ui/settings", data={**without, "csrf_token": token}, follow_redirects=False).status_code == 303
    page = ui.get("/ui/settings").text
    assert "I confirm that collecting these attributes complies with my privacy policy" in page
    ui.post("/ingest/identify", json={"token": INGEST_TOKEN, "user_id": "user-1", "set": {"plan": "pro"}})
    warnings = ui.get("/api/warnings", headers={"Authorization": f"Bearer {SECRET_KEY}"}).json()["results"]
    assert [w["type"] for w in warnings] == ["attributes_disabled"]
    assert "attributes_disabled" in ui.get("/ui/warnings").text
    refused = post_settings(ui)  # attributes_enabled=on without the acknowledgement
    assert refused.status_code == 400
    assert post_settings(ui, privacy_acknowledged="on").status_code == 303


def test_a_segment_built_in_the_ui_is_saved_for_the_query_api(ui: TestClient):
    ui.post("/ingest/identify", json={"token": INGEST_TOKEN, "user_id": "user-1", "set": {"plan": "pro"}})
    built = ui.get("/ui/segments", params={"rows": "1", "kind_0": "attribute", "key_0": "plan", "op_0": "equals",
                                           "value_0": "pro", "action": "build"})
    assert built.status_code == 200
    assert re.search(r'Matching users\s*<span class="count">1</span>', built.text)
    saved = ui.post("/ui/segments", data={"csrf_token": csrf_of(built.text), "name": "Pro users",
                                          "filter_json": '{"attribute":"plan","op":"equals","value":"pro"}'},
                    follow_redirects=False)
    assert saved.status_code == 303
    segments = ui.get("/api/segments", headers={"Authorization": f"Bearer {SECRET_KEY}"}).json()["results"]
    assert [(s["name"], s["filter"]) for s in segments] == [("Pro users", {"attribute": "plan", "op": "equals", "value": "pro"})]
    again = ui.post("/ui/segments", data={"csrf_token": csrf_of(built.text), "name": "Pro users",
                                          "filter_json": '{"attribute":"plan","op":"is_set"}'})
    assert again.status_code == 409
    assert "already exists" in again.text


def test_a_broken_filter_is_explained_with_its_path(ui: TestClient):
    answer = ui.get("/ui/segments", params={"action": "json", "filter_json": '{"attribute": "plan", "op": "bigger"}'})
    assert answer.status_code == 400
    assert "filter.op" in answer.text
    answer = ui.get("/ui/users", params={"attr": "signed_up_at", "op": "after", "value": "someday"})
    assert answer.status_code == 400
    assert "ISO-8601" in answer.text


def test_a_lone_surrogate_typed_in_the_ui_reads_as_u_fffd(ui: TestClient):
    # JSON typed or pasted into the UI decodes as the API's does: "\ud800" is U+FFFD, not an error.
    assert read_value('"a\\ud800"') == "a\ufffd"
    ui.post("/ingest/identify", json={"token": INGEST_TOKEN, "user_id": "user-1", "set": {"plan": "pro\ufffd"}})
    answer = ui.get("/ui/segments", params={"action": "json", "filter_json": '{"attribute": "plan", "op": "equals", "value": "pro\\ud800"}'})
    assert answer.status_code == 200, answer.text
    assert re.search(r'Matching users\s*<span class="count">1</span>', answer.text)


def test_retention_is_set_and_cleared_in_the_ui(ui: TestClient):
    api = {"Authorization": f"Bearer {SECRET_KEY}"}
    assert 'name="events_retention_days"' in ui.get("/ui/settings").text
    assert post_settings(ui, events_retention_days="90").status_code == 303
    assert ui.get("/api/project/settings", headers=api).json()["events_retention_days"] == 90
    assert 'value="90"' in ui.get("/ui/settings").text
    # A form without the field (an older page) leaves it; an empty field keeps events forever.
    assert post_settings(ui, max_user_ids="2").status_code == 303
    assert ui.get("/api/project/settings", headers=api).json()["events_retention_days"] == 90
    refused = post_settings(ui, events_retention_days="0")
    assert refused.status_code == 400 and "events_retention_days" in refused.text
    assert post_settings(ui, events_retention_days="").status_code == 303
    assert ui.get("/api/project/settings", headers=api).json()["events_retention_days"] is None
