"""Every query route is in the OpenAPI document, with its request and response schemas."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.both_stores

ROUTES = [
    ("post", "/api/persons/query"), ("get", "/api/identity"), ("post", "/api/persons/attributes"),
    ("get", "/api/sessions"), ("post", "/api/sessions/query"), ("get", "/api/persons/{person_id}/sessions"),
    ("post", "/api/events/query"), ("post", "/api/counts"), ("get", "/api/segments"), ("post", "/api/segments"),
    ("get", "/api/segments/{segment_id}"), ("delete", "/api/segments/{segment_id}"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_query_routes_are_documented(client, method, path):
    document = client.get("/openapi.json").json()
    operation = document["paths"][path][method]
    assert operation.get("description") or operation.get("summary")
    assert "400" in operation["responses"]
    assert operation["security"]  # the secret key


def test_the_filter_schema_is_in_the_document(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("AttributeCondition", "PropertyCondition", "DidCondition", "SegmentCondition", "AllOf", "AnyOf", "NoneOf"):
        assert name in schemas
    assert "is_not_set" in str(schemas["AttributeCondition"])
