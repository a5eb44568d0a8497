"""How every /api route reads a request (server/api_requests.py): a JSON body whatever the
Content-Type, lone surrogates as U+FFFD, unknown query parameters refused, every mistake a 400."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import INGEST_TOKEN

pytestmark = pytest.mark.both_stores

# What `curl -d` sends when no -H names another type.
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
SURROGATE = "\ud800"
FFFD = "\ufffd"


def identify(client, user_id: str, anonymous_id: str, **message):
    response = client.post(
        "/ingest/identify", json={"user_id": user_id, "anonymous_id": anonymous_id, **message},
        headers={"Authorization": f"Bearer {INGEST_TOKEN}"},
    )
    assert response.status_code == 200, response.text


def raw_json(document) -> str:
    # json.dumps writes "\ud800" as the six-character escape, the way JSON.stringify does.
    return json.dumps(document)


# -- a JSON body whatever the Content-Type says ------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        pytest.param("PATCH", "/api/project/settings", {"max_user_ids": 2}, 200, id="settings"),
        pytest.param("POST", "/api/persons/query", {"limit": 5}, 200, id="persons-query"),
        pytest.param("POST", "/api/sessions/query", {"limit": 5}, 200, id="sessions-query"),
        pytest.param("POST", "/api/events/query", {"limit": 5}, 200, id="events-query"),
        pytest.param("POST", "/api/counts", {"measure": "events", "interval": "day"}, 200, id="counts"),
        pytest.param("POST", "/api/segments", {"name": "Pro", "filter": {"attribute": "plan", "op": "is_set"}}, 201, id="segments"),
        pytest.param("POST", "/api/persons/import", {"persons": [{"distinct_ids": ["crm-1"]}]}, 200, id="import"),
        pytest.param("POST", "/api/persons/merge", {"target_distinct_id": "user-1", "source_distinct_id": "user-2"}, 200, id="merge"),
        pytest.param("POST", "/api/persons/attributes", {"distinct_id": "user-1", "set": {"plan": "pro"}}, 200, id="attributes"),
        pytest.param("POST", "/api/keys", {"label": "ci"}, 201, id="keys"),
        pytest.param("POST", "/api/privacy/delete", {"distinct_id": "user-2"}, 200, id="privacy-delete"),
        pytest.param("POST", "/api/preview/identify", {"user_id": "user-1", "anonymous_id": "cookie-9"}, 200, id="preview-identify"),
        pytest.param("POST", "/api/preview/alias", {"target_distinct_id": "user-1", "source_distinct_id": "c-9"}, 200, id="preview-alias"),
    ],
)
def test_a_json_body_sent_as_a_form_like_curl_d_is_read_as_json(api, method, path, body, status):
    identify(api, "user-1", "cookie-1")
    identify(api, "user-2", "cookie-2")
    response = api.request(method, path, content=json.dumps(body), headers=FORM)
    assert response.status_code == status, response.text


def test_a_split_body_sent_as_a_form_is_read_as_json(api):
    identify(api, "user-1", "cookie-1")
    person = api.get("/api/persons", params={"distinct_id": "user-1"}).json()
    response = api.post(f"/api/persons/{person['id']}/split", content='{"distinct_ids": ["cookie-1"]}', headers=FORM)
    assert response.status_code == 200, response.text
    assert sorted(p["distinct_ids"] == ["cookie-1"] for p in response.json()) == [False, True]


@pytest.mark.parametrize("body", ["max_user_ids=2", "{not json", '{"max_user_ids": NaN}'])
def test_a_body_that_is_not_json_is_a_400_that_says_it_must_be_json(api, body):
    response = api.patch("/api/project/settings", content=body, headers=FORM)
    assert response.status_code == 400, response.text
    [problem] = response.json()["errors"]
    assert problem["path"] == "body"
    assert problem["reason"].startswith("must be a JSON document, whatever its Content-Type")


def test_a_missing_body_is_a_400_naming_the_body(api):
    response = api.post("/api/persons/merge")
    assert response.status_code == 400
    assert response.json()["errors"] == [{"path": "body", "reason": "Field required"}]


# -- unknown query parameters --------------------------------------------------------------------


def _get_routes(api) -> list[str]:
    paths = api.get("/openapi.json").json()["paths"]
    return sorted(p for p, operations in paths.items() if p.startswith("/api/") and "get" in operations)


def test_every_api_read_refuses_a_query_parameter_it_does_not_take(api):
    identify(api, "user-1", "cookie-1")
    person_id = api.get("/api/persons", params={"distinct_id": "user-1"}).json()["id"]
    segment = api.post("/api/segments", json={"name": "Any", "filter": {"attribute": "plan", "op": "is_set"}}).json()
    link_id = api.get(f"/api/persons/{person_id}/links").json()["results"][0]["id"]
    checked = []
    for template in _get_routes(api):
        path = (template.replace("{person_id}", person_id).replace("{segment_id}", str(segment["id"]))
                .replace("{link_id}", str(link_id)))
        assert "{" not in path, f"no value for a parameter of {template}"
        response = api.get(path, params={"distinct_id": "user-1", "email": "a@example.com", "filtre": "{}"})
        assert response.status_code == 400, f"{template}: {response.status_code} {response.text}"
        assert "filtre" in [e["path"] for e in response.json()["errors"]], template
        checked.append(template)
    assert "/api/persons" in checked and "/api/persons/{person_id}/links" in checked and "/api/audit-log" in checked


def test_the_refusal_names_the_parameters_the_route_takes(api):
    response = api.get("/api/warnings", params={"types": "illegal_distinct_id"})
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"path": "types", "reason": "not a query parameter of /api/warnings (it takes cursor, limit, type)"}
    ]


# -- GET /api/persons?filter= ----------------------------------------------------------------------


def test_get_persons_applies_its_filter(api):
    identify(api, "user-pro", "cookie-pro", set={"plan": "pro"})
    identify(api, "user-free", "cookie-free", set={"plan": "free"})
    kept = api.get("/api/persons", params={"filter": '{"attribute": "plan", "op": "equals", "value": "pro"}'})
    assert kept.status_code == 200, kept.text
    assert [p["user_ids"] for p in kept.json()["results"]] == [["user-pro"]]
    segment = api.post("/api/segments", json={"name": "Free", "filter": {"attribute": "plan", "op": "equals", "value": "free"}}).json()
    by_segment = api.get("/api/persons", params={"segment_id": segment["id"]}).json()["results"]
    assert [p["user_ids"] for p in by_segment] == [["user-free"]]


def test_get_persons_refuses_a_bad_filter_and_a_filter_with_distinct_id(api):
    bad = api.get("/api/persons", params={"filter": '{"attribute": "plan", "op": "bigger"}'})
    assert bad.status_code == 400 and bad.json()["errors"][0]["path"].startswith("filter")
    both = api.get("/api/persons", params={"distinct_id": "x", "filter": '{"attribute": "plan", "op": "is_set"}'})
    assert both.status_code == 400
    assert both.json()["errors"] == [{"path": "filter", "reason": "not used with `distinct_id`, which names one person"}]


# -- counts "in total" ------------------------------------------------------------------------------


def test_counts_take_the_total_interval_the_ui_offers(api):
    identify(api, "user-1", "cookie-1")
    identify(api, "user-2", "cookie-2")
    response = api.post("/api/counts", json={"measure": "persons", "events": ["$identify"], "interval": "total"})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["interval"], answer["total"], [s["counts"] for s in answer["series"]]) == (None, 2, [[2]])


# -- pages that walk to the end ---------------------------------------------------------------------


def walk(api, path: str, limit: int) -> list[dict]:
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = api.get(path, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["results"]) <= limit
        seen += page["results"]
        pages += 1
        cursor = page["next"]
        if cursor is None:
            return seen
        assert pages < 100, "the cursor never ends"


def test_links_are_paged_oldest_first_and_the_pages_hold_every_entry(api):
    identify(api, "user-1", "cookie-1")
    for n in range(2, 7):
        identify(api, "user-1", f"cookie-{n}")
    identify(api, "user-2", "cookie-1")  # refused: a second user id on the device
    person_id = api.get("/api/persons", params={"distinct_id": "user-1"}).json()["id"]
    whole = api.get(f"/api/persons/{person_id}/links", params={"limit": 1000}).json()
    assert whole["next"] is None and len(whole["results"]) == 7
    paged = walk(api, f"/api/persons/{person_id}/links", limit=2)
    assert paged == whole["results"]
    assert [link["id"] for link in paged] == sorted(link["id"] for link in paged)


def test_segments_are_paged_by_name_and_the_pages_hold_every_segment(api):
    names = ["Zeta", "alpha", "Beta", "beta 2", "Gamma", "Ω"]
    for name in names:
        created = api.post("/api/segments", json={"name": name, "filter": {"attribute": "plan", "op": "is_set"}})
        assert created.status_code == 201, created.text
    paged = walk(api, "/api/segments", limit=2)
    assert sorted(s["name"] for s in paged) == sorted(names)
    assert len({s["id"] for s in paged}) == len(names)
    assert api.get("/api/segments", params={"cursor": "forged"}).status_code == 400


# -- lone surrogates become U+FFFD at the edge -----------------------------------------------------


FILTER_INPUTS = [
    pytest.param("/api/persons/query", {"filter": {"attribute": "plan", "op": "equals", "value": SURROGATE}}, id="filter-value"),
    pytest.param("/api/persons/query", {"filter": {"attribute": "plan", "op": "regex", "value": SURROGATE}}, id="regex"),
    pytest.param("/api/persons/query", {"filter": {"attribute": SURROGATE, "op": "is_set"}}, id="filter-key"),
    pytest.param("/api/sessions/query", {"filter": {"property": "x", "op": "contains", "value": SURROGATE}}, id="session-filter"),
    pytest.param("/api/sessions/query", {"distinct_id": SURROGATE}, id="session-distinct-id"),
    pytest.param("/api/events/query", {"events": [SURROGATE]}, id="event-names"),
    pytest.param("/api/events/query", {"filter": {"property": "x", "op": "not_regex", "value": SURROGATE}}, id="not-regex"),
    pytest.param("/api/counts", {"events": [SURROGATE]}, id="count-events"),
    pytest.param("/api/counts", {"breakdown": {"attribute": SURROGATE}}, id="breakdown-attribute"),
    pytest.param("/api/counts", {"breakdown": {"property": SURROGATE}}, id="breakdown-property"),
]


@pytest.mark.parametrize(("path", "body"), FILTER_INPUTS)
def test_a_lone_surrogate_in_a_query_is_read_as_u_fffd(api, path, body):
    identify(api, "user-1", "cookie-1", set={"plan": FFFD})
    response = api.post(path, content=raw_json(body), headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text


def test_a_lone_surrogate_in_a_filter_matches_the_u_fffd_stored(api):
    identify(api, "user-1", "cookie-1", set={"plan": f"pro{FFFD}"}, session_id="s-1")
    text = raw_json({"attribute": "plan", "op": "equals", "value": f"pro{SURROGATE}"})
    assert [p["user_ids"] for p in api.get("/api/persons", params={"filter": text}).json()["results"]] == [["user-1"]]
    assert [s["session_id"] for s in api.get("/api/sessions", params={"filter": text}).json()["results"]] == ["s-1"]


def post_raw(api, method: str, path: str, document) -> dict:
    response = api.request(method, path, content=raw_json(document), headers={"Content-Type": "application/json"})
    assert response.status_code < 300, response.text
    return response.json()


def test_lone_surrogates_in_writes_are_stored_as_u_fffd(api):
    identify(api, "user-1", "cookie-1")
    imported = post_raw(api, "POST", "/api/persons/import", {"persons": [
        {"distinct_ids": [f"crm{SURROGATE}"], "properties": {"note": f"a{SURROGATE}b", f"k{SURROGATE}": 1}},
    ]})
    assert imported["imported"] == 1
    person = api.get("/api/persons", params={"distinct_id": f"crm{FFFD}"}).json()
    assert person["properties"] == {"note": f"a{FFFD}b", f"k{FFFD}": 1}

    settings = post_raw(api, "PATCH", "/api/project/settings", {
        "illegal_ids": [f"guest{SURROGATE}"], "illegal_id_patterns": [f"^tmp{SURROGATE}"], "property_types": {f"p{SURROGATE}": "string"},
    })
    assert (settings["illegal_ids"], settings["illegal_id_patterns"], settings["property_types"]) == (
        [f"guest{FFFD}"], [f"^tmp{FFFD}"], {f"p{FFFD}": "string"}
    )
    assert post_raw(api, "POST", "/api/keys", {"label": f"ci{SURROGATE}"})["label"] == f"ci{FFFD}"
    segment = post_raw(api, "POST", "/api/segments", {
        "name": f"s{SURROGATE}", "description": SURROGATE, "filter": {"attribute": "plan", "op": "equals", "value": SURROGATE},
    })
    assert (segment["name"], segment["description"], segment["filter"]["value"]) == (f"s{FFFD}", FFFD, FFFD)

    updated = post_raw(api, "POST", "/api/persons/attributes", {"distinct_id": "user-1", "set": {"plan": SURROGATE, SURROGATE: 1}})
    assert updated["person"]["properties"] == {"plan": FFFD, FFFD: 1}

    merged = post_raw(api, "POST", "/api/persons/merge", {"target_distinct_id": "user-1", "source_distinct_id": f"crm{SURROGATE}"})
    assert f"crm{FFFD}" in merged["distinct_ids"]
    split = post_raw(api, "POST", f"/api/persons/{merged['id']}/split", {"distinct_ids": [f"crm{SURROGATE}"]})
    assert [f"crm{FFFD}"] in [p["distinct_ids"] for p in split]

    erased = post_raw(api, "POST", "/api/privacy/delete", {"distinct_id": f"crm{SURROGATE}", "suppress": True})
    assert erased["erased"]["persons"] == 1
    assert api.get("/api/persons", params={"distinct_id": f"crm{FFFD}"}).status_code == 404


def test_an_escaped_backslash_before_u_is_not_a_surrogate(api):
    created = api.post("/api/keys", content=r'{"label": "C:\\ud800"}', headers=FORM)
    assert created.status_code == 201, created.text
    assert created.json()["label"] == "C:\\ud800"


def test_invalid_utf8_in_a_body_is_a_400(api):
    response = api.post("/api/keys", content=b'{"label": "\xed\xa0\x80"}', headers=FORM)
    assert response.status_code == 400
    assert re.match(r"must be a JSON document.*not UTF-8", response.json()["errors"][0]["reason"])
