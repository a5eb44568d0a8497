"""The compatibility routes in-process: status codes and bodies exactly as the stock clients need."""

from __future__ import annotations

import base64
import json

import pytest

from idstitch.server.compat_routes import FLAGS_BODY, REMOTE_CONFIG
from idstitch.server.ingest_routes import POSTHOG_ROUTES
from tests.conftest import INGEST_TOKEN

pytestmark = pytest.mark.both_stores


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def seg(kind: str, **fields) -> dict:
    return {"type": kind, "userId": None, "anonymousId": None, **fields}


# -- PostHog ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [p + s for p in POSTHOG_ROUTES for s in ("", "/")])
def test_every_posthog_event_route_answers_exactly_200_status_1(api, path: str):
    distinct_id = f"anon{path.replace('/', '-')}"
    response = api.post(path, json={"api_key": INGEST_TOKEN, "batch": [{"event": "x", "distinct_id": distinct_id}]})
    assert (response.status_code, response.json()) == (200, {"status": 1})
    assert api.get("/api/persons", params={"distinct_id": distinct_id}).status_code == 200


@pytest.mark.parametrize("path", ["/s/", "/s"])
def test_session_recordings_are_accepted_and_dropped(api, path: str):
    snapshot = [{"event": "$snapshot", "properties": {"distinct_id": "anon-rec", "token": INGEST_TOKEN}}]
    response = api.post(f"{path}?compression=gzip-js", content=json.dumps(snapshot))
    assert (response.status_code, response.json()) == (200, {"status": 1})
    assert api.get("/api/persons", params={"distinct_id": "anon-rec"}).status_code == 404


@pytest.mark.parametrize("path", ["/flags/?v=2", "/flags?v=2", "/decide/?v=4", "/decide/?v=3", "/decide"])
def test_flags_and_decide_answer_no_flags_whatever_the_encoding(client, path: str):
    request = {"token": INGEST_TOKEN, "distinct_id": "anon-1", "groups": {}}
    as_form = f"data={base64.b64encode(json.dumps(request).encode()).decode()}"
    encodings = ((as_form, "application/x-www-form-urlencoded"), (json.dumps(request), "application/json"))
    for body, content_type in encodings:
        response = client.post(path, content=body, headers={"Content-Type": content_type})
        assert (response.status_code, response.json()) == (200, FLAGS_BODY)
    assert client.get(path).json() == FLAGS_BODY


def test_remote_config_as_json_and_as_the_script_posthog_js_loads(client):
    response = client.get(f"/array/{INGEST_TOKEN}/config")
    assert (response.status_code, response.json()) == (200, REMOTE_CONFIG)
    script = client.get(f"/array/{INGEST_TOKEN}/config.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("application/javascript")
    assert script.text == (
        "window._POSTHOG_REMOTE_CONFIG = window._POSTHOG_REMOTE_CONFIG || {};\n"
        f'window._POSTHOG_REMOTE_CONFIG["{INGEST_TOKEN}"] = {json.dumps({"config": REMOTE_CONFIG, "siteApps": []})};\n'
    )


def test_remote_config_offers_gzip_and_never_asks_for_surveys(client):
    # A `surveys` key, even `false`, makes posthog-js 1.449.2 load /static/surveys.js (not ours).
    config = client.get(f"/array/{INGEST_TOKEN}/config").json()
    assert config["supportedCompression"] == ["gzip", "gzip-js"]
    assert "surveys" not in config


def test_static_scripts_are_not_served(client):
    assert client.get("/static/surveys.js").status_code == 404


# -- Segment ------------------------------------------------------------------------------------

SINGLE_ROUTES = [
    ("/v1/identify", seg("identify", userId="user-1", anonymousId="anon-1", traits={"plan": "pro"})),
    ("/v1/track", seg("track", anonymousId="anon-1", event="Viewed")),
    ("/v1/alias", seg("alias", userId="user-1", previousId="crm-1")),
    ("/v1/page", seg("page", anonymousId="anon-1", name="Home")),
    ("/v1/group", seg("group", userId="user-1", groupId="acme")),
    ("/v1/screen", seg("screen", anonymousId="anon-1", name="Home")),
]


@pytest.mark.parametrize(
    ("path", "message"),
    [pytest.param(p, m, id=p) for p, m in SINGLE_ROUTES]
    + [pytest.param(p[:5], m, id=p[:5]) for p, m in SINGLE_ROUTES]
    + [pytest.param(p + "/", m, id=p + "/") for p, m in SINGLE_ROUTES],
)
def test_every_segment_single_route_answers_exactly_200_success(api, path: str, message: dict):
    response = api.post(path, json=message, headers=basic(INGEST_TOKEN))
    assert (response.status_code, response.json()) == (200, {"success": True})
    distinct_id = message["userId"] or message["anonymousId"]
    assert api.get("/api/persons", params={"distinct_id": distinct_id}).status_code == 200


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/import", "/v1/b", "/v1/batch/"])
def test_every_segment_batch_route_answers_exactly_200_success(api, path: str):
    body = {"batch": [seg("identify", userId="user-1", anonymousId="anon-1", traits={"plan": "pro"})], "sentAt": None}
    response = api.post(path, json=body, headers=basic(INGEST_TOKEN))
    assert (response.status_code, response.json()) == (200, {"success": True})
    person = api.get("/api/persons", params={"distinct_id": "anon-1"}).json()
    assert (sorted(person["distinct_ids"]), person["properties"]) == (["anon-1", "user-1"], {"plan": "pro"})


def test_the_write_key_may_come_in_the_body_instead_of_basic_auth(api):
    body = {"batch": [seg("track", anonymousId="anon-1", event="x")], "writeKey": INGEST_TOKEN}
    response = api.post("/v1/batch", json=body)
    assert response.status_code == 200
    response = api.post("/v1/t", json={**seg("track", anonymousId="anon-2", event="x"), "writeKey": INGEST_TOKEN})
    assert response.status_code == 200
    assert api.get("/api/persons", params={"distinct_id": "anon-2"}).status_code == 200


@pytest.mark.parametrize(
    ("headers", "body_key", "message"),
    [
        pytest.param(
            {}, None, "No write key: send the ingest token as the Basic auth user or as `writeKey` in the body",
            id="no-key",
        ),
        pytest.param(basic("wk_wrong"), None, "Project token is not valid", id="wrong-basic"),
        pytest.param({}, "wk_wrong", "Project token is not valid", id="wrong-body-key"),
        pytest.param(basic("wk_wrong"), INGEST_TOKEN, "Project token is not valid", id="basic-wins-over-body"),
        pytest.param(basic("sk_test_secret"), None, "Project token is not valid", id="secret-key-is-no-write-key"),
    ],
)
def test_a_bad_write_key_gets_401_with_code_and_message_and_stores_nothing(api, headers, body_key, message):
    body = {"batch": [seg("track", anonymousId="anon-1", event="x")], **({"writeKey": body_key} if body_key else {})}
    response = api.post("/v1/batch", json=body, headers=headers)
    assert response.status_code == 401
    # segment-analytics-python raises APIError(status, body["code"], body["message"]).
    assert (response.json()["code"], response.json()["message"]) == ("authentication_error", message)
    assert api.get("/api/persons", params={"distinct_id": "anon-1"}).status_code == 404


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/v1/batch", b"{not json", id="bad-json"),
        pytest.param("/v1/batch", b'{"messages": []}', id="no-batch"),
        pytest.param("/v1/track", b"[1, 2]", id="single-not-object"),
        pytest.param("/v1/batch", b"", id="empty"),
    ],
)
def test_an_undecodable_segment_body_gets_400_with_a_message(client, path: str, body: bytes):
    response = client.post(path, content=body, headers=basic(INGEST_TOKEN))
    assert response.status_code == 400
    assert response.json()["message"] == response.json()["detail"]


def test_a_bad_message_is_dead_lettered_and_the_rest_commit(api):
    body = {"batch": [seg("track", anonymousId="anon-ok", event="x"), seg("track", event="no ids")]}
    response = api.post("/v1/batch", json=body, headers=basic(INGEST_TOKEN))
    assert (response.status_code, response.json()) == (
        200, {"success": True, "errors": [{"index": 1, "error": "a message needs `userId` or `anonymousId`"}]}
    )
    assert api.get("/api/persons", params={"distinct_id": "anon-ok"}).status_code == 200
    (dead,) = api.get("/api/dead-letters").json()["results"]
    assert dead["payload"] == seg("track", event="no ids")


def test_resending_a_message_id_stores_it_once(api):
    message = seg("track", anonymousId="anon-dup", event="Viewed", messageId="5b1f6c1e-0000-4000-8000-000000000001")
    for _ in range(3):
        assert api.post("/v1/batch", json={"batch": [message, message]}, headers=basic(INGEST_TOKEN)).status_code == 200
    person = api.get("/api/persons", params={"distinct_id": "anon-dup"}).json()
    assert len(api.get(f"/api/persons/{person['id']}/events").json()["results"]) == 1


def test_segment_identify_stitches_and_alias_joins_a_legacy_id(api):
    messages = [
        seg("page", anonymousId="cookie-1", context={"page": {"url": "https://shop.example/?utm_source=ad"}}),
        seg("identify", userId="user-42", anonymousId="cookie-1", traits={"name": "Ada"}),
        seg("alias", userId="user-42", previousId="crm-7"),
        seg("identify", userId="user-43", anonymousId="cookie-1", traits={"name": "Eve"}),
    ]
    assert api.post("/v1/batch", json={"batch": messages}, headers=basic(INGEST_TOKEN)).status_code == 200
    ada = api.get("/api/persons", params={"distinct_id": "crm-7"}).json()
    assert sorted(ada["distinct_ids"]) == ["cookie-1", "crm-7", "user-42"]
    assert ada["properties"]["name"] == "Ada"
    assert ada["properties"]["$initial_current_url"] == "https://shop.example/?utm_source=ad"
    # A second user on the same cookie is refused, never merged (row F).
    assert [w["type"] for w in api.get("/api/warnings").json()["results"]] == ["cannot_merge_already_identified"]
