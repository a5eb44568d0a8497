"""A database from before undo (store/schema.py 0006, PostgreSQL's 0004): its link-log entries
get their place in history — the seq of their event, or of the nearest earlier entry that had
one — and an undo then works on them."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from idstitch.server.app import create_app, prepare
from tests.conftest import INGEST_TOKEN, SECRET_KEY

pytestmark = pytest.mark.both_stores

NEW = {"sqlite": "0006_undoable_links", "postgres": "0004_undoable_links"}


def _a_database_from_before_undo(config, store) -> None:
    with TestClient(create_app(config)) as api:
        api.headers["Authorization"] = f"Bearer {SECRET_KEY}"
        for user, device in (("ann", "ann-phone"), ("bob", "bob-phone")):
            answer = api.post("/ingest/identify", json={"token": INGEST_TOKEN, "user_id": user, "anonymous_id": device})
            assert answer.status_code == 200, answer.text
        assert api.post("/api/persons/merge", json={"target_distinct_id": "ann", "source_distinct_id": "bob"}).status_code == 200
    conn = config.store().connect()
    try:
        # As a database of the earlier version: no seq, no detail, no link_effects.
        conn.execute("DROP TABLE link_effects")
        conn.execute("DROP INDEX links_by_seq")
        conn.execute("ALTER TABLE links DROP COLUMN seq")
        conn.execute("ALTER TABLE links DROP COLUMN detail")
        conn.execute("DELETE FROM migrations WHERE name = ?", (NEW["postgres" if store else "sqlite"],))
        if conn.in_transaction:
            conn.execute("COMMIT")
    finally:
        conn.close()

    prepare(config)


def test_entries_logged_before_undo_existed_can_be_undone(config, store):
    _a_database_from_before_undo(config, store)
    conn = config.store().connect(read_only=True)
    try:
        placed = conn.execute(
            "SELECT l.kind, l.seq, e.seq FROM links l LEFT JOIN events e ON e.uuid = l.event_uuid ORDER BY l.id"
        ).fetchall()
    finally:
        conn.close()
    [(_, ann_seq, ann_event), (_, bob_seq, bob_event), (kind, merge_seq, none)] = [tuple(row) for row in placed]
    assert (ann_seq, bob_seq) == (ann_event, bob_event)
    assert (kind, merge_seq, none) == ("merge", bob_seq, None)
    with TestClient(create_app(config)) as api:
        api.headers["Authorization"] = f"Bearer {SECRET_KEY}"
        person = api.get("/api/persons", params={"distinct_id": "bob"}).json()
        merge = [link for link in api.get(f"/api/persons/{person['id']}/links").json()["results"] if link["kind"] == "merge"]
        undone = api.post(f"/api/links/{merge[0]['id']}/undo")
        assert undone.status_code == 200, undone.text
        assert sorted(api.get("/api/persons", params={"distinct_id": "bob"}).json()["distinct_ids"]) == ["bob", "bob-phone"]


def test_an_old_admin_merge_replays_after_the_identify_it_followed(config, store):
    # The merge was placed at the seq of Bob's identify (the entry before it): it must come after
    # that identify in a replay, or Bob has no person yet to merge.
    _a_database_from_before_undo(config, store)
    with TestClient(create_app(config)) as api:
        api.headers["Authorization"] = f"Bearer {SECRET_KEY}"
        person = api.get("/api/persons", params={"distinct_id": "ann"}).json()
        ann_identify = api.get(f"/api/persons/{person['id']}/links").json()["results"][0]
        assert (ann_identify["kind"], ann_identify["target_distinct_id"]) == ("identify", "ann")
        assert api.post(f"/api/links/{ann_identify['id']}/undo").status_code == 200
        merged = api.get("/api/persons", params={"distinct_id": "bob"}).json()
        assert sorted(merged["distinct_ids"]) == ["ann", "bob", "bob-phone"]
