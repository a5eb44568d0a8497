"""Who may see and change what in the web UI: sign-in, the session cookie, CSRF, and the headers
every UI answer carries. In-process, on a real SQLite file and on PostgreSQL."""

from __future__ import annotations

import hashlib
import re
import sqlite3

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from idstitch.server import ui_routes
from idstitch.server.ui_auth import LOGIN_COOKIE, SIGNIN_COOKIE, safe_next
from idstitch.store import sqlite as sqlite_store
from idstitch.store.schema import MIGRATIONS
from tests.conftest import INGEST_TOKEN, SECRET_KEY
from tests.privacy.conftest import read_rows, sqlite_file
from tests.ui.conftest import csrf_of, login_nonce, sign_in

pytestmark = pytest.mark.both_stores

PUBLIC = {"/", "/ui", "/ui/", "/ui/login", "/ui/static/{name}"}
SAMPLE_PARAMS = {"person_id": "0b8a6bb6-4bd0-5d2b-a0f5-2f7b6c7a2c11", "session_id": "sess-1", "key_id": "1", "number": "1",
                 "link_id": "1"}


def ui_routes_with(method: str) -> list[str]:
    paths = []
    for route in ui_routes.router.routes:
        if isinstance(route, APIRoute) and method in route.methods and route.path not in PUBLIC:
            path = route.path.replace(":path}", "}")
            paths.append(path.format(**SAMPLE_PARAMS))
    assert paths, f"no {method} routes found"
    return sorted(set(paths))


def pages() -> list[str]:
    return ui_routes_with("GET")


def forms() -> list[str]:
    return ui_routes_with("POST")


@pytest.mark.parametrize("path", pages())
def test_every_page_sends_a_visitor_without_a_session_to_sign_in(client: TestClient, path: str):
    answer = client.get(path, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/ui/login?next=")


@pytest.mark.parametrize("path", [p for p in forms() if p != "/ui/login"])
def test_every_form_refuses_a_post_without_a_session(client: TestClient, path: str):
    answer = client.post(path, data={"csrf_token": "x", "name": "x"}, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/ui/login")


@pytest.mark.parametrize("path", [p for p in forms() if p != "/ui/login"])
def test_every_form_refuses_a_post_without_the_csrf_token(ui: TestClient, path: str):
    answer = ui.post(path, data={"name": "Pro users", "label": "x", "filter_json": '{"attribute": "plan", "op": "is_set"}'},
                     follow_redirects=False)
    assert answer.status_code == 403
    assert "security token" in answer.text


def test_a_form_with_a_wrong_csrf_token_or_another_origin_is_refused(ui: TestClient):
    token = csrf_of(ui.get("/ui/settings").text)
    assert ui.post("/ui/settings/keys", data={"csrf_token": token + "0"}, follow_redirects=False).status_code == 403
    crossed = ui.post("/ui/settings/keys", data={"csrf_token": token}, headers={"Origin": "https://evil.example"},
                      follow_redirects=False)
    assert crossed.status_code == 403
    assert ui.post("/ui/settings/keys", data={"csrf_token": token, "label": "ok"}).status_code == 200


def test_the_visitor_comes_back_to_the_page_they_asked_for(client: TestClient):
    first = client.get("/ui/warnings?type=illegal_distinct_id", follow_redirects=False)
    assert first.headers["location"] == "/ui/login?next=%2Fui%2Fwarnings%3Ftype%3Dillegal_distinct_id"
    answer = sign_in(client, next_url="/ui/warnings?type=illegal_distinct_id")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/warnings?type=illegal_distinct_id"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/ui/", "/api/persons", "/ui\\@evil", None, ""])
def test_sign_in_never_redirects_off_the_ui(target: str | None):
    assert safe_next(target) == "/ui/users"


def test_the_session_cookie_is_http_only_same_site_lax_and_scoped_to_the_ui(client: TestClient):
    answer = sign_in(client)
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(SIGNIN_COOKIE + "="))
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/ui" in cookie
    assert "Max-Age=43200" in cookie


def test_only_a_hash_of_the_session_token_is_stored(client: TestClient, config):
    sign_in(client)
    token = client.cookies.get(SIGNIN_COOKIE)
    assert token
    rows = read_rows(config, "SELECT * FROM ui_signins")
    assert [r[0] for r in rows] == [hashlib.sha256(token.encode()).hexdigest()]
    assert token not in str(rows)
    if not config.database:  # the whole SQLite file, free pages included
        assert token.encode() not in sqlite_file(config).read_bytes()


def test_a_sign_ins_table_made_by_an_earlier_version_is_kept(tmp_path, monkeypatch):
    # Before migration 0004, store/signins.py made the table at the first sign-in.
    path = tmp_path / "old.db"
    monkeypatch.setattr(sqlite_store, "MIGRATIONS", tuple(m for m in MIGRATIONS if m[0] != "0004_signins"))
    sqlite_store.open_database(path).close()
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE IF NOT EXISTS ui_signins (token_hash TEXT PRIMARY KEY, project_id INTEGER NOT NULL,"
        " key_id INTEGER NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL) WITHOUT ROWID"
    )
    old.execute("INSERT INTO ui_signins VALUES ('h', 1, 1, '2026-01-01T00:00:00.000000Z', '2026-01-01T12:00:00.000000Z')")
    old.commit()
    old.close()
    monkeypatch.undo()
    conn = sqlite_store.open_database(path)
    try:
        assert "0004_signins" in {r[0] for r in conn.execute("SELECT name FROM migrations")}
        assert [tuple(r) for r in conn.execute("SELECT token_hash FROM ui_signins")] == [("h",)]
    finally:
        conn.close()


def test_a_wrong_key_or_the_ingest_token_cannot_sign_in(client: TestClient):
    for secret in ("sk_wrong", INGEST_TOKEN, ""):
        answer = sign_in(client, secret)
        assert answer.status_code == 401
        assert "not a valid secret key" in answer.text
        assert SIGNIN_COOKIE not in client.cookies
    assert client.get("/ui/users", follow_redirects=False).status_code == 303


def test_the_sign_in_form_needs_its_own_token(client: TestClient):
    login_nonce(client)
    answer = client.post("/ui/login", data={"secret_key": SECRET_KEY}, follow_redirects=False)
    assert answer.status_code == 403
    client.cookies.delete(LOGIN_COOKIE, path="/ui")
    answer = client.post("/ui/login", data={"secret_key": SECRET_KEY, "csrf_token": "guess"}, follow_redirects=False)
    assert answer.status_code == 403
    assert SIGNIN_COOKIE not in client.cookies


def test_sign_out_ends_the_session_for_good(ui: TestClient):
    token = ui.cookies.get(SIGNIN_COOKIE)
    csrf = csrf_of(ui.get("/ui/users").text)
    answer = ui.post("/ui/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/login?signed_out=1"
    ui.cookies.set(SIGNIN_COOKIE, token, path="/ui")  # a copy of the old cookie is worth nothing
    assert ui.get("/ui/users", follow_redirects=False).status_code == 303


def test_revoking_the_key_ends_its_sessions(ui: TestClient):
    page = ui.post("/ui/settings/keys", data={"csrf_token": csrf_of(ui.get("/ui/settings").text), "label": "spare"})
    assert "will not be shown again" in page.text
    own = re.search(r'/ui/settings/keys/(\d+)/revoke" *>\s*<input type="hidden" name="csrf_token" value="[^"]+">\s*'
                    r'<button[^>]*aria-label="Revoke key \d+ \(from environment\)', page.text)
    assert own, page.text
    answer = ui.post(f"/ui/settings/keys/{own.group(1)}/revoke", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert answer.status_code == 303
    assert ui.get("/ui/users", follow_redirects=False).status_code == 303


def test_ui_answers_carry_a_strict_policy_and_no_cors_headers(ui: TestClient):
    for path in ("/ui/users", "/ui/login", "/ui/settings"):
        answer = ui.get(path, headers={"Origin": "https://evil.example"})
        assert answer.status_code == 200
        assert not any(h.lower().startswith("access-control-") for h in answer.headers), answer.headers
        policy = answer.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy
        assert "script-src 'self'" in policy
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["cache-control"] == "no-store"
    preflight = ui.options("/ui/settings", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers


def test_the_root_leads_to_the_ui(client: TestClient):
    assert client.get("/", follow_redirects=False).headers["location"] == "/ui/"
    assert client.get("/ui/", follow_redirects=False).headers["location"] == "/ui/users"


def test_static_files_are_public_and_do_not_shadow_the_sdk(client: TestClient):
    css = client.get("/ui/static/ui.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert client.get("/ui/static/idstitch.js").status_code == 404
    assert client.get("/ui/static/..%2Fsettings.py").status_code == 404
    assert client.get("/static/idstitch.js").headers["content-type"].startswith("text/javascript")
