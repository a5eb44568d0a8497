"""The API and UI send no permissive CORS headers: a page on another origin must not read them
with a visitor's browser (only the ingest routes answer cross-origin requests, server/cors.py)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import SECRET_KEY

pytestmark = pytest.mark.both_stores

EVIL = "https://evil.example"
# Not in the OpenAPI document, and must not grant CORS either.
EXTRA = [("GET", "/api/nowhere"), ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/"), ("GET", "/ui/")]


def cors_headers(response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


def api_routes(client) -> list[tuple[str, str]]:
    """Every /api operation of the OpenAPI document, path parameters filled in."""
    routes = []
    for path, operations in client.get("/openapi.json").json()["paths"].items():
        if path.startswith("/api/"):
            filled = re.sub(r"\{[^}]*_id\}", "1", path)
            routes += [(method.upper(), filled) for method in operations]
    assert len(routes) >= 20
    return routes + EXTRA


def test_api_and_ui_responses_carry_no_cors_headers(client):
    leaks = []
    for method, path in api_routes(client):
        for auth in ({}, {"Authorization": f"Bearer {SECRET_KEY}"}):
            response = client.request(method, path, headers={"Origin": EVIL, **auth})
            if cors_headers(response):
                leaks.append((method, path, cors_headers(response)))
    assert leaks == []


def test_api_and_ui_preflights_are_not_granted(client):
    granted = []
    for method, path in api_routes(client):
        response = client.options(path, headers={
            "Origin": EVIL,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type",
        })
        if cors_headers(response) or response.status_code < 400:
            granted.append((method, path, response.status_code, cors_headers(response)))
    assert granted == []


def test_the_ingest_routes_do_answer_cross_origin_requests(client):
    # The contrast that makes the tests above meaningful.
    response = client.options("/batch/", headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"})
    assert response.headers.get("access-control-allow-origin") == EVIL
