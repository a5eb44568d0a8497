"""CORS (server/cors.py): open on the ingest routes for any page, absent on everything else."""

from __future__ import annotations

import pytest

from idstitch.server.cors import is_ingest_path
from tests.conftest import INGEST_TOKEN, SECRET_KEY

pytestmark = pytest.mark.both_stores

SITE = "https://shop.example"
INGEST_PATHS = [
    "/e/", "/e", "/i/v0/e/", "/batch/", "/capture/", "/track/", "/engage/", "/s/", "/flags/", "/decide/",
    f"/array/{INGEST_TOKEN}/config", f"/array/{INGEST_TOKEN}/config.js",
    "/v1/batch", "/v1/t", "/v1/identify", "/ingest/batch", "/ingest/track",
]
PRIVATE_PATHS = ["/api/persons", "/api/warnings", "/api/project/settings", "/_health", "/openapi.json", "/docs"]


@pytest.mark.parametrize("path", INGEST_PATHS)
def test_a_preflight_on_an_ingest_route_allows_the_origin_and_echoes_the_headers(client, path: str):
    response = client.options(path, headers={
        "Origin": SITE,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-custom-header",
    })
    assert response.status_code == 200
    assert {k: response.headers.get(k) for k in (
        "access-control-allow-origin", "access-control-allow-credentials", "access-control-allow-methods",
        "access-control-allow-headers",
    )} == {
        "access-control-allow-origin": SITE,
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET, POST, OPTIONS",
        "access-control-allow-headers": "content-type,x-custom-header",
    }


def test_a_preflight_for_a_private_network_request_is_allowed(client):
    response = client.options("/e/", headers={
        "Origin": SITE, "Access-Control-Request-Method": "POST", "Access-Control-Request-Private-Network": "true",
    })
    assert response.headers["access-control-allow-private-network"] == "true"


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        pytest.param("/e/", {"api_key": INGEST_TOKEN, "batch": [{"event": "x", "distinct_id": "a"}]}, 200,
                     id="accepted"),
        pytest.param("/e/", {"api_key": "phc_wrong", "batch": []}, 401, id="bad-token"),
        pytest.param("/e/", {"hello": 1}, 400, id="bad-body"),
        pytest.param("/v1/batch", {"batch": [], "writeKey": INGEST_TOKEN}, 200, id="segment"),
        pytest.param("/flags/?v=2", {"token": INGEST_TOKEN}, 200, id="flags"),
    ],
)
def test_every_ingest_answer_carries_cors_headers_errors_included(client, path: str, body: dict, status: int):
    response = client.post(path, json=body, headers={"Origin": SITE})
    assert response.status_code == status
    assert response.headers["access-control-allow-origin"] == SITE
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "Origin" in response.headers["vary"]


def test_the_remote_config_script_carries_cors_headers(client):
    # posthog-js loads it with `<script crossorigin="anonymous">`: without them the script is blocked.
    response = client.get(f"/array/{INGEST_TOKEN}/config.js", headers={"Origin": SITE})
    assert response.headers["access-control-allow-origin"] == SITE


def test_without_an_origin_there_are_no_cors_headers(client):
    response = client.post("/e/", json={"api_key": INGEST_TOKEN, "batch": []})
    assert not [k for k in response.headers if k.startswith("access-control-")]


@pytest.mark.parametrize("path", PRIVATE_PATHS)
def test_the_read_api_sends_no_cors_headers(client, path: str):
    headers = {"Origin": SITE, "Authorization": f"Bearer {SECRET_KEY}"}
    response = client.get(path, headers=headers)
    assert response.status_code == 200
    assert not [k for k in response.headers if k.startswith("access-control-")]
    preflight = client.options(path, headers={"Origin": SITE, "Access-Control-Request-Method": "GET",
                                              "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code != 200
    assert not [k for k in preflight.headers if k.startswith("access-control-")]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/e", True, id="e"),
        pytest.param("/i/v0/e/", True, id="i-v0-e"),
        pytest.param("/v1/anything", True, id="v1"),
        pytest.param("/api/persons", False, id="api"),
        pytest.param("/api/e/", False, id="api-lookalike"),
        pytest.param("/ingest", False, id="ingest-bare"),
        pytest.param("/", False, id="root"),
        pytest.param("/static/surveys.js", False, id="static"),
    ],
)
def test_is_ingest_path(path: str, expected: bool):
    assert is_ingest_path(path) is expected
