"""The audit log: every admin action with its actor; readable, never editable."""

from __future__ import annotations

import pytest

from tests.privacy.conftest import send

pytestmark = pytest.mark.both_stores


def test_merge_split_settings_export_and_delete_are_all_audited_with_the_key(api):
    send(api, "identify", user_id="u-1", anonymous_id="c-1")
    send(api, "track", distinct_id="c-2", event="x")
    api.post("/api/persons/merge", json={"target_distinct_id": "u-1", "source_distinct_id": "c-2"})
    person = api.get("/api/persons", params={"distinct_id": "u-1"}).json()
    api.post(f"/api/persons/{person['id']}/split", json={"distinct_ids": ["c-2"]})
    api.patch("/api/project/settings", json={"max_user_ids": 2})
    api.get("/api/privacy/export", params={"distinct_id": "c-2"})
    api.post("/api/privacy/delete", json={"distinct_id": "c-2"})

    entries = api.get("/api/audit-log").json()["results"]

    assert [e["action"] for e in entries] == ["delete", "export", "settings", "split", "merge"]
    assert {e["actor"] for e in entries} == {"admin:1"}
    assert all(e["created_at"] for e in entries)


def test_the_audit_log_is_paged_newest_first(api):
    for n in range(5):
        api.patch("/api/project/settings", json={"max_user_ids": n + 1})
    first = api.get("/api/audit-log", params={"limit": 2}).json()
    second = api.get("/api/audit-log", params={"limit": 2, "cursor": first["next"]}).json()
    third = api.get("/api/audit-log", params={"limit": 2, "cursor": second["next"]}).json()
    changes = [e["details"]["changes"]["max_user_ids"] for page in (first, second, third) for e in page["results"]]
    assert changes == [5, 4, 3, 2, 1]
    assert third["next"] is None


@pytest.mark.parametrize("cursor", ["garbage", "WyJhIl0=", "W1tdXQ==", "WzEsMl0="])
def test_a_forged_audit_cursor_is_a_400(api, cursor):
    assert api.get("/api/audit-log", params={"cursor": cursor}).status_code == 400


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_the_api_has_no_way_to_change_the_audit_log(api, method):
    assert api.request(method, "/api/audit-log", json={}).status_code == 405
    assert api.request(method, "/api/audit-log/1", json={}).status_code in (404, 405)


def test_the_database_refuses_to_edit_or_remove_an_audit_entry(api, config):
    api.patch("/api/project/settings", json={"max_user_ids": 2})
    conn = config.store().connect()  # autocommit on both stores: no transaction left open
    try:
        # sqlite3.IntegrityError on SQLite, a RaiseException from the trigger on PostgreSQL.
        with pytest.raises(Exception, match="append-only"):
            conn.execute("UPDATE audit_log SET action = 'nothing'")
        with pytest.raises(Exception, match="append-only"):
            conn.execute("UPDATE audit_log SET details = '{}'")
        with pytest.raises(Exception, match="append-only"):
            conn.execute("DELETE FROM audit_log")
        # What erasure writes (store/privacy.py `_redact_audit`) is the one change allowed.
        conn.execute("""UPDATE audit_log SET details = '{"changes":"hmac-sha256:00","redacted":true}'""")
    finally:
        conn.close()
    [entry] = api.get("/api/audit-log").json()["results"]
    assert entry["details"] == {"changes": "hmac-sha256:00", "redacted": True}


def test_no_audit_entry_names_a_person_in_clear_text(api):
    # README: audit entries name a person only by a keyed hash, never by id or email.
    send(api, "identify", user_id="user-audit-1", anonymous_id="cookie-audit-1")
    send(api, "track", distinct_id="cookie-audit-2", event="x")
    api.post("/api/persons/merge", json={"target_distinct_id": "user-audit-1", "source_distinct_id": "cookie-audit-2"})
    person_id = api.get("/api/persons", params={"distinct_id": "user-audit-1"}).json()["id"]
    api.post("/api/persons/attributes", json={"distinct_id": "cookie-audit-1", "set": {"plan": "pro"}})
    api.post(f"/api/persons/{person_id}/split", json={"distinct_ids": ["cookie-audit-2"]})
    api.get("/api/privacy/persons", params={"distinct_id": "cookie-audit-2"})

    entries = api.get("/api/audit-log").json()["results"]

    assert [e["action"] for e in entries] == ["lookup", "split", "set_attributes", "merge"]
    text = str(entries)
    assert [n for n in ("user-audit-1", "cookie-audit-1", "cookie-audit-2", person_id) if n in text] == []
    merge = entries[-1]["details"]
    assert merge["target"].startswith("hmac-sha256:") and merge["source"].startswith("hmac-sha256:")
