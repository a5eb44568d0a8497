"""What the UI's own read questions answer (store/summaries.py), on each store: the users search,
a person's ids with their dates, last seen, the warnings overview, and the filter builder's
suggestions. The same data gives the same answers on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient

from idstitch.server.state import ServerConfig
from idstitch.store import summaries
from tests.conftest import INGEST_TOKEN
from tests.privacy.conftest import send

pytestmark = pytest.mark.both_stores

PROJECT = 1


def people(client: TestClient) -> None:
    send(client, "identify", user_id="u-ada", anonymous_id="c-ada", timestamp="2026-05-01T09:00:00Z",
         set={"name": "Ada Lovelace", "email": "Ada.Lovelace@Example.com"})
    send(client, "track", distinct_id="c-ada", event="Viewed pricing", timestamp="2026-05-01T08:00:00Z")
    send(client, "track", distinct_id="u-ada", event="Signed up", timestamp="2026-05-03T10:00:00Z")
    send(client, "identify", user_id="u-rob", anonymous_id="c-rob", timestamp="2026-05-02T09:00:00Z",
         set={"name": "Robertina Quill", "email": "rq@example.org"})
    for _ in range(2):
        send(client, "attributes", distinct_id="u-ada", set={"contact": "ada@elsewhere.example"},  # a warning
             timestamp="2026-05-02T00:00:00Z")


def names_listed(html: str) -> list[str]:
    return re.findall(r'class="person-name" href="/ui/persons/[^"]+">([^<]+)</a>', html)


@pytest.mark.parametrize(
    ("q", "names"),
    [
        pytest.param("u-rob", ["Robertina Quill"], id="exact-distinct-id"),
        pytest.param("ADA.love", ["Ada Lovelace"], id="email-prefix-ascii-case"),
        pytest.param("lovelace", ["Ada Lovelace"], id="name-contains-ascii-case"),
        pytest.param("quill", ["Robertina Quill"], id="name-contains"),
        pytest.param("LOVELACÉ", [], id="non-ascii-case-is-not-folded"),
        pytest.param("nobody", [], id="no-match"),
        pytest.param("a\x00b", [], id="nul"),
    ],
)
def test_the_users_search(ui: TestClient, q: str, names: list[str]):
    people(ui)
    page = ui.get("/ui/users", params={"q": q})
    assert page.status_code == 200, page.text
    assert sorted(set(names_listed(page.text))) == names


def test_a_profile_shows_its_ids_with_their_dates_and_the_warnings_page_counts_them(ui: TestClient):
    people(ui)
    person_id = ui.get("/ui/find", params={"distinct_id": "c-ada"}, follow_redirects=False).headers["location"]
    profile = ui.get(person_id)
    assert profile.status_code == 200, profile.text
    assert "c-ada" in profile.text and "u-ada" in profile.text
    warnings = ui.get("/ui/warnings")
    assert warnings.status_code == 200 and "pii_outside_email" in warnings.text
    listed = ui.get("/ui/warnings", params={"type": "pii_outside_email"})
    assert listed.status_code == 200
    assert ui.get("/ui/warnings", params={"type": "x\x00"}).status_code == 200
    assert ui.get("/ui/sessions/s%00").status_code == 404


def test_the_summaries(api: TestClient, config: ServerConfig):
    people(api)
    person_id = api.get("/api/persons", params={"distinct_id": "u-ada"}).json()["id"]
    conn = config.store().connect(read_only=True)
    try:
        assert summaries.last_seen(conn, PROJECT, [person_id, "nobody"]) == {
            person_id: "2026-05-03T10:00:00.000000Z", "nobody": None,
        }
        ids = summaries.distinct_ids_with_dates(conn, PROJECT, person_id)
        assert [(i["distinct_id"], i["is_user_id"], i["first_event_at"], i["last_event_at"], i["events"]) for i in ids] == [
            ("u-ada", True, "2026-05-01T09:00:00.000000Z", "2026-05-03T10:00:00.000000Z", 4),
            ("c-ada", False, "2026-05-01T08:00:00.000000Z", "2026-05-01T08:00:00.000000Z", 1),
        ]
        assert summaries.distinct_ids_with_dates(conn, PROJECT, "a\x00") == []

        [group] = summaries.warning_overview(conn, PROJECT, datetime.now(timezone.utc), days=3, examples=1)
        assert (group["type"], group["total"], group["last_24h"], group["last_7d"]) == ("pii_outside_email", 2, 2, 2)
        assert all(type(n) is int for n in (group["total"], group["last_24h"], group["last_7d"], *group["daily"]))
        assert group["daily"][-1] == 2 and len(group["examples"]) == 1

        assert summaries.event_names(conn, PROJECT) == ["$identify", "$set", "Signed up", "Viewed pricing"]
        assert summaries.recent_attribute_keys(conn, PROJECT) == ["email", "name"]
        assert summaries.persons_with_email_prefix(conn, PROJECT, "ADA.LOVE") == [person_id]
        assert summaries.persons_with_email_prefix(conn, PROJECT, "ada.lovelace@example.com") == [person_id]
        assert summaries.persons_with_email_prefix(conn, PROJECT, "ada.lovelace@example.comx") == []
        assert summaries.persons_with_email_prefix(conn, PROJECT, "r") == [
            api.get("/api/persons", params={"distinct_id": "u-rob"}).json()["id"]
        ]
    finally:
        conn.close()


@pytest.mark.sqlite_only
def test_the_settings_page_shows_the_analytics_copy_and_its_lag(ui) -> None:
    sent = ui.post("/ingest/batch", json={"token": INGEST_TOKEN, "batch": [
        {"type": "track", "distinct_id": "anon-1", "event": "Signed up", "timestamp": "2026-11-02T10:00:00Z"}]})
    assert sent.status_code == 200
    ui.app.state.idstitch.analytics.catch_up()

    html = ui.get("/ui/settings").text

    assert "Analytics copy" in html and "analytics.duckdb" in html
    assert 'data-analytics-lag="0"' in html and "up to date" in html


@pytest.mark.sqlite_only
def test_the_segment_chart_says_it_came_from_the_analytics_copy(ui) -> None:
    sent = ui.post("/ingest/batch", json={"token": INGEST_TOKEN, "batch": [
        {"type": "track", "distinct_id": "anon-1", "event": "Signed up", "timestamp": "2026-11-02T10:00:00Z"}]})
    assert sent.status_code == 200

    html = ui.get("/ui/segments", params={"measure": "events", "interval": "total"}).text

    assert 'data-answered-by="duckdb"' in html and "up to date with the store" in html
