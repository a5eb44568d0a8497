"""Secret keys: created over the API (the secret shown once), listed without secrets, revoked at once."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from idstitch.server.app import create_app
from tests.conftest import INGEST_TOKEN, SECRET_KEY
from tests.privacy.conftest import read_rows

pytestmark = pytest.mark.both_stores


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_created_key_works_is_listed_without_its_secret_and_stops_working_once_revoked(api, client, config):
    created = api.post("/api/keys", json={"label": "ci"})
    assert created.status_code == 201, created.text
    key = created.json()
    assert key["secret"].startswith("sk_") and key["label"] == "ci" and key["revoked_at"] is None
    assert client.get("/api/warnings", headers=bearer(key["secret"])).status_code == 200

    listed = api.get("/api/keys").json()
    assert [k["label"] for k in listed] == ["from environment", "ci"]
    assert all("secret" not in k for k in listed)
    assert key["secret"] not in str(read_rows(config, "SELECT * FROM secret_keys"))

    revoked = api.delete(f"/api/keys/{key['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert client.get("/api/warnings", headers=bearer(key["secret"])).status_code == 401
    actions = [e["action"] for e in api.get("/api/audit-log").json()["results"]]
    assert actions[:2] == ["key_revoked", "key_created"]


def test_a_key_can_revoke_itself_but_not_the_last_one(api, client):
    other = api.post("/api/keys", json={"label": "spare"}).json()
    assert client.delete("/api/keys/1", headers=bearer(SECRET_KEY)).status_code == 200
    assert client.get("/api/keys", headers=bearer(SECRET_KEY)).status_code == 401
    last = client.delete(f"/api/keys/{other['id']}", headers=bearer(other["secret"]))
    assert last.status_code == 409
    assert "last active secret key" in last.json()["detail"]


def test_unknown_and_absurd_key_ids(api):
    assert api.delete("/api/keys/999").status_code == 404
    assert api.delete("/api/keys/0").status_code == 400
    assert api.delete(f"/api/keys/{2**70}").status_code == 400
    assert api.delete("/api/keys/abc").status_code == 400


def test_the_ingest_token_cannot_manage_keys(client):
    for method, path in [("GET", "/api/keys"), ("POST", "/api/keys"), ("DELETE", "/api/keys/1"),
                         ("GET", "/api/audit-log"), ("POST", "/api/privacy/delete"), ("GET", "/api/privacy/export")]:
        response = client.request(method, path, headers=bearer(INGEST_TOKEN), json={"distinct_id": "x"})
        assert response.status_code == 401, (method, path)


def test_a_revoked_key_from_the_environment_stays_revoked_after_a_restart(config):
    # IDSTITCH_SECRET_KEY is given again at every start: that must not undo its revocation.
    with TestClient(create_app(config)) as first:
        spare = first.post("/api/keys", json={"label": "spare"}, headers=bearer(SECRET_KEY)).json()
        assert first.delete("/api/keys/1", headers=bearer(spare["secret"])).status_code == 200

    with TestClient(create_app(config)) as restarted:
        assert restarted.get("/api/keys", headers=bearer(SECRET_KEY)).status_code == 401
        keys = restarted.get("/api/keys", headers=bearer(spare["secret"])).json()
        assert [(k["label"], k["revoked_at"] is not None) for k in keys] == [("from environment", True), ("spare", False)]
