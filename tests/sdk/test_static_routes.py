"""`GET /static/idstitch.js`: the built SDK with its type, cache, CORS and compression headers."""

from __future__ import annotations

import gzip

from idstitch.server.static_routes import sdk_asset
from tests.sdk.conftest import BUILT_SDK


def test_the_sdk_is_served_as_javascript_to_any_origin(client):
    response = client.get("/static/idstitch.js", headers={"Accept-Encoding": "identity", "Origin": "https://shop.example"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=3600, stale-while-revalidate=86400"
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["cross-origin-resource-policy"] == "cross-origin"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["vary"] == "Accept-Encoding"
    assert "content-encoding" not in response.headers
    assert response.content == BUILT_SDK.read_bytes()
    assert response.text.startswith("/*! idstitch.js ")


def test_clients_that_accept_gzip_get_it_compressed(client):
    response = client.get("/static/idstitch.js", headers={"Accept-Encoding": "gzip, deflate, br"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.content == BUILT_SDK.read_bytes()  # httpx inflates it
    assert int(response.headers["content-length"]) == len(gzip.compress(BUILT_SDK.read_bytes(), 9, mtime=0))
    refused = client.get("/static/idstitch.js", headers={"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in refused.headers


def test_a_cached_copy_is_revalidated_with_its_etag(client):
    first = client.get("/static/idstitch.js", headers={"Accept-Encoding": "identity"})
    etag = first.headers["etag"]
    assert etag == sdk_asset().etag and etag.startswith('"')
    again = client.get("/static/idstitch.js", headers={"If-None-Match": f'W/{etag}', "Accept-Encoding": "identity"})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    stale = client.get("/static/idstitch.js", headers={"If-None-Match": '"old"', "Accept-Encoding": "identity"})
    assert stale.status_code == 200


def test_head_answers_without_a_body(client):
    response = client.head("/static/idstitch.js", headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"


def test_the_route_is_in_the_openapi_document(client):
    assert "/static/idstitch.js" in client.get("/openapi.json").json()["paths"]
